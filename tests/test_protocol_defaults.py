"""One source for the protocols' defaults: scripts/protocols/defaults.txt is read by the shell
scripts (scripts/common.sh) and by tools/run_protocol.py, and both make the same train.py calls."""
import glob
import os
import re
import subprocess
import sys

import pytest

from tools import protocols, run_protocol

ROOT = protocols.ROOT
WRAPPERS = sorted(glob.glob(os.path.join(ROOT, "scripts", "*", "*.sh")))
WRAPPERS = [p for p in WRAPPERS if os.path.basename(os.path.dirname(p)) not in ("protocols", "coop")]
STEPS = ("base2new_train", "base2new_test", "xd_train", "xd_test")
SETTINGS = ("TRAINER", "CFG", "SHOTS", "SEEDS", "SOURCE", "LOADEP", "SUB", "METHOD")  # the scripts' environment


def method_of(wrapper):
    """The trainer a per-method script names (its only setting)."""
    text = open(wrapper, encoding="utf-8").read()
    step = os.path.basename(wrapper)
    line = next(line for line in text.splitlines() if line.startswith("METHOD="))
    method, rest = line[len("METHOD="):].split(" ", 1)
    assert rest == f'exec bash "$(dirname "$0")/../protocols/{step}" "$@"'
    return method


def shell(tmp_path, *argv, **env):
    """A script's train.py calls (one per line) with train.py replaced by an echo of its arguments;
    a two-stage training step's host run, which it prints to stderr, comes first."""
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/bash\nif [ "$1" = train.py ]; then echo "$@"; else exec {sys.executable} "$@"; fi\n')
    fake.chmod(0o755)
    inherited = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    env = {**inherited, "DATA": "/d", "PYTHON": str(fake), **env}
    proc = subprocess.run(["bash", *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    host_calls = [line for line in proc.stderr.splitlines() if line.startswith("train.py ")]
    return "\n".join(host_calls + [proc.stdout.strip()])


def planned(protocol, trainer, dataset, seed, step):
    """run_protocol's train.py arguments for the same step, in the shell scripts' relative form (a
    training step: its training runs in order, the host's first for two-stage training)."""
    runs = protocols.plan_protocol(protocol, trainer, [dataset], [seed], root="/d", python="python")
    trainings = [run for run in runs if not run.eval_only]
    chosen = trainings if step.endswith("_train") else [next(run for run in runs if run.eval_only)]
    return "\n".join(" ".join(os.path.relpath(a, ROOT) if a.startswith(ROOT + os.sep) else a for a in run.argv[1:])
                     for run in chosen)


def test_every_method_has_the_four_thin_protocol_scripts():
    methods = {}
    for wrapper in WRAPPERS:
        methods.setdefault(method_of(wrapper), set()).add(os.path.basename(wrapper)[: -len(".sh")])
        text = open(wrapper, encoding="utf-8").read()
        for cfg in ("vit_b16", "rn50", "SHOTS=", "CFG="):  # no default of its own
            assert cfg not in text.replace("(TRAINER, CFG, SHOTS", ""), wrapper
    assert sorted(methods) == sorted(t for t in protocols.TRAINER_DEFAULTS if t not in ("ZeroshotCLIP", "CoOp"))
    assert all(steps == set(STEPS) for steps in methods.values())


@pytest.mark.parametrize("wrapper", WRAPPERS, ids=lambda p: os.path.relpath(p, os.path.join(ROOT, "scripts")))
def test_wrappers_and_run_protocol_make_the_same_calls(wrapper, tmp_path):
    trainer, step = method_of(wrapper), os.path.basename(wrapper)[: -len(".sh")]
    protocol = "base2new" if step.startswith("base2new") else "cross_dataset"
    args = ["3"] if step == "xd_train" else ["dtd", "3"]
    printed = shell(tmp_path, wrapper, *args).strip()
    assert printed == planned(protocol, trainer, "dtd", 3, step)


def test_shell_reads_the_same_settings(tmp_path):
    script = tmp_path / "print.sh"
    script.write_text(f'source {ROOT}/scripts/common.sh\nfor k in seeds shots source; do defaults $k; done\n'
                      'METHOD=EMPL_CoOp method_cfg base2new; METHOD=EMPL_CoOp method_cfg cross_dataset\n'
                      'defaults shifted_domains imagenet; defaults base2new_datasets\n')
    seeds, shots, source, b2n_cfg, xd_cfg, dg, b2n = shell(tmp_path, str(script)).splitlines()
    assert tuple(map(int, seeds.split())) == protocols.DEFAULT_SEEDS
    assert int(shots) == protocols.DEFAULT_SHOTS and source == protocols.DEFAULT_SOURCE
    defaults = protocols.TRAINER_DEFAULTS["EMPL_CoOp"]
    assert (b2n_cfg, xd_cfg) == (defaults.base2new_cfg, defaults.cross_dataset_cfg)
    assert tuple(dg.split()) == protocols.DOMAIN_GENERALIZATION_TARGETS
    assert tuple(b2n.split()) == protocols.BASE2NEW_DATASETS


def test_defaults_are_written_once():
    """No default config name is written again in the scripts or in the protocol planning code."""
    names = {t.base2new_cfg for t in protocols.TRAINER_DEFAULTS.values()}
    names |= {t.cross_dataset_cfg for t in protocols.TRAINER_DEFAULTS.values()}
    sources = glob.glob(os.path.join(ROOT, "scripts", "**", "*.sh"), recursive=True)
    sources += [os.path.join(ROOT, "tools", name) for name in ("protocols.py", "run_protocol.py")]
    for path in sources:
        text = open(path, encoding="utf-8").read()
        for name in names - {"vit_b16"}:  # CoOp's zero-shot config, also named in zeroshot.sh's usage
            assert not re.search(rf"\b{name}\b", text), (path, name)
    assert list(protocols.TRAINER_DEFAULTS)[:2] == ["ZeroshotCLIP", "CoOp"]
    assert protocols.TRAINER_DEFAULTS["ZeroshotCLIP"].eval_only
    assert not any(t.eval_only for n, t in protocols.TRAINER_DEFAULTS.items() if n != "ZeroshotCLIP")
