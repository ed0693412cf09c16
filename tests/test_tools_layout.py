"""tools/ as commands over a library (docs/ARCHITECTURE.md, "tools/"): each command runs from the
repository root as `python -m tools.<name>`, and no module under tools/ imports train.py or edits
sys.path."""
import glob
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_no_tool_imports_train_py_or_edits_sys_path():
    for path in glob.glob(os.path.join(ROOT, "tools", "**", "*.py"), recursive=True):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        assert not re.search(r"^\s*(import train\b|from train import)", text, re.M), path
        assert not re.search(r"sys\.path\.(insert|append)|sys\.path\[", text), path


def test_a_command_runs_as_a_module_from_the_repository_root():
    proc = subprocess.run([sys.executable, "-m", "tools.compare", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and "--trainers" in proc.stdout, proc.stderr
