"""Run a protocol (many train.py runs) with CoOp's output layout; skip finished runs, resume the rest.

    python -m tools.run_protocol base2new --trainers CoOp EMPL_CoOp --root $DATA
    python -m tools.run_protocol cross_dataset --trainers all --seeds 1 --dry-run
    python -m tools.run_protocol domain_generalization --trainers EMPL_ProDA -- OPTIM.MAX_EPOCH 5

Protocols (the datasets are CoOp's config names, configs/datasets/<name>.yaml):
- base2new: per dataset and seed, train on the base classes
  (output/base2new/train_base/<D>/shots_<S>/<T>/<CFG>/seed<N>; its log's final accuracy is the
  base accuracy), then evaluate the last epoch on the new classes (.../test_new/...). Exactly
  scripts/protocols/base2new_{train,test}.sh.
- cross_dataset / domain_generalization: per seed, train once on the source (ImageNet, all
  classes) at output/<source>/<T>/<CFG>_<S>shots/seed<N>, then evaluate it on every target at
  output/evaluation/<T>/<CFG>_<S>shots/<D>/seed<N> (scripts/protocols/xd_{train,test}.sh).
  Both protocols share the source runs.
- ZeroshotCLIP trains nothing: it runs --eval-only with CoOp's config of the same name (as
  scripts/coop/zeroshot.sh), on base and new (base2new/test_base, test_new) or on the source
  and the targets (evaluation/), with the first seed only (it is deterministic).

A run is *finished* when its log.txt holds Dassl's result block: an "* accuracy: X%" line after
"Finish training" (training runs) or after "=> result" (--eval-only runs); that is what
parse_test_res.py and tools/make_tables.py read. Finished runs are skipped. An unfinished
training run whose folder has a checkpoint pointer (<model>/checkpoint) is *resumed*: train.py
is run again on the same --output-dir and Dassl's resume_model_if_exist restores weights,
optimizer, scheduler and RNG states and continues from the saved epoch (a run stopped after its
last checkpoint only runs the final test). Any other unfinished run starts over. Before
re-running, the old log.txt is renamed log.txt-interrupted-<time>, so the new log.txt holds the
result block (Dassl would otherwise write the new log to log.txt-<time>); a run that starts over
also sets its old config.yaml aside the same way.
The output folder identifies a run: changing extra opts (or a config file) does not re-run a
finished run, whose skip line then says its config.yaml differs; use another --output-dir (one
per sweep value) for that.
"""
import argparse
import difflib
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import parse_test_res

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class TrainerDefaults:
    """Where a trainer's configs live and which config each protocol uses by default."""

    config_dir: str  # configs/trainers/<config_dir>/
    base2new_cfg: str
    cross_dataset_cfg: str  # also used for domain generalization
    eval_only: bool = False
    host: Optional[str] = None  # EMPL's host trainer (two-stage training starts from its run)


# The protocols' defaults are written once, in scripts/protocols/defaults.txt, which the shell
# scripts (scripts/common.sh) read too: one setting a line, a key and its values; "#" comments.
DEFAULTS_FILE = os.path.join(ROOT, "scripts", "protocols", "defaults.txt")


def read_defaults(path: str = DEFAULTS_FILE) -> List[List[str]]:
    """The lines of the defaults file as word lists (comments and blank lines left out)."""
    with open(path, encoding="utf-8") as f:
        return [words for words in (line.split("#", 1)[0].split() for line in f) if words]


def _setting(lines: List[List[str]], key: str) -> List[str]:
    """The values of the line that starts with key."""
    return next(words[1:] for words in lines if words[0] == key)


def _trainer_defaults(lines: List[List[str]]) -> Dict[str, TrainerDefaults]:
    """The lines `trainer NAME FOLDER BASE2NEW_CFG CROSS_DATASET_CFG [eval_only] [host=HOST]`, in
    their order."""
    table = {}
    for words in lines:
        if words[0] == "trainer":
            name, folder, base2new_cfg, cross_dataset_cfg = words[1:5]
            hosts = [w.split("=", 1)[1] for w in words[5:] if w.startswith("host=")]
            table[name] = TrainerDefaults(folder, base2new_cfg, cross_dataset_cfg, eval_only="eval_only" in words[5:],
                                          host=hosts[0] if hosts else None)
    return table


_DEFAULTS = read_defaults()
# Per trainer (papers' settings, ViT-B/16, 16 shots), in the order of --trainers all. --cfg overrides.
TRAINER_DEFAULTS: Dict[str, TrainerDefaults] = _trainer_defaults(_DEFAULTS)
BASE2NEW_DATASETS = tuple(_setting(_DEFAULTS, "base2new_datasets"))
CROSS_DATASET_TARGETS = BASE2NEW_DATASETS[1:]
# Shifted renderings of a source's classes: the domain-generalization targets of each source
# (ImageNet's variants; the bundled benchmark's restyled WorldNet).
SHIFTED_DOMAINS = {w[1]: tuple(w[2:]) for w in _DEFAULTS if w[0] == "shifted_domains"}
DEFAULT_SEEDS = tuple(int(seed) for seed in _setting(_DEFAULTS, "seeds"))
DEFAULT_SHOTS = int(_setting(_DEFAULTS, "shots")[0])
DEFAULT_SOURCE = _setting(_DEFAULTS, "source")[0]
DOMAIN_GENERALIZATION_TARGETS = SHIFTED_DOMAINS[DEFAULT_SOURCE]
PROTOCOL_DATASETS = {
    "base2new": BASE2NEW_DATASETS,
    "cross_dataset": CROSS_DATASET_TARGETS,
    "domain_generalization": DOMAIN_GENERALIZATION_TARGETS,
}
PROTOCOL_ALIASES = {"b2n": "base2new", "xd": "cross_dataset", "dg": "domain_generalization"}


# TRAINER.EMPL.HOST_RUN's value that asks this driver for two-stage training: the host's run of
# the same data, seed and shots is planned first and its folder passed to the EMPL run.
HOST_RUN_AUTO = "auto"


class ProtocolError(ValueError):
    """Bad input (unknown protocol, trainer, dataset, config): shown as one line."""


def _suggest(name: str, choices: Sequence[str]) -> str:
    same_but_case = [c for c in choices if c.lower() == name.lower()]
    close = same_but_case or difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def normalize_protocol(name: str) -> str:
    name = PROTOCOL_ALIASES.get(name, name)
    if name not in PROTOCOL_DATASETS:
        choices = list(PROTOCOL_DATASETS) + list(PROTOCOL_ALIASES)
        raise ProtocolError(f"unknown protocol {name!r}{_suggest(name, choices)}; choose from {', '.join(choices)}")
    return name


def dataset_config_names() -> Dict[str, str]:
    """{accepted name (lower case): config stem}: stems and the registry names in DATASET.NAME."""
    names = {}
    folder = os.path.join(ROOT, "configs", "datasets")
    for file in sorted(os.listdir(folder)):
        if not file.endswith(".yaml"):
            continue
        stem = file[: -len(".yaml")]
        names[stem.lower()] = stem
        with open(os.path.join(folder, file), encoding="utf-8") as f:
            for line in f:
                if line.strip().startswith("NAME:"):
                    names[line.split(":", 1)[1].strip().strip("\"'").lower()] = stem
    return names


def resolve_datasets(datasets: Sequence[str]) -> List[str]:
    """Config stems for the given names (stem, e.g. eurosat, or registry name, e.g. EuroSAT)."""
    known = dataset_config_names()
    stems = []
    for name in datasets:
        if name.lower() not in known:
            stems_list = sorted(set(known.values()))
            raise ProtocolError(
                f"unknown dataset {name!r}{_suggest(name.lower(), stems_list)}: no configs/datasets/{name}.yaml; "
                f"known: {', '.join(stems_list)}"
            )
        stems.append(known[name.lower()])
    return stems


def registered_trainers() -> List[str]:
    import warnings

    with warnings.catch_warnings():  # clip's pkg_resources deprecation warning
        warnings.simplefilter("ignore")
        import trainers  # noqa: F401  (registers the trainers)
    from dassl.engine import TRAINER_REGISTRY

    return list(TRAINER_REGISTRY.registered_names())


def config_path(trainer: str, cfg: str) -> str:
    config_dir = TRAINER_DEFAULTS[trainer].config_dir if trainer in TRAINER_DEFAULTS else trainer
    return os.path.join(ROOT, "configs", "trainers", config_dir, f"{cfg}.yaml")


def default_cfg(trainer: str, protocol: str) -> str:
    defaults = TRAINER_DEFAULTS[trainer]
    return defaults.base2new_cfg if protocol == "base2new" else defaults.cross_dataset_cfg


def config_value(config_file: str, opts: Sequence[str], key: str):
    """A config key's value for a run: the last KEY VALUE pair of opts, else the config file's
    (yaml), else the default config's (dassl's defaults and every method's keys)."""
    for i in range(len(opts) - 2, -1, -1):
        if opts[i] == key:
            return opts[i + 1]
    import yaml

    with open(config_file, encoding="utf-8") as f:
        node = yaml.safe_load(f) or {}
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if node is not None:
        return node
    import launch
    from dassl.config import get_cfg_default

    cfg = get_cfg_default()
    launch.extend_cfg(cfg)
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def max_epoch(config_file: str, opts: Sequence[str]) -> int:
    """OPTIM.MAX_EPOCH as train.py resolves it: trailing opts > config file > Dassl's default."""
    return int(config_value(config_file, list(opts), "OPTIM.MAX_EPOCH"))


@dataclass
class Run:
    """One train.py invocation and the folder it writes."""

    trainer: str
    cfg: str
    dataset: str
    seed: int
    output_dir: str
    argv: List[str]
    eval_only: bool
    depends_on: Optional["Run"] = field(default=None, repr=False)

    @property
    def log_path(self) -> str:
        return os.path.join(self.output_dir, "log.txt")


def is_eval_only(trainer: str) -> bool:
    """Whether a trainer only evaluates (zero-shot CLIP): it has no training runs."""
    return trainer in TRAINER_DEFAULTS and TRAINER_DEFAULTS[trainer].eval_only


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
        cfg = launch.setup_cfg(launch.build_parser().parse_args(run.argv[2:]))
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


def train_argv(python, root, seed, trainer, dataset, config_file, output_dir, opts):
    return [
        python, os.path.join(ROOT, "train.py"),
        "--root", root,
        "--seed", str(seed),
        "--trainer", trainer,
        "--dataset-config-file", os.path.join(ROOT, "configs", "datasets", f"{dataset}.yaml"),
        "--config-file", config_file,
        "--output-dir", output_dir,
        *opts,
    ]


def plan_protocol(
    protocol: str,
    trainer: str,
    datasets: Sequence[str],
    seeds: Sequence[int],
    root: str,
    output_root: str = "output",
    cfg: Optional[str] = None,
    shots: int = DEFAULT_SHOTS,
    source: str = DEFAULT_SOURCE,
    extra_opts: Sequence[str] = (),
    python: str = sys.executable,
) -> List[Run]:
    """The runs of one trainer in one protocol, each training run before the evaluations that
    load it. Mirrors scripts/protocols/*.sh (flags, folders, --load-epoch = last epoch)."""
    protocol = normalize_protocol(protocol)
    given_cfg = cfg
    cfg = cfg or default_cfg(trainer, protocol)
    config_file = config_path(trainer, cfg)
    eval_only = is_eval_only(trainer)
    extra_opts = list(extra_opts)
    runs: List[Run] = []
    host = TRAINER_DEFAULTS[trainer].host if trainer in TRAINER_DEFAULTS else None
    two_stage = host is not None and str(config_value(config_file, extra_opts, "TRAINER.EMPL.HOST_RUN")) == HOST_RUN_AUTO

    def host_training(dataset, seed) -> Optional[Run]:
        """Two-stage training (TRAINER.EMPL.HOST_RUN auto): the host's training run on the same
        data, seed and shots, planned as the host's own protocol plans it; None otherwise."""
        if not two_stage:
            return None
        host_cfg = str(config_value(config_file, extra_opts, "TRAINER.EMPL.HOST_CONFIG") or "") or given_cfg
        return plan_protocol(protocol, host, [dataset] if protocol == "base2new" else [], [seed], root,
                             output_root, host_cfg, shots, source, extra_opts, python)[0]

    def training(argv, output_dir, dataset, seed) -> Run:
        """The training run, after its host's (two-stage) when it has one."""
        first = host_training(dataset, seed)
        if first is not None:
            runs.append(first)
            argv = argv + ["TRAINER.EMPL.HOST_RUN", first.output_dir]
        run = Run(trainer, cfg, dataset, seed, output_dir, argv, False, first)
        runs.append(run)
        return run
    if eval_only:
        seeds = list(seeds)[:1]
    load_epoch = None if eval_only else str(max_epoch(config_file, extra_opts))

    def eval_run(dataset, seed, output_dir, model_dir, opts, depends_on):
        argv = train_argv(python, root, seed, trainer, dataset, config_file, output_dir, [])
        if model_dir is not None:
            argv += ["--model-dir", model_dir, "--load-epoch", load_epoch]
        argv += ["--eval-only", *opts, *extra_opts]
        return Run(trainer, cfg, dataset, seed, output_dir, argv, True, depends_on)

    if protocol == "base2new":
        for dataset in datasets:
            for seed in seeds:
                common = os.path.join(dataset, f"shots_{shots}", trainer, cfg, f"seed{seed}")
                train_dir = os.path.join(output_root, "base2new", "train_base", common)
                shot_opts = ["DATASET.NUM_SHOTS", str(shots)]
                train = None
                if eval_only:
                    subs = ("base", "new")
                else:
                    subs = ("new",)
                    argv = train_argv(python, root, seed, trainer, dataset, config_file, train_dir,
                                       shot_opts + ["DATASET.SUBSAMPLE_CLASSES", "base", *extra_opts])
                    train = training(argv, train_dir, dataset, seed)
                for sub in subs:
                    test_dir = os.path.join(output_root, "base2new", f"test_{sub}", common)
                    runs.append(eval_run(dataset, seed, test_dir, None if eval_only else train_dir,
                                         shot_opts + ["DATASET.SUBSAMPLE_CLASSES", sub], train))
    else:
        for seed in seeds:
            train = None
            targets = list(datasets)
            if eval_only:
                targets = [source] + [d for d in targets if d != source]
            else:
                train_dir = os.path.join(output_root, source, trainer, f"{cfg}_{shots}shots", f"seed{seed}")
                argv = train_argv(python, root, seed, trainer, source, config_file, train_dir,
                                   ["DATASET.NUM_SHOTS", str(shots), *extra_opts])
                train = training(argv, train_dir, source, seed)
            for dataset in targets:
                test_dir = os.path.join(output_root, "evaluation", trainer, f"{cfg}_{shots}shots", dataset, f"seed{seed}")
                runs.append(eval_run(dataset, seed, test_dir, None if eval_only else train.output_dir, [], train))
    return runs


def check_trainer(trainer: str, protocol: str, cfg: Optional[str], registered: Sequence[str]) -> Optional[str]:
    """None if the trainer can run; else a one-line note why it is skipped.
    Raises ProtocolError for a name that is neither in TRAINER_DEFAULTS nor registered."""
    if trainer not in TRAINER_DEFAULTS and trainer not in registered:
        known = sorted(set(TRAINER_DEFAULTS) | set(registered))
        raise ProtocolError(f"unknown trainer {trainer!r}{_suggest(trainer, known)}; known: {', '.join(known)}")
    if trainer not in registered:
        return f"note: skipping {trainer}: not registered in this checkout (trainers/__init__.py)"
    if trainer not in TRAINER_DEFAULTS and not cfg:
        return f"note: skipping {trainer}: no default config in TRAINER_DEFAULTS; pass --cfg"
    path = config_path(trainer, cfg or default_cfg(trainer, normalize_protocol(protocol)))
    if not os.path.isfile(path):
        return f"note: skipping {trainer}: config {os.path.relpath(path, ROOT)} does not exist"
    return None


def plan(
    protocol: str,
    trainers: Sequence[str],
    datasets: Optional[Sequence[str]] = None,
    out=None,
    **kwargs,
) -> List[Run]:
    """Validate names and plan the runs of every runnable trainer; print a note per skipped one."""
    out = out or sys.stdout
    protocol = normalize_protocol(protocol)
    if "source" in kwargs and kwargs["source"]:
        kwargs["source"] = resolve_datasets([kwargs["source"]])[0]
    if datasets:
        datasets = resolve_datasets(datasets)
    elif protocol == "domain_generalization":
        datasets = list(SHIFTED_DOMAINS.get(kwargs.get("source") or DEFAULT_SOURCE, ()))
    else:
        datasets = list(PROTOCOL_DATASETS[protocol])
    registered = registered_trainers()
    if list(trainers) == ["all"]:
        trainers = list(TRAINER_DEFAULTS)
    by_folder: Dict[str, Run] = {}
    for trainer in trainers:
        note = check_trainer(trainer, protocol, kwargs.get("cfg"), registered)
        if note:
            print(note, file=out)
            continue
        merge_runs(by_folder, plan_protocol(protocol, trainer, datasets, **kwargs))
    return list(by_folder.values())


def merge_runs(by_folder: Dict[str, Run], runs: Sequence[Run]) -> None:
    """Add runs to {output folder: run}, in order; a run planned twice (a two-stage host's run
    and the host's own, the source run of two transfer protocols) is kept once, and what
    depends on it points at the kept one."""
    for run in runs:
        if run.depends_on is not None:
            run.depends_on = by_folder.get(run.depends_on.output_dir, run.depends_on)
        by_folder.setdefault(run.output_dir, run)


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
# trainer on the bundled benchmark (2-core CPU, one thread; the images' features cached). Only
# their ratios matter: they order the queue (longest first) and scale the time-to-go estimate;
# a wrong value changes neither a run nor its numbers.
EPOCH_SECONDS = {"CoOp": 0.1, "KgCoOp": 0.1, "ProDA": 0.3, "CoCoOp": 0.45, "MaPLe": 0.75, "PromptSRC": 0.8,
                 "EMPL_CoOp": 0.5, "EMPL_ProDA": 0.6, "EMPL_MaPLe": 1.2}
EVAL_SECONDS = {"CoCoOp": 2.5, "MaPLe": 2.5, "PromptSRC": 2.5, "EMPL_MaPLe": 3.0}
DEFAULT_EPOCH_SECONDS, DEFAULT_EVAL_SECONDS, DATASET_SECONDS = 0.3, 0.3, 5.0


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
        cfg = launch.setup_cfg(launch.build_parser().parse_args(list(argv[2:])))
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


def split_extra_opts(argv: Sequence[str]):
    """(own args, config opts after the first '--')."""
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def add_run_arguments(parser: argparse.ArgumentParser, seeds=DEFAULT_SEEDS, shots=DEFAULT_SHOTS, output_dir="output"):
    """The options shared by run_protocol.py and compare.py."""
    parser.add_argument("--root", default=os.environ.get("DATA", ""), help="dataset root (default: $DATA)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(seeds))
    parser.add_argument("--shots", type=int, default=shots)
    parser.add_argument("--cfg", default=None, help="config name for every trainer (default: TRAINER_DEFAULTS)")
    parser.add_argument("--output-dir", default=output_dir, help="output root (CoOp's output/)")
    parser.add_argument("--source", default=DEFAULT_SOURCE, help="source dataset of cross_dataset / domain_generalization")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--verbose", action="store_true", help="stream each run's output (default: one line per run)")
    parser.add_argument("--python", default=sys.executable, help="interpreter for train.py")


def run_kwargs(args, extra_opts):
    if not args.root:
        raise ProtocolError("no dataset root: pass --root or set DATA (layouts: docs/DATASETS.md)")
    if len(extra_opts) % 2:
        raise ProtocolError(f"config opts after '--' must be KEY VALUE pairs, got {list(extra_opts)}")
    return dict(
        seeds=args.seeds, root=args.root, output_root=args.output_dir, cfg=args.cfg, shots=args.shots,
        source=args.source, extra_opts=extra_opts, python=args.python,
    )


def main(argv=None, out=None) -> int:
    own, extra_opts = split_extra_opts(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Config opts after '--' (KEY VALUE ...) go to every train.py call.",
    )
    parser.add_argument("protocol", help="base2new, cross_dataset (xd) or domain_generalization (dg)")
    parser.add_argument("--trainers", nargs="+", required=True, help=f"'all' or names from: {', '.join(TRAINER_DEFAULTS)}")
    parser.add_argument("--datasets", nargs="*", help="datasets (targets for xd/dg); default: the protocol's")
    add_run_arguments(parser)
    args = parser.parse_args(own)
    try:
        runs = plan(args.protocol, args.trainers, args.datasets, out=out, **run_kwargs(args, extra_opts))
    except ProtocolError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return exit_status(execute(runs, dry_run=args.dry_run, out=out, verbose=args.verbose), out)


def exit_status(n_failed: int, out=None, what: str = "run(s)") -> int:
    """A driver's exit status: 0, or 1 after saying how to resume the failed runs (finished
    runs are skipped on a re-run)."""
    if n_failed:
        print(f"{n_failed} {what} failed; re-run the same command to resume them", file=out or sys.stdout)
    return 1 if n_failed else 0


if __name__ == "__main__":
    sys.exit(main())
