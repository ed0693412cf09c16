"""The trainers as an installable plugin (pyproject.toml): installed, they import as
`multiprompt` next to a CoOp checkout's own `trainers` package, register every trainer in
Dassl's registry, declare their config keys and carry their data files (README, "Using these
trainers in an existing CoOp checkout")."""
import os
import shutil
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHECK = textwrap.dedent("""
    import os, sys
    import trainers                     # the checkout's own package
    import multiprompt                  # ours, installed
    from dassl.config import get_cfg_default
    from dassl.engine import TRAINER_REGISTRY
    assert trainers.MINE and os.path.dirname(trainers.__file__) == os.path.join(os.getcwd(), "trainers")
    assert "site" in multiprompt.__file__, multiprompt.__file__
    names = set(TRAINER_REGISTRY._obj_map)
    assert {"EMPL_CoOp", "EMPL_ProDA", "EMPL_MaPLe", "ProDA", "MaPLe"} <= names, names
    cfg = get_cfg_default()
    multiprompt.add_method_config(cfg)
    assert cfg.TRAINER.EMPL.PERSISTENT is True and cfg.TRAINER.PRODA.N_PROMPTS >= 1
    from multiprompt.open_vocab import DEFAULT_VOCAB_FILE
    assert os.path.isfile(DEFAULT_VOCAB_FILE) and "site" in DEFAULT_VOCAB_FILE, DEFAULT_VOCAB_FILE
    print("ok", len(names))
""")


def test_installed_plugin_imports_as_multiprompt_beside_a_checkouts_trainers(tmp_path):
    # Build from a copy: an in-tree build would leave build/ and *.egg-info in the repository.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), src / name)
    shutil.copytree(os.path.join(ROOT, "trainers"), src / "trainers",
                    ignore=shutil.ignore_patterns("__pycache__"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(src)], check=True, capture_output=True, timeout=300)
    assert sorted(os.listdir(site / "multiprompt" / "data")) == sorted(os.listdir(os.path.join(ROOT, "trainers", "data")))
    assert not (site / "dassl").exists() and not (site / "trainers").exists()  # only the plugin

    checkout = tmp_path / "CoOp"  # a checkout with its own trainers package
    (checkout / "trainers").mkdir(parents=True)
    (checkout / "trainers" / "__init__.py").write_text("MINE = True\n")
    # dassl and clip: this repository's stand-ins for the checkout's (real Dassl is not on PyPI).
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(checkout), str(site), ROOT]))
    proc = subprocess.run([sys.executable, "-c", CHECK], cwd=checkout, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.startswith("ok"), proc.stdout + proc.stderr


def test_load_model_without_the_bundled_dassls_hook(build_tiny_trainer, tmp_path, monkeypatch, capsys):
    """Under real Dassl.pytorch (no load_model_state hook in its TrainerBase, and a load_model
    that fails on an epoch checkpoint's val_result None), ClipPromptTrainer loads by itself:
    the learned context comes back, the class-dependent buffers stay this run's."""
    import torch

    from dassl.engine.trainer import TrainerBase

    trainer = build_tiny_trainer("EMPL_CoOp", "configs/trainers/EMPL_CoOp/tiny.yaml")
    learner = trainer.model.prompt_learner
    saved = {k: v.clone() for k, v in learner.state_dict().items()}
    trainer.save_model(0, str(tmp_path))
    with torch.no_grad():
        learner.ctx.add_(1.0)
    monkeypatch.delattr(TrainerBase, "load_model_state")
    monkeypatch.delattr(TrainerBase, "load_model")  # its checks must not be what runs
    trainer.load_model(str(tmp_path), epoch=1)
    assert torch.equal(learner.ctx, saved["ctx"])
    assert 'Loading weights to prompt_learner from' in capsys.readouterr().out
