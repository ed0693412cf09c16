"""The bad-input sweep (docs/RELIABILITY.md, "Bad input"): train.py run as a user runs it on
malformed inputs. Each must end with exit status 2 and one `error:` line naming the problem,
and leave every file of the dataset and output folders byte-identical (only a run record may be
added: the log, log.txt* and tensorboard/, and the config, config.yaml*, which train.py writes
before building the trainer, whose checks find most bad input). The table in docs/RELIABILITY.md
is this test's output:

    UPDATE_DOCS=1 python -m pytest tests/test_bad_input.py   # rewrite the table
"""
import hashlib
import json
import os
import pickle
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_train_py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "RELIABILITY.md")
BEGIN, END = "<!-- bad-input sweep: begin -->", "<!-- bad-input sweep: end -->"
CLASSES = ("AnnualCrop", "Forest", "SeaLake")  # EuroSAT's raw folder names
COOP_TINY = "configs/trainers/CoOp/tiny.yaml"


def make_eurosat(root, n=10):
    """EuroSAT in CoOp's raw layout (2750/<Class>/*.jpg), tiny real images; then the split
    file and the 2-shot cache of seed 1, made as train.py makes them."""
    rng = np.random.default_rng(0)
    for c in CLASSES:
        os.makedirs(os.path.join(root, "eurosat", "2750", c))
        for i in range(n):
            pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(os.path.join(root, "eurosat", "2750", c, f"{c}_{i}.jpg"), format="PNG")
    build_dataset(root)


def build_dataset(root, shots=2):
    import datasets  # noqa: F401
    from dassl.config import get_cfg_default
    from dassl.data.datasets import build_dataset as build

    cfg = get_cfg_default()
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"
    cfg.DATASET.ROOT, cfg.DATASET.NAME, cfg.DATASET.NUM_SHOTS, cfg.SEED = str(root), "EuroSAT", shots, 1
    random.seed(1)
    return build(cfg)


class Case:
    """One malformed input: ``prepare(case)`` edits the case's copy of the data/checkpoints and
    returns the train.py arguments that differ from the default command."""

    def __init__(self, tmp, base_model):
        self.tmp = tmp
        self.data = os.path.join(tmp, "data")
        self.out = os.path.join(tmp, "out")
        self.model = os.path.join(tmp, "model")
        self.split = os.path.join(self.data, "eurosat", "split_zhou_EuroSAT.json")
        self.cache = os.path.join(self.data, "eurosat", "split_fewshot", "shot_2-seed_1.pkl")
        self.images = os.path.join(self.data, "eurosat", "2750")
        self.base_model = base_model

    def edit_split(self, fn):
        with open(self.split) as f:
            split = json.load(f)
        with open(self.split, "w") as f:
            json.dump(fn(split), f)

    def copy_model(self, to):
        shutil.copytree(self.base_model, to)
        return os.path.join(to, "prompt_learner", "model.pth.tar-1")

    def edit_checkpoint(self, path, fn):
        ckpt = torch.load(path, weights_only=False)
        fn(ckpt["state_dict"])
        torch.save(ckpt, path)


def command(case, *opts, trainer="CoOp", config=COOP_TINY, root=None, out=None, flags=()):
    return ["--root", root or case.data, "--seed", "1", "--trainer", trainer, "--config-file", config,
            "--dataset-config-file", "configs/datasets/eurosat.yaml", "--output-dir", out or case.out, *flags,
            "DATASET.NUM_SHOTS", "2", "OPTIM.MAX_EPOCH", "1", *opts]


def eval_command(case, *opts, epoch="1", **kw):
    return command(case, *opts, flags=("--eval-only", "--model-dir", case.model, "--load-epoch", epoch), **kw)


# (input, what the error line must contain, prepare). Listed in the docs table in this order.
CASES = []


def case(name, expected):
    def register(prepare):
        CASES.append((name, expected, prepare))
        return prepare
    return register


# -- dataset folder --------------------------------------------------------------------------
@case("empty dataset folder (eurosat/2750/ created, no images, no split)", "is empty or incomplete: no class folders")
def _(c):
    shutil.rmtree(os.path.join(c.data, "eurosat"))
    os.makedirs(c.images)
    return command(c)


@case("a class folder with no images (no split yet)", "none in 1 (Forest)")
def _(c):
    os.remove(c.split)
    shutil.rmtree(os.path.dirname(c.cache))
    for f in os.listdir(os.path.join(c.images, "Forest")):
        os.remove(os.path.join(c.images, "Forest", f))
    return command(c)


@case("class folder missing (the split lists its images)", "lists 10 of 30 images that do not exist")
def _(c):
    shutil.rmtree(os.path.join(c.images, "SeaLake"))
    return command(c)


@case("split names one missing file", "lists 1 of 30 images that do not exist")
def _(c):
    os.remove(os.path.join(c.images, "Forest", "Forest_3.jpg"))
    return command(c)


@case("split JSON truncated", "malformed split file")
def _(c):
    with open(c.split) as f:
        text = f.read()
    with open(c.split, "w") as f:
        f.write(text[: len(text) // 2])
    return command(c)


@case("split JSON is not an object of lists", "expected a JSON object with lists 'train', 'val' and 'test'")
def _(c):
    with open(c.split, "w") as f:
        f.write("[]")
    return command(c)


@case("split with an empty 'test' list", "the 'test' split is empty")
def _(c):
    c.edit_split(lambda s: {**s, "test": []})
    return command(c)


@case("split whose 'test' lacks a class", "1 class(es) have no 'test' images ('Sea or Lake')")
def _(c):
    c.edit_split(lambda s: {**s, "test": [e for e in s["test"] if e[1] != 2]})
    return command(c)


@case("few-shot cache corrupt (not a pickle)", "malformed few-shot cache")
def _(c):
    with open(c.cache, "wb") as f:
        f.write(b"\x80\x04garbage")
    return command(c)


@case("few-shot cache from another split", "does not match the split")
def _(c):
    data = pickle.load(open(c.cache, "rb"))
    data["train"] = [x for x in data["train"] if x.label != 1]  # a class the split has is gone
    with open(c.cache, "wb") as f:
        pickle.dump(data, f)
    return command(c)


@case("unreadable image among the training shots", "Cannot read image")
def _(c):
    data = pickle.load(open(c.cache, "rb"))
    with open(data["train"][0].impath, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n truncated")
    return command(c)


@case("DATASET.NUM_SHOTS above what a class has", "Lower DATASET.NUM_SHOTS to at most 5")
def _(c):
    return command(c, "DATASET.NUM_SHOTS", "8")


@case("DATASET.SUBSAMPLE_CLASSES typo", "SUBSAMPLE_CLASSES must be one of")
def _(c):
    return command(c, "DATASET.SUBSAMPLE_CLASSES", "bse")


@case("--root that does not exist", "dataset folder not found")
def _(c):
    return command(c, root=os.path.join(c.tmp, "nowhere"))


@case("unknown dataset name", "EuroSat")
def _(c):
    return command(c, "DATASET.NAME", "EuroSat")


# -- command line and config ------------------------------------------------------------------
@case("unknown trainer", "CoOOp")
def _(c):
    return command(c, trainer="CoOOp")


@case("config key typo on the command line", "OPTIM.LRR")
def _(c):
    return command(c, "OPTIM.LRR", "0.1")


@case("command-line opts without a value", "odd number of items")
def _(c):
    return command(c, "OPTIM.LR")


@case("config value of the wrong type", "OPTIM.MAX_EPOCH")
def _(c):
    return command(c, "OPTIM.MAX_EPOCH", "ten")


@case("--config-file that does not exist", "nope.yaml")
def _(c):
    return command(c, config="configs/trainers/CoOp/nope.yaml")


@case("config file that is not YAML", "bad.yaml")
def _(c):
    bad = os.path.join(c.tmp, "bad.yaml")
    with open(bad, "w") as f:
        f.write("OPTIM:\n  LR: [0.1\n")
    return command(c, config=bad)


@case("PREC typo", "PREC must be fp16, fp32 or amp, got 'fp61'")
def _(c):
    return command(c, "TRAINER.COOP.PREC", "fp61")


@case("INPUT.SIZE that does not fit the CLIP", "INPUT.SIZE (64, 64) does not match")
def _(c):
    return command(c, "INPUT.SIZE", "(64, 64)")


@case("MODEL.BACKBONE.CHECKPOINT that is not a CLIP", "garbage.pt")
def _(c):
    garbage = os.path.join(c.tmp, "garbage.pt")
    with open(garbage, "wb") as f:
        f.write(bytes(i % 251 for i in range(7, 263)))  # fixed bytes: the message is the same each run
    return command(c, "MODEL.BACKBONE.CHECKPOINT", garbage)


# -- output folder and checkpoints -------------------------------------------------------------
@case("--output-dir is a file", "a file of that name is in the way")
def _(c):
    with open(c.out, "w") as f:
        f.write("precious\n")
    return command(c)


@case("--output-dir under a file", "cannot write to the output folder")
def _(c):
    with open(c.out, "w") as f:
        f.write("precious\n")
    return command(c, out=os.path.join(c.out, "seed1"))


@case("resume from a corrupt checkpoint", "model.pth.tar-1")
def _(c):
    path = c.copy_model(c.out)
    with open(path, "wb") as f:
        f.write(b"PK\x03\x04 not a checkpoint")
    return command(c, "OPTIM.MAX_EPOCH", "2")


@case("resume from a checkpoint of another trainer", "model.pth.tar-1")
def _(c):
    c.copy_model(c.out)
    return command(c, "OPTIM.MAX_EPOCH", "2", trainer="ProDA", config="configs/trainers/ProDA/tiny.yaml")


@case("evaluate a checkpoint of another class count", "model.pth.tar-1")
def _(c):
    path = c.copy_model(c.model)
    c.edit_checkpoint(path, lambda sd: sd.update(ctx=sd["ctx"].unsqueeze(0).repeat(5, 1, 1)))  # 5-class CSC
    return eval_command(c, "TRAINER.COOP.CSC", "True")


@case("NaN in the learned prompt of a checkpoint", "model.pth.tar-1")
def _(c):
    path = c.copy_model(c.model)
    c.edit_checkpoint(path, lambda sd: sd["ctx"].view(-1)[0].fill_(float("nan")))
    return eval_command(c)


@case("--model-dir that does not exist", "model")
def _(c):
    return eval_command(c)


@case("--load-epoch that was not saved", "model.pth.tar-7")
def _(c):
    c.copy_model(c.model)
    return eval_command(c, epoch="7")


# ----------------------------------------------------------------------------- harness
def file_hashes(*folders):
    """{path: sha256} of every file under the folders (a folder may be a plain file)."""
    out = {}
    for folder in folders:
        if os.path.isfile(folder):
            out[folder] = hashlib.sha256(open(folder, "rb").read()).hexdigest()
        for dirpath, _, files in os.walk(folder):
            for name in files:
                path = os.path.join(dirpath, name)
                out[path] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


def is_log(path, out):
    """A run record train.py may add to the output folder: log.txt*, tensorboard/, config.yaml*."""
    rel = os.path.relpath(path, out)
    return rel.startswith(("log.txt", "config.yaml")) or rel.split(os.sep)[0] == "tensorboard"


def run_case(tmp, base_model, name, prepare, runner=run_train_py):
    c = Case(tmp, base_model)
    os.makedirs(c.data)
    make_eurosat(c.data)
    args = prepare(c)
    out = args[args.index("--output-dir") + 1]
    folders = (c.data, c.out, c.model)
    before = file_hashes(*folders)
    status, stdout, stderr = runner(args)
    after = file_hashes(*folders)
    changed = sorted(p for p in before if after.get(p) != before[p])
    added = sorted(p for p in after if p not in before and not is_log(p, out))
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    message = errors[0][len("error: "):] if errors else ""
    for path, short in ((c.data, "$DATA"), (c.out, "$OUT"), (c.model, "$MODEL"), (c.tmp, "$TMP"), (ROOT, "$REPO")):
        message = message.replace(path, short)
    return {"name": name, "rc": status, "errors": errors, "message": message,
            "changed": changed, "added": added, "traceback": "Traceback" in stderr + stdout,
            "stderr": stderr[-2000:]}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Every case, one after another, each train.py run as __main__ in this process (it stops
    early). One case as its own process too: the command line itself (test_one_case_as_a_process)."""
    base = tmp_path_factory.mktemp("base")
    make_eurosat(str(base / "data"))
    model = base / "model"
    c = Case(str(base), None)
    status, _, stderr = run_train_py(command(c, out=str(model)))
    assert status == 0, stderr[-2000:]
    results = [run_case(str(tmp_path_factory.mktemp(f"case{i:02d}")), str(model), name, prepare)
               for i, (name, _, prepare) in enumerate(CASES)]
    return {r["name"]: r for r in results}, str(model)


def run_train_py_process(args):
    """(exit status, stdout, stderr) of `python train.py ARGS` in its own interpreter."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    env.pop("TRAIN_DEBUG", None)
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def test_one_case_as_a_process(sweep, tmp_path):
    """The command line proper, in its own interpreter, on the first case: the same exit status,
    error line and untouched files as the in-process sweep found."""
    name, _, prepare = CASES[0]
    r = run_case(str(tmp_path), sweep[1], name, prepare, runner=run_train_py_process)
    expected = sweep[0][name]
    assert r["rc"] == expected["rc"] == 2 and not r["traceback"], r["stderr"]
    assert (r["message"], r["changed"], r["added"]) == (expected["message"], [], [])


def test_at_least_twenty_cases():
    assert len(CASES) >= 20 and len({name for name, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("name,expected", [(n, e) for n, e, _ in CASES], ids=[n for n, _, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(sweep, name, expected):
    r = sweep[0][name]
    assert r["rc"] == 2, r["stderr"]
    assert len(r["errors"]) == 1 and not r["traceback"], r["stderr"]
    assert expected in r["errors"][0], r["errors"][0]
    assert r["changed"] == [] and r["added"] == [], (r["changed"], r["added"])


def sweep_table(sweep):
    rows = ["| input | error line (paths shortened) | dataset and output files unchanged |", "|---|---|---|"]
    for name, _, _ in CASES:
        r = sweep[0][name]
        unchanged = "yes" if r["rc"] == 2 and not r["changed"] and not r["added"] else "**no**"
        message = r["message"].replace("|", "\\|")
        rows.append(f"| {name} | `{message}` | {unchanged} |" if "`" not in message else
                    f"| {name} | {message} | {unchanged} |")
    return "\n".join(rows)


def doc_rows(text):
    """{input: (error line, unchanged)} of the sweep table between the markers."""
    block = text.split(BEGIN)[1].split(END)[0]
    rows = {}
    for line in block.strip().splitlines()[2:]:
        name, message, unchanged = [cell.strip() for cell in line.strip("|").split(" | ")]
        rows[name] = (message.strip("`"), unchanged)
    return rows


def test_docs_table_is_the_sweeps_output(sweep):
    """The docs hold this sweep's table: the same inputs in the same order, each marked
    unchanged, each message with the words the test expects. (Messages quoting a library's
    own words, e.g. Pillow's or json's, may differ slightly between versions, so they are
    not compared verbatim; UPDATE_DOCS=1 rewrites the table from this run.)"""
    text = open(DOC).read()
    assert BEGIN in text and END in text, f"docs/RELIABILITY.md lacks the {BEGIN} ... {END} markers"
    if os.environ.get("UPDATE_DOCS"):
        head, rest = text.split(BEGIN)
        text = f"{head}{BEGIN}\n{sweep_table(sweep)}\n{END}{rest.split(END)[1]}"
        with open(DOC, "w") as f:
            f.write(text)
    rows = doc_rows(text)
    assert list(rows) == [name for name, _, _ in CASES], "the docs' sweep table is stale: rerun with UPDATE_DOCS=1"
    for name, expected, _ in CASES:
        message, unchanged = rows[name]
        assert expected in message and unchanged == "yes", (name, message)
