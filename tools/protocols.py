"""Planning protocol runs: the protocols' defaults (scripts/protocols/defaults.txt), the bundled
benchmark's settings, config look-ups, and `plan`, which turns a protocol, trainers and datasets
into train.py runs (`Run`) in CoOp's output layout (tools/run_protocol.py describes the layout
and the protocols). tools/execution.py runs them.
"""
import difflib
import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from dassl.utils import UserValueError

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
# The config keys of EMPL's own node (TRAINER.EMPL.*): a host trainer reads none of them.
EMPL_PREFIX = "TRAINER.EMPL."


# The bundled benchmark (docs/BENCHMARK.md): its base-to-new tasks and the config name every
# trainer uses on it per protocol (configs/trainers/<T>/bundled.yaml and bundled_xd.yaml: the
# world CLIP; as the reference repos, the transfer protocols' source training has its own
# config). Cross-dataset and domain generalization train on WorldNet (all classes) and test on
# the four base-to-new tasks or on WorldNet's restyled renderings.
BUNDLED_BASE2NEW = ("world_objects", "world_breeds", "world_textures", "world_aerial")
BUNDLED = {
    "datasets": {
        "base2new": BUNDLED_BASE2NEW,
        "cross_dataset": BUNDLED_BASE2NEW,
        "domain_generalization": SHIFTED_DOMAINS["world_net"],
    },
    "source": "world_net",
    "cfg": {"base2new": "bundled", "cross_dataset": "bundled_xd", "domain_generalization": "bundled_xd"},
    "root": os.path.join(ROOT, "data"),
}


class ProtocolError(UserValueError):
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


def opt_pairs(opts: Sequence[str]) -> List[Tuple[str, str]]:
    """KEY VALUE opts (train.py's trailing opts) as (key, value) pairs, in order."""
    return list(zip(opts[::2], opts[1::2]))


def without_keys(opts: Sequence[str], drop: Callable[[str], bool]) -> List[str]:
    """KEY VALUE opts without the pairs whose key drop(key) is true."""
    return [x for key, value in opt_pairs(opts) if not drop(key) for x in (key, value)]


def config_value(config_file: str, opts: Sequence[str], key: str):
    """A config key's value for a run: the last KEY VALUE pair of opts, else the config file's
    (with its _BASE_ files), else the default config's (dassl's defaults and every method's keys)."""
    from dassl.config.cfg_node import load_with_bases
    from tools.run_loading import config_value as value_in, key_names

    names = key_names(key)  # opts may still use a key's old name, as train.py accepts
    for opt_key, value in reversed(opt_pairs(opts)):  # the last pair wins, as in yacs
        if opt_key in names:
            return value

    node = value_in(load_with_bases(config_file), key)  # also under the key's old name
    if node is not None:
        return node
    import launch
    from dassl.config import get_cfg_default

    cfg = get_cfg_default()
    launch.extend_cfg(cfg)
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def host_trainer(trainer: str) -> Optional[str]:
    """The trainer an EMPL trainer fine-tunes in two-stage training (TRAINER_DEFAULTS), else None."""
    return TRAINER_DEFAULTS[trainer].host if trainer in TRAINER_DEFAULTS else None


def bundled_budget(trainer: str) -> Tuple[str, int]:
    """(OPTIM.LR, OPTIM.MAX_EPOCH) of a trainer's bundled.yaml: the budget validation chose for
    it on the bundled benchmark (docs/BENCHMARK.md, "Budgets")."""
    config_file = config_path(trainer, "bundled")
    return str(config_value(config_file, [], "OPTIM.LR")), max_epoch(config_file, [])


def lr_fraction(lr: str, divisor: int) -> str:
    """An LR opt divided by divisor, as the opt's text ("0.2", 10 -> "0.02")."""
    return f"{float(lr) / divisor:g}"


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
    host_output_root: Optional[str] = None,
    host_opts: Optional[Sequence[str]] = None,
) -> List[Run]:
    """The runs of one trainer in one protocol, each training run before the evaluations that
    load it. Mirrors scripts/protocols/*.sh (flags, folders, --load-epoch = last epoch).
    A two-stage trainer's host runs live under host_output_root (default: output_root) and take
    host_opts (default: extra_opts without EMPL's own keys, so a smoke test's short budget reaches
    the host too); run sets that differ only in how EMPL trains pass host_opts=[] and one shared
    host_output_root, and share one host run per dataset and seed."""
    protocol = normalize_protocol(protocol)
    given_cfg = cfg
    cfg = cfg or default_cfg(trainer, protocol)
    config_file = config_path(trainer, cfg)
    eval_only = is_eval_only(trainer)
    extra_opts = list(extra_opts)
    runs: List[Run] = []
    host = host_trainer(trainer)
    two_stage = host is not None and str(config_value(config_file, extra_opts, "TRAINER.EMPL.HOST_RUN")) == HOST_RUN_AUTO

    def host_training(dataset, seed) -> Optional[Run]:
        """Two-stage training (TRAINER.EMPL.HOST_RUN auto): the host's training run on the same
        data, seed and shots, planned as the host's own protocol plans it; None otherwise."""
        if not two_stage:
            return None
        host_cfg = str(config_value(config_file, extra_opts, "TRAINER.EMPL.HOST_CONFIG") or "") or given_cfg
        # The host reads none of EMPL's keys: without them its run is the host's own (the same
        # config as the host trained alone in the same folder).
        opts = list(host_opts) if host_opts is not None else without_keys(
            extra_opts, lambda key: key.startswith(EMPL_PREFIX))
        return plan_protocol(protocol, host, [dataset] if protocol == "base2new" else [], [seed], root,
                             host_output_root or output_root, host_cfg, shots, source, opts, python)[0]

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
