"""Which errors print as one line: those raised on purpose for bad input (dassl/utils/errors.py),
not every ValueError or KeyError. A bug keeps its traceback."""
import os
import subprocess
import sys
import textwrap

import pytest

import launch
from dassl.config import get_cfg_default
from dassl.utils import CheckpointWriteError, UnreadableImageError, UserError, UserKeyError, UserValueError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _raise(err):
    raise err


@pytest.mark.parametrize("err", [UserValueError("OPTIM.LR must be > 0, got -1: give a positive LR"),
                                 UserKeyError("No dataset named 'EuroSat': did you mean EuroSAT?")])
def test_an_error_raised_on_purpose_is_one_line_and_exit_status_2(err, capsys, monkeypatch):
    monkeypatch.delenv("TRAIN_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        launch.run_reporting_user_errors(_raise, err)
    assert exit_info.value.code == 2
    first = capsys.readouterr().err.splitlines()[0]
    assert first == f"error: {err.args[0]}"  # a KeyError's message without its repr's quotes


@pytest.mark.parametrize("err", [ValueError("operands could not be broadcast together"), KeyError("ctx"),
                                 TypeError("unsupported operand")])
def test_a_plain_value_or_key_error_is_a_bug_and_keeps_its_traceback(err, capsys):
    with pytest.raises(type(err)):
        launch.run_reporting_user_errors(_raise, err)
    assert "error:" not in capsys.readouterr().err


def test_user_errors_stay_value_and_key_errors_for_callers_that_catch_those():
    assert issubclass(UserValueError, ValueError) and issubclass(UserKeyError, KeyError)
    for kind in (UserValueError, UserKeyError, UnreadableImageError, CheckpointWriteError):
        assert issubclass(kind, UserError), kind
    from dassl.config import ConfigKeyError
    from tools.protocols import ProtocolError
    from tools.reporting.results import TableError
    from tools.run_loading import NotARunDirError
    for kind in (ConfigKeyError, ProtocolError, TableError, NotARunDirError):
        assert issubclass(kind, UserError) and issubclass(kind, (ValueError, KeyError)), kind


@pytest.mark.parametrize("text,expected", [
    ("OPTIM: 5\n", r"(?s)Type mismatch .* OPTIM \(in .*bad.yaml\)"),  # yacs's own complaint, located
    ("- OPTIM.LR\n- 0.1\n", r"bad.yaml holds a YAML list, not KEY: VALUE entries"),
])
def test_a_config_file_of_the_wrong_shape_is_a_user_error_that_names_the_file(text, expected, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(UserValueError, match=expected):
        get_cfg_default().merge_from_file(str(bad))


def test_trainers_error_types_fall_back_under_real_dassl():
    """A CoOp checkout's Dassl.pytorch has no dassl.utils.errors: trainers/errors.py then defines
    its own, still ValueError and KeyError subclasses."""
    check = textwrap.dedent(f"""
        import importlib.abc, importlib.util, sys
        class NoErrors(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "dassl.utils.errors":
                    raise ImportError("real Dassl.pytorch has no dassl.utils.errors")
        sys.meta_path.insert(0, NoErrors())
        spec = importlib.util.spec_from_file_location("plugin_errors", {os.path.join(ROOT, "trainers", "errors.py")!r})
        errors = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(errors)
        assert errors.UserValueError.__module__ == "plugin_errors"
        assert issubclass(errors.UserValueError, (errors.UserError, ValueError))
        assert issubclass(errors.UserKeyError, (errors.UserError, KeyError))
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr


def test_trainers_use_the_bundled_dassls_types_here():
    import trainers.errors
    assert trainers.errors.UserValueError is UserValueError and trainers.errors.UserKeyError is UserKeyError
