"""parse_test_res.py reads the Dassl result block from CoOp-style output trees."""
import math

import pytest

import parse_test_res as ptr

LOG = """epoch [1/1] batch [5/5] loss 1.2
* accuracy: 10.00%
Finish training
Evaluate on the *test* set
=> result
* total: 100
* correct: {c}
* accuracy: {acc}%
* error: {err}%
* macro_f1: 50.00%
"""


def write_tree(root, accs, prefix=""):
    for i, acc in enumerate(accs, 1):
        d = root / prefix / f"seed{i}"
        d.mkdir(parents=True)
        (d / "log.txt").write_text(LOG.format(c=int(acc), acc=acc, err=100 - acc))


def test_mean_and_std_over_seeds(tmp_path, capsys):
    write_tree(tmp_path, [70.0, 72.0, 77.0])
    result = ptr.main([str(tmp_path)])
    mean = (70 + 72 + 77) / 3
    std = math.sqrt(((70 - mean) ** 2 + (72 - mean) ** 2 + (77 - mean) ** 2) / 3)
    assert result["accuracy"] == pytest.approx(mean)
    assert f"* accuracy: {mean:.2f}% +- {std:.2f}%" in capsys.readouterr().out


def test_ci95_and_other_keyword(tmp_path, capsys):
    write_tree(tmp_path, [60.0, 80.0])
    ptr.main([str(tmp_path), "--ci95", "--keyword", "error"])
    # errors 40 and 20: mean 30, std 10, ci95 = 1.96 * 10 / sqrt(2)
    assert f"* error: 30.00% +- {1.96 * 10 / math.sqrt(2):.2f}%" in capsys.readouterr().out


def test_accuracy_before_finish_training_is_ignored(tmp_path):
    write_tree(tmp_path, [55.5])
    assert ptr.read_metric(str(tmp_path / "seed1" / "log.txt")) == 55.5


def test_one_reader_for_logs_and_captured_output(tmp_path):
    """last_metric: the number as written, after the signal or (None) anywhere; the tools read
    logs (read_metric) and captured run output through it."""
    write_tree(tmp_path, [55.5])
    text = (tmp_path / "seed1" / "log.txt").read_text()
    assert ptr.last_metric(text.splitlines()) == "55.5"
    assert ptr.last_metric(text.splitlines()[:3], end_signal=None) == "10.00"
    assert ptr.last_metric(text.splitlines()[:3]) is None
    assert ptr.read_metric(str(tmp_path / "seed1" / "log.txt"), "macro_f1", end_signal=None) == 50.0


def test_multi_exp_averages_experiment_means(tmp_path, capsys):
    write_tree(tmp_path, [50.0, 60.0], prefix="exp-1")
    write_tree(tmp_path, [70.0], prefix="exp-2")
    assert ptr.main([str(tmp_path), "--multi-exp"])["accuracy"] == pytest.approx((55 + 70) / 2)


def test_no_result_is_a_clear_error(tmp_path):
    (tmp_path / "seed1").mkdir()
    (tmp_path / "seed1" / "log.txt").write_text("epoch [1/1]\n")
    with pytest.raises(SystemExit, match="no '\\* accuracy: X%' line"):
        ptr.main([str(tmp_path)])
