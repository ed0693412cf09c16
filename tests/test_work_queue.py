"""The work queue of the main job (tools/work_queue.py, execution.execute(jobs=N)): order,
dependencies, failures, progress, and numbers equal to one-after-another runs."""
import io
import os
import threading

import torch

from tools import compare, execution, protocols, work_queue


def _jobs_with_a_log():
    log, lock = [], threading.Lock()

    def work(name, ok=True):
        with lock:
            log.append(name)
        if not ok:
            raise RuntimeError(f"{name} failed")
        return name

    def job(name, cost, *deps, ok=True):
        return work_queue.Job(name, work, (name, ok), cost, list(deps), payload=name)

    return log, job


def test_longest_ready_job_first_and_dependents_after_success_only():
    log, job = _jobs_with_a_log()
    short, long_ = job("short", 1.0), job("long", 5.0)
    after_short = job("after short", 9.0, short)
    broken = job("broken", 0.5, ok=False)
    after_broken = job("after broken", 9.0, broken)
    after_that = job("after that", 1.0, after_broken)
    done, skipped = [], []

    def on_done(j, value, seconds, progress):
        done.append((j.name, progress.done))
        return not isinstance(value, BaseException)

    out = io.StringIO()
    result = work_queue.run_jobs([short, long_, after_short, broken, after_broken, after_that], 1, on_done,
                                 lambda j, progress: skipped.append(j.name), stream=out, processes=False)
    # One worker: the longest ready job first; "after short" becomes ready (cost 9) once "short"
    # is done and then goes before the cheaper "broken".
    assert log == ["long", "short", "after short", "broken"]
    assert [name for name, _ in done] == log and [n for _, n in done] == [1, 2, 3, 4]
    assert skipped == ["after broken", "after that"]  # and their dependents, transitively
    assert result[id(short)] and not result[id(broken)] and not result[id(after_that)]


def test_progress_estimates_the_time_to_go_from_the_cost_done():
    now = [100.0]
    jobs = [work_queue.Job(str(i), print, (), cost) for i, cost in enumerate((1.0, 3.0))]
    progress = work_queue.Progress(jobs, io.StringIO(), clock=lambda: now[0])
    assert progress.eta_seconds() is None and "0/2 done, 2 left" in progress.status()
    progress.started(jobs[0])
    now[0] += 10.0  # 10 s for the first quarter of the cost: 30 s to go
    progress.advance(jobs[0], seconds=10.0)
    progress.started(jobs[1])
    assert abs(progress.eta_seconds() - 30.0) < 1e-9 and progress.status().startswith("1/2 done, 1 left")
    now[0] += 12.0  # the running job is 12 s into its 30
    assert abs(progress.eta_seconds() - 18.0) < 1e-9


def test_progress_counts_the_workers_and_the_running_jobs():
    """Two workers on four jobs of cost 1 (10 s each): when the first ends, the second is as far
    along, and 10 s of wall time are left, not the 30 that the finished job alone would say."""
    now = [0.0]
    jobs = [work_queue.Job(str(i), print, (), 1.0) for i in range(4)]
    progress = work_queue.Progress(jobs, io.StringIO(), workers=2, clock=lambda: now[0])
    progress.started(jobs[0])
    progress.started(jobs[1])
    now[0] = 10.0
    progress.advance(jobs[0], seconds=10.0)
    progress.started(jobs[2])
    assert abs(progress.eta_seconds() - 10.0) < 1e-9  # jobs 1 (ending now), 2 and 3 on two workers
    skipped = work_queue.Job("skipped", print, (), 1.0)
    progress.total_cost += skipped.cost
    progress.advance(skipped)  # takes no time and does not change the measured rate
    assert abs(progress.timed_cost / progress.timed_seconds - 0.1) < 1e-12


def test_queued_main_job_equals_runs_one_after_another(synthetic_root, tmp_path):
    """compare.py --jobs 2 (two spawned workers, each run where it falls) gives the table of the
    same runs one after another in this process, to the last digit: a run's numbers do not
    depend on its worker or on the runs before it."""
    common = ["--root", str(synthetic_root), "--datasets", "synthetic_shapes", "--trainers", "ZeroshotCLIP", "CoOp",
              "EMPL_CoOp", "--seeds", "1", "2", "--cfg", "tiny", "--shots", "4", "--in-process"]
    opts = ["--", "OPTIM.MAX_EPOCH", "1", "INPUT.TRANSFORMS", "['normalize']",
            "MODEL.BACKBONE.CACHE_IMAGE_FEATURES", "True", "DATALOADER.CACHE_IMAGES", "True"]
    queued = io.StringIO()
    assert compare.main(common + ["--output-dir", str(tmp_path / "queued"), "--jobs", "2"] + opts, out=queued) == 0
    text = queued.getvalue()
    assert "10 runs (1 datasets to read or generate first) in a queue over 2 worker process(es)" in text
    assert "[11/11 done, 0 left" in text
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a worker
    try:
        serial = io.StringIO()
        assert compare.main(common + ["--output-dir", str(tmp_path / "serial")] + opts, out=serial) == 0
    finally:
        torch.set_num_threads(threads)
    tables = [(tmp_path / run / "tables" / "base2new.csv").read_text() for run in ("queued", "serial")]
    assert tables[0] == tables[1] and "EMPL_CoOp" in tables[0]


def test_two_stage_plan_trains_the_host_first_and_once(synthetic_root, tmp_path):
    """TRAINER.EMPL.HOST_RUN auto: the driver plans the host's training run on the same data,
    seed and shots (the host's own run when it is planned too), makes the EMPL run depend on it
    and passes its folder; end to end the EMPL run starts from it."""

    kwargs = dict(seeds=[1], root=str(synthetic_root), output_root=str(tmp_path / "out"), cfg="tiny", shots=4,
                  extra_opts=["OPTIM.MAX_EPOCH", "1", "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CTX_INIT", "a photo of a",
                              "TRAINER.EMPL.HOST_RUN", "auto"])  # the host's prompt is EMPL_CoOp's
    alone = protocols.plan("base2new", ["EMPL_CoOp"], ["synthetic_shapes"], out=io.StringIO(), **kwargs)
    both = protocols.plan("base2new", ["CoOp", "EMPL_CoOp"], ["synthetic_shapes"], out=io.StringIO(), **kwargs)
    host, empl = alone[0], alone[1]
    assert host.trainer == "CoOp" and not host.eval_only and empl.trainer == "EMPL_CoOp" and empl.depends_on is host
    assert empl.argv[-2:] == ["TRAINER.EMPL.HOST_RUN", host.output_dir]
    coop_train = [r for r in both if r.trainer == "CoOp" and not r.eval_only]
    assert len(coop_train) == 1 and coop_train[0].output_dir == host.output_dir
    assert next(r for r in both if r.trainer == "EMPL_CoOp" and not r.eval_only).depends_on is coop_train[0]
    # HOST_CONFIG names the host's config (another CLIP's configs, whose protocol default differs)
    named = protocols.plan("base2new", ["EMPL_CoOp"], ["synthetic_shapes"], out=io.StringIO(),
                           **{**kwargs, "extra_opts": kwargs["extra_opts"] + ["TRAINER.EMPL.HOST_CONFIG", "tiny_ctxv1"]})
    assert named[0].argv[named[0].argv.index("--config-file") + 1].endswith(os.path.join("CoOp", "tiny_ctxv1.yaml"))
    assert named[1].argv[-2:] == ["TRAINER.EMPL.HOST_RUN", named[0].output_dir] and "tiny_ctxv1" in named[0].output_dir
    printed = io.StringIO()
    assert execution.execute(alone, out=printed, in_process=True) == 0, printed.getvalue()
    log = open(os.path.join(empl.output_dir, "log.txt")).read()
    assert f"Two-stage training: starting from the host's run {host.output_dir} (epoch 1)" in log


def test_two_stage_host_reads_no_empl_keys_and_can_live_in_another_folder(synthetic_root, tmp_path):
    """The host's run takes the extra opts except EMPL's own keys (so it is the host's own run,
    whatever EMPL value is being tried), and host_output_root puts it in another folder: the
    ablation tool's value folders share the default folder's host runs."""
    kwargs = dict(seeds=[1], root=str(synthetic_root), output_root=str(tmp_path / "value"), cfg="tiny", shots=4,
                  host_output_root=str(tmp_path / "default"),
                  extra_opts=["OPTIM.MAX_EPOCH", "1", "TRAINER.EMPL.N_CHAINS", "0", "TRAINER.EMPL.HOST_RUN", "auto"])
    host, empl = protocols.plan("base2new", ["EMPL_CoOp"], ["synthetic_shapes"], out=io.StringIO(), **kwargs)[:2]
    assert host.trainer == "CoOp" and empl.depends_on is host
    assert host.output_dir.startswith(str(tmp_path / "default")) and empl.output_dir.startswith(str(tmp_path / "value"))
    assert not any(a.startswith("TRAINER.EMPL.") for a in host.argv) and host.argv[-2:] == ["OPTIM.MAX_EPOCH", "1"]
    assert empl.argv[-2:] == ["TRAINER.EMPL.HOST_RUN", host.output_dir] and "TRAINER.EMPL.N_CHAINS" in empl.argv


def _die_or_return(name):
    if name == "dies":
        os._exit(1)  # a worker killed mid-job, as by the out-of-memory killer
    return name


def test_a_worker_that_dies_fails_its_job_and_the_queue_goes_on():
    jobs = [work_queue.Job(name, _die_or_return, (name,), cost, payload=name)
            for name, cost in (("dies", 9.0), ("after", 1.0), ("later", 0.5))]
    outcomes = {}

    def on_done(job, value, seconds, progress):
        outcomes[job.name] = value
        return not isinstance(value, BaseException)

    result = work_queue.run_jobs(jobs, 1, on_done, lambda job, progress: None, stream=io.StringIO())
    assert isinstance(outcomes["dies"], BaseException) and not result[id(jobs[0])]
    assert outcomes["later"] == "later" and result[id(jobs[2])]
