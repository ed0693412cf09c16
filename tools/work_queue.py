"""A work queue over worker processes: jobs with dependencies, longest first, with progress.

tools/execution.execute(..., jobs=N) runs a sweep through it: N worker processes, each with
one thread, take the next ready job as soon as they are free, so that no core idles while
another still has a queue (static groups of trainers did). A job is ready when the jobs it
depends on have succeeded (an evaluation after its training run, every run after the dataset it
reads has been generated); of the ready jobs the one with the largest estimated cost goes first,
so the long runs do not end up alone at the end. The parent prints a line per finished job with
the jobs done and left and an estimated time to finish, and shows a bar on a terminal.

Workers are spawned, not forked (a forked process inherits torch's thread pools), and live for
the whole queue: what a process caches (imports, rendered datasets, image features) serves
every job it runs. Each job's result depends only on its own arguments, never on which worker
ran it or in what order (trainers/feature_cache.py), so the numbers do not depend on N.
"""
import heapq
import multiprocessing
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence


@dataclass
class Job:
    """One unit of work: ``fn(*args)`` in a worker. ``cost``: an estimate in any unit (only ratios
    matter: the order and the time-to-finish estimate); ``depends_on``: jobs that must succeed
    first."""

    name: str
    fn: Callable
    args: tuple
    cost: float = 1.0
    depends_on: List["Job"] = field(default_factory=list)
    payload: Any = None  # what the caller needs back in on_done / on_skip


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _call(fn, args):
    start = time.time()
    return fn(*args), time.time() - start


class Progress:
    """Jobs done and left, and the time to finish: the remaining cost over the throughput that
    the finished runs measured (cost per second of a worker's time, times the workers), less
    what the running jobs have already done. Counting only finished jobs would start about
    N times too high with N workers: the first job ends while the others are nearly as far."""

    def __init__(self, jobs: Sequence[Job], stream=None, workers: int = 1, clock: Callable[[], float] = time.time):
        self.total_cost = sum(j.cost for j in jobs) or 1.0
        self.total = len(jobs)
        self.workers = max(1, workers)
        self.clock = clock
        self.done = 0
        self.done_cost = 0.0
        self.timed_cost = 0.0  # the cost of the finished jobs that ran (skipped and failed ones take no time)
        self.timed_seconds = 0.0  # and the worker seconds they took
        self.running: Dict[int, Any] = {}  # id(job) -> (cost, start)
        self.start = clock()
        self.stream = stream or sys.stdout
        self.bar = None
        console = getattr(sys.stderr, "console", sys.stderr)
        if getattr(console, "isatty", lambda: False)() and self.total:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, file=console, unit="job", dynamic_ncols=True,
                            bar_format="{n}/{total} {unit}s |{bar}| {postfix}")

    def started(self, job: Job) -> None:
        self.running[id(job)] = (job.cost, self.clock())

    def eta_seconds(self) -> Optional[float]:
        if self.timed_seconds <= 0 or self.timed_cost <= 0:
            return None
        rate = self.timed_cost / self.timed_seconds  # cost per worker second
        now = self.clock()
        in_progress = sum(min(cost, (now - start) * rate) for cost, start in self.running.values())
        left = max(0.0, self.total_cost - self.done_cost - in_progress)
        return left / (rate * self.workers)

    def status(self) -> str:
        eta = self.eta_seconds()
        left = self.total - self.done
        eta_text = "?" if eta is None else _clock(eta)
        return f"{self.done}/{self.total} done, {left} left, {_clock(self.clock() - self.start)} elapsed, about {eta_text} to go"

    def advance(self, job: Job, seconds: float = 0.0) -> None:
        """Count a finished (or skipped: seconds 0) job; ``seconds``: the worker time it took."""
        self.running.pop(id(job), None)
        self.done += 1
        self.done_cost += job.cost
        if seconds > 0:
            self.timed_cost += job.cost
            self.timed_seconds += seconds
        if self.bar is not None:
            self.bar.set_postfix_str(f"{_clock(self.clock() - self.start)} elapsed, eta {_clock(self.eta_seconds() or 0)}",
                                     refresh=False)
            self.bar.update(1)

    def write(self, text: str) -> None:
        """Print above the bar (or plainly, without one)."""
        if self.bar is not None and self.stream in (sys.stdout, sys.stderr):
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def run_jobs(jobs: Sequence[Job], n_workers: int, on_done: Callable[[Job, Any, float, Progress], bool],
             on_skip: Callable[[Job, Progress], None], stream=None, processes: bool = True) -> Dict[int, bool]:
    """Run every job whose dependencies succeed, n_workers at a time, largest cost first among
    the ready ones. ``on_done(job, result, seconds, progress)`` reports a finished job and says
    whether it succeeded; ``on_skip(job, progress)`` reports one whose dependency failed.
    processes=False runs the jobs in threads of this process (jobs that start subprocesses).
    A worker process that dies (killed, out of memory) fails the jobs it and its pool were
    running; the queue goes on in a new pool. Returns {id(job): succeeded}."""
    jobs = list(jobs)
    ids = {id(j) for j in jobs}
    dependents: Dict[int, List[Job]] = {id(j): [] for j in jobs}
    waiting: Dict[int, int] = {}
    for job in jobs:
        deps = [d for d in job.depends_on if id(d) in ids]
        waiting[id(job)] = len(deps)
        for dep in deps:
            dependents[id(dep)].append(job)
    order = {id(j): i for i, j in enumerate(jobs)}
    ready: List = []

    def push(job):
        heapq.heappush(ready, (-job.cost, order[id(job)], job))

    for job in jobs:
        if waiting[id(job)] == 0:
            push(job)
    progress = Progress(jobs, stream, workers=n_workers)
    succeeded: Dict[int, bool] = {}

    def new_pool():
        if processes:
            return ProcessPoolExecutor(n_workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_init_worker)
        return ThreadPoolExecutor(n_workers)

    pool = new_pool()
    running: Dict[int, Any] = {}

    def settle(job, ok):
        succeeded[id(job)] = ok
        for child in dependents[id(job)]:
            if not ok:
                if id(child) not in succeeded:
                    skip(child)
                continue
            waiting[id(child)] -= 1
            if waiting[id(child)] == 0:
                push(child)

    def skip(job):
        progress.advance(job)
        on_skip(job, progress)
        settle(job, False)

    try:
        while ready or running:
            while ready and len(running) < n_workers:
                _, _, job = heapq.heappop(ready)
                running[id(job)] = (job, pool.submit(_call, job.fn, job.args))
                progress.started(job)
            done, _ = wait([future for _, future in running.values()], timeout=1.0, return_when=FIRST_COMPLETED)
            broken = False
            for key, (job, future) in list(running.items()):
                if future not in done:
                    continue
                del running[key]
                try:
                    value, seconds = future.result()
                except BrokenProcessPool as err:  # a worker died (killed, out of memory): its job failed
                    value, seconds, broken = err, 0.0, True
                except Exception as err:  # noqa: BLE001 - a job that raised is a failed job
                    value, seconds = err, 0.0
                progress.advance(job, seconds)
                settle(job, on_done(job, value, seconds, progress))
            if broken:  # every job of a broken pool has failed; the rest go to a new one
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        progress.close()
    return succeeded
