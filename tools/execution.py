"""Running planned runs and tracking their state: finished runs are skipped, an unfinished
training run with a checkpoint is resumed, any other starts over (its old log.txt and config.yaml
set aside); `execute` runs them one after another, in this process or as train.py processes, or
in a work queue (tools/work_queue.py). tools/run_protocol.py's help describes the rules.
"""
import os
import shlex
import subprocess
import sys
import time
from typing import Dict, List, Sequence

import parse_test_res
from tools.protocols import Run, max_epoch


def is_finished(run_dir: str, eval_only: bool) -> bool:
    """The run's log.txt holds the result block (parse_test_res reads exactly this)."""
    log = os.path.join(run_dir, "log.txt")
    if not os.path.isfile(log):
        return False
    signal = parse_test_res.TEST_END_SIGNAL if eval_only else parse_test_res.TRAIN_END_SIGNAL
    return parse_test_res.read_metric(log, "accuracy", signal) is not None


def has_checkpoint(run_dir: str) -> bool:
    """A Dassl checkpoint pointer (<run_dir>/<model name>/checkpoint) exists."""
    if not os.path.isdir(run_dir):
        return False
    return any(os.path.isfile(os.path.join(run_dir, sub, "checkpoint")) for sub in os.listdir(run_dir))


def run_state(run: Run) -> str:
    """'finished' (skip), 'resume' (unfinished training with a checkpoint) or 'start'."""
    if is_finished(run.output_dir, run.eval_only):
        return "finished"
    if not run.eval_only and has_checkpoint(run.output_dir):
        return "resume"
    return "start"


def config_changed(run: Run) -> bool:
    """True when a finished run's OUTPUT_DIR/config.yaml is not the config this run's command
    builds now (a config file edited since, other opts): the folder names a run, so its results
    are kept, but the skip says so. False for runs made before config.yaml was written, or when
    the config cannot be built here (a missing file: the run would fail with its own error)."""
    import launch

    path = os.path.join(run.output_dir, "config.yaml")
    if not os.path.isfile(path):
        return False
    try:
        cfg = launch.config_from_argv(run.argv[2:])
    except (Exception, SystemExit):  # noqa: BLE001 (a config error is reported when the run runs)
        return False
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read() != cfg.dump()


def set_aside_interrupted(run: Run, state: str) -> None:
    """Rename what an unfinished earlier attempt left to <name>-interrupted-<time>: its log.txt
    always (the new log.txt must hold the result block), and its config.yaml when the run starts
    over (the new attempt's config is then the run's record; a resumed run keeps the config it
    was trained with, and train.py writes a different one next to it)."""
    suffix = time.strftime("-interrupted-%Y%m%d-%H%M%S")
    names = ["log.txt"] + (["config.yaml"] if state == "start" else [])
    for name in names:
        path = os.path.join(run.output_dir, name)
        if os.path.isfile(path):
            os.replace(path, path + suffix)


def _shown(path: str) -> str:
    return os.path.relpath(path) if os.path.abspath(path).startswith(os.getcwd() + os.sep) else path


def command_line(run: Run) -> str:
    return shlex.join([_shown(a) if os.path.isabs(a) else a for a in run.argv])


FAILURE_TAIL_LINES = 20


def run_in_process(run: Run):
    """train.py's run (launch.main) on the run's arguments in this process: (exit status, its output).

    Many runs in one process pay for the imports once and share what can be shared (the image
    features of MODEL.BACKBONE.CACHE_IMAGE_FEATURES); each run is seeded as train.py seeds it,
    so its numbers are those of a separate train.py process."""
    import io
    import traceback

    import launch

    buffer = io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = buffer
    status = 0
    try:
        launch.main(launch.build_parser().parse_args(run.argv[2:]))
    except SystemExit as err:  # argparse
        status = err.code if isinstance(err.code, int) else 2
    except launch.USER_ERRORS as err:
        print(f"error: {launch.one_line(err)}", file=buffer)
        status = 2
    except Exception:  # noqa: BLE001  (a failed run is reported, the others go on)
        traceback.print_exc(file=buffer)
        status = 1
    finally:
        for stream in (sys.stdout, sys.stderr):  # setup_logger's tees: close the run's log file
            if stream is not buffer and hasattr(stream, "close"):
                stream.close()
        sys.stdout, sys.stderr = saved
    return status, buffer.getvalue()


def execute(runs: Sequence[Run], dry_run: bool = False, out=None, verbose: bool = False,
            in_process: bool = False, jobs: int = 0) -> int:
    """Run (or, with dry_run, print) every unfinished run; return the number that failed. An
    evaluation whose training run failed in this call is not attempted.

    A run's own output is in its log.txt; here each run prints one line with its accuracy and
    time (the last lines of its output when it fails). verbose streams the output instead.
    in_process: runs call train.py's run (launch.main) in a Python process (run_in_process) instead of
    starting train.py each. jobs = 0: one run after another, in this process. jobs >= 1: a work
    queue over that many worker processes of one thread each (tools/work_queue.py): longest runs
    first, each evaluation as soon as its training run is done, every dataset generated once
    before its runs, and a line per finished run with the runs left and the time to go."""
    out = out or sys.stdout
    todo = []
    for run in runs:
        state = run_state(run)
        if state == "finished":
            note = "" if dry_run or not config_changed(run) else (
                " (its config.yaml differs from this command's config; its results stand: use another "
                "--output-dir to run the new config)")
            print(f"[skip: finished] {run.output_dir}{note}", file=out)
        else:
            todo.append((run, state))
    if jobs >= 1 and not dry_run and todo:
        return _execute_queue(todo, jobs, out, in_process)
    failed = set()
    n_failed = 0
    for run, state in todo:
        if run.depends_on is not None and id(run.depends_on) in failed:
            print(f"[skip: its training run failed] {run.output_dir}", file=out)
            failed.add(id(run))
            continue
        print(f"[{state}] {run.output_dir}", file=out)
        if not in_process:
            print(command_line(run), file=out, flush=True)
        if dry_run:
            continue
        returncode, output, seconds = run_once(run, state, in_process, verbose, out)
        ok, lines = report(run, returncode, output, seconds, verbose)
        if lines:
            print("\n".join(lines), file=out, flush=True)
        if not ok:
            failed.add(id(run))
            n_failed += 1
    return n_failed


def run_once(run: Run, state: str, in_process: bool, verbose: bool = False, out=None, one_thread: bool = False):
    """Run one unfinished run: (exit status, its output, seconds). Its earlier log (and config,
    when it starts over) is set aside first. one_thread: a train.py process gets one thread."""
    set_aside_interrupted(run, state)
    start = time.time()
    if in_process:
        returncode, output = run_in_process(run)
        if verbose:
            print(output, file=out)
    else:
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1") if one_thread else None
        proc = subprocess.run(run.argv, env=env, **({} if verbose else dict(capture_output=True, text=True)))
        returncode, output = proc.returncode, "" if verbose else proc.stdout + proc.stderr
    return returncode, output, time.time() - start


def report(run: Run, returncode: int, output: str, seconds: float, verbose: bool, prefix: str = ""):
    """(whether a finished run succeeded, the lines that say so: its accuracy and time, or the
    tail of its output and the failure)."""
    if returncode != 0 or not is_finished(run.output_dir, run.eval_only):
        tail = [] if verbose else ["    " + line for line in output.strip().splitlines()[-FAILURE_TAIL_LINES:]]
        return False, tail + [f"{prefix}[failed: exit {returncode}] {run.output_dir}"]
    if verbose:
        return True, []
    accuracy = parse_test_res.last_metric(output.splitlines(), "accuracy", end_signal=None)
    if prefix:
        return True, [f"{prefix}{run.output_dir}: accuracy {accuracy or '?'}%, {seconds:.1f} s"]
    return True, [f"    accuracy {accuracy or '?'}%, {seconds:.1f} s"]


# Scheduling hints for the work queue: seconds per training epoch and per evaluation run of a
# trainer on the bundled benchmark, measured in the main job of benchmark v4 (README; 2-core
# Intel Xeon, one thread per run, the images' features cached; a training run's seconds include
# its final evaluation). They order the queue (longest first) and, with DATASET_SECONDS, set the
# time-to-go until finished runs have measured the machine's own speed: costs in seconds keep the
# first estimates, made from a dataset's generation, on the right scale. A wrong value changes
# neither a run nor its numbers. (EMPL_MaPLe is not in the main job: MaPLe's, scaled as before.)
EPOCH_SECONDS = {"CoOp": 0.045, "KgCoOp": 0.045, "ProDA": 0.09, "CoCoOp": 0.31, "MaPLe": 0.53, "PromptSRC": 0.56,
                 "EMPL_CoOp": 0.13, "EMPL_ProDA": 0.22, "EMPL_MaPLe": 0.85}
EVAL_SECONDS = {"CoCoOp": 1.9, "MaPLe": 0.95, "PromptSRC": 1.1, "EMPL_MaPLe": 1.2}
DEFAULT_EPOCH_SECONDS, DEFAULT_EVAL_SECONDS, DATASET_SECONDS = 0.3, 0.12, 5.0


def estimated_seconds(run: Run) -> float:
    """A run's cost for the queue's order and time-to-go (see EPOCH_SECONDS)."""
    evaluation = EVAL_SECONDS.get(run.trainer, DEFAULT_EVAL_SECONDS)
    if run.eval_only:
        return evaluation
    config_file = run.argv[run.argv.index("--config-file") + 1]
    return EPOCH_SECONDS.get(run.trainer, DEFAULT_EPOCH_SECONDS) * max_epoch(config_file, run.argv) + evaluation


def prepare_dataset(argv: Sequence[str]) -> str:
    """Build a run's dataset once, which generates a bundled task's images and split on first
    use, so that the runs reading it can start side by side. Returns what it printed."""
    import contextlib
    import io

    import launch
    from dassl.data.datasets import build_dataset

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        cfg = launch.config_from_argv(argv[2:])
        cfg.defrost()
        cfg.DATASET.NUM_SHOTS = 0  # the split itself; each run draws its few-shot set
        cfg.DATASET.SUBSAMPLE_CLASSES = "all"
        build_dataset(cfg)
    return printed.getvalue()


def _execute_queue(todo, jobs: int, out, in_process: bool) -> int:
    """execute()'s work queue (tools/work_queue.py); returns the number of failed runs."""
    from tools import work_queue

    prepared: Dict[str, work_queue.Job] = {}
    by_run: Dict[int, work_queue.Job] = {}
    queue: List[work_queue.Job] = []
    for run, state in todo:
        key = run.argv[run.argv.index("--dataset-config-file") + 1] + "|" + run.argv[run.argv.index("--root") + 1]
        if key not in prepared:
            prepared[key] = work_queue.Job(f"dataset {run.dataset}", prepare_dataset, (run.argv,), DATASET_SECONDS)
            queue.append(prepared[key])
        deps = [prepared[key]] + ([by_run[id(run.depends_on)]] if id(run.depends_on) in by_run else [])
        job = work_queue.Job(run.output_dir, run_once, (run, state, in_process, False, None, True),
                             estimated_seconds(run), deps, run)
        by_run[id(run)] = job
        queue.append(job)
    n_failed = 0

    def on_done(job, value, seconds, progress):
        nonlocal n_failed
        if job.payload is None:  # a dataset
            if isinstance(value, BaseException):
                progress.write(f"[failed] {job.name}: {type(value).__name__}: {value}")
                return False
            if "Generating" in value:
                progress.write(f"[{progress.status()}] {job.name}: generated in {seconds:.1f} s")
            return True
        if isinstance(value, BaseException):
            value = (1, f"{type(value).__name__}: {value}", seconds)
        returncode, output, seconds = value
        ok, lines = report(job.payload, returncode, output, seconds, False, prefix=f"[{progress.status()}] ")
        progress.write("\n".join(lines))
        n_failed += 0 if ok else 1
        return ok

    def on_skip(job, progress):
        if job.payload is not None:
            progress.write(f"[skip: what it needs failed] {job.payload.output_dir}")

    print(f"{len(todo)} runs ({len(prepared)} datasets to read or generate first) in a queue over {jobs} worker "
          f"process(es) of one thread each", file=out, flush=True)
    work_queue.run_jobs(queue, jobs, on_done, on_skip, stream=out, processes=in_process)
    return n_failed


def exit_status(n_failed: int, out=None, what: str = "run(s)") -> int:
    """A driver's exit status: 0, or 1 after saying how to resume the failed runs (finished
    runs are skipped on a re-run)."""
    if n_failed:
        print(f"{n_failed} {what} failed; re-run the same command to resume them", file=out or sys.stdout)
    return 1 if n_failed else 0
