"""tools/make_tables.py, tools/run_protocol.py and tools/compare.py on fake CoOp-style log trees
(and compare.py once end to end on the tiny CLIP)."""
import argparse
import contextlib
import csv
import io
import math
import os

import pytest

from tools import compare, execution, make_tables, protocols, run_loading, run_protocol, sweep
from tools.reporting import paired
from tools.reporting.results import collect_results, config_string
from tools.reporting.summaries import base2new_summary, sweep_points
from tools.reporting.tables import load_reference, write_tables

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_log(acc, eval_only, lam=0.1, n_prompts=4, seed_offset=0):
    """A log as train.py writes it: the config dump, then Dassl's result block. The dump has the
    names TRAINER.EMPL's keys had before their renames (LAMBDA, N_PROMPTS): old runs still read."""
    head = (
        "***************\n** Arguments **\n***************\nseed: 1\n"
        "************\n** Config **\n************\n"
        "OPTIM:\n  LR: 0.002\n  MAX_EPOCH: 5\n"
        f"TRAINER:\n  COOP:\n    N_CTX: 16\n  EMPL:\n    INFERENCE: sample\n    LAMBDA: {lam}\n"
        f"    N_PROMPTS: {n_prompts}\n  NAME: X\n  PRODA:\n    N_PROMPTS: 7\n"
        + (f"TRAIN:\n  SEED_OFFSET: {seed_offset}\n" if seed_offset else "")
        + "USE_CUDA: True\nCollecting env info ...\n"
    )
    body = "" if eval_only else "epoch [5/5] batch [1/1] loss 1.0\n* accuracy: 1.00%\nFinish training\n"
    return head + body + f"=> result\n* total: 100\n* correct: 1\n* accuracy: {acc}%\n* error: {100 - acc}%\n"


def write_log(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def write_base2new(root, trainer, cfg, dataset, seed, base, new, shots=16, **config):
    common = os.path.join(dataset, f"shots_{shots}", trainer, cfg, f"seed{seed}", "log.txt")
    write_log(os.path.join(root, "base2new", "train_base", common), fake_log(base, False, **config))
    write_log(os.path.join(root, "base2new", "test_new", common), fake_log(new, True, **config))


# Two trainers x two datasets, 3 seeds (CoOp) and 2 seeds (EMPL_CoOp).
ACCS = {
    ("CoOp", "eurosat"): ([80.0, 82.0, 87.0], [60.0, 61.0, 65.0]),
    ("CoOp", "dtd"): ([90.0, 92.0, 95.0], [20.0, 22.0, 27.0]),
    ("EMPL_CoOp", "eurosat"): ([81.0, 85.0], [66.0, 70.0]),
    ("EMPL_CoOp", "dtd"): ([92.0, 93.0], [28.0, 31.0]),
}


@pytest.fixture
def b2n_tree(tmp_path):
    root = tmp_path / "output"
    for (trainer, dataset), (bases, news) in ACCS.items():
        for seed, (b, n) in enumerate(zip(bases, news), 1):
            write_base2new(str(root), trainer, "cfgA", dataset, seed, b, n)
    return root


def mean(xs):
    return sum(xs) / len(xs)


def pstd(xs):
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs))


def hmean(b, n):
    return 2 * b * n / (b + n)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def cells(line):
    """The cells of one Markdown table row, without the padding."""
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def md_rows(text):
    """The rows (cell lists) of the Markdown table in text, after checking it is a valid GitHub
    table: a header, a |---| separator line, rows with the header's number of cells."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header, separator, body = lines[0], lines[1], lines[2:]
    assert set(separator) <= set("|-: ") and len(cells(separator)) == len(cells(header)), separator
    assert all(len(cells(line)) == len(cells(header)) for line in body), text
    return [cells(line) for line in body]


def lookup(rows, dataset, method, metric, source="measured"):
    match = [r for r in rows if (r["dataset"], r["method"], r["metric"], r["source"]) == (dataset, method, metric, source)]
    assert len(match) == 1, (dataset, method, metric, source, match)
    return match[0]


def test_base2new_means_stds_h_and_average_by_hand(b2n_tree, tmp_path):
    out = io.StringIO()
    written = write_tables(str(b2n_tree), out_dir=str(tmp_path / "tables"), show_std=True, stream=out)
    rows = read_csv(tmp_path / "tables" / "base2new.csv")
    assert written["base2new"].endswith("base2new.md")
    for trainer in ("CoOp", "EMPL_CoOp"):
        for dataset in ("eurosat", "dtd"):
            bases, news = ACCS[(trainer, dataset)]
            base, new = lookup(rows, dataset, trainer, "base"), lookup(rows, dataset, trainer, "new")
            assert float(base["mean"]) == pytest.approx(mean(bases), abs=1e-4)
            assert float(base["std"]) == pytest.approx(pstd(bases), abs=1e-4)
            assert float(new["std"]) == pytest.approx(pstd(news), abs=1e-4)
            assert int(base["n"]) == len(bases)
            h = lookup(rows, dataset, trainer, "H")
            assert float(h["mean"]) == pytest.approx(hmean(mean(bases), mean(news)), abs=1e-4)
        # Average row: mean over datasets of the means; H of the averages (not the mean of the H's).
        avg_b = mean([mean(ACCS[(trainer, d)][0]) for d in ("eurosat", "dtd")])
        avg_n = mean([mean(ACCS[(trainer, d)][1]) for d in ("eurosat", "dtd")])
        assert float(lookup(rows, "average", trainer, "base")["mean"]) == pytest.approx(avg_b, abs=1e-4)
        avg_h = float(lookup(rows, "average", trainer, "H")["mean"])
        assert avg_h == pytest.approx(hmean(avg_b, avg_n), abs=1e-4)
        mean_of_hs = mean([hmean(mean(ACCS[(trainer, d)][0]), mean(ACCS[(trainer, d)][1])) for d in ("eurosat", "dtd")])
        assert abs(avg_h - mean_of_hs) > 1.0  # the data tell the two conventions apart
        # The average's spreads are over seeds, of each seed's average over the datasets (and its H).
        n_seeds = len(ACCS[(trainer, "eurosat")][0])
        seed_b = [mean([ACCS[(trainer, d)][0][s] for d in ("eurosat", "dtd")]) for s in range(n_seeds)]
        seed_n = [mean([ACCS[(trainer, d)][1][s] for d in ("eurosat", "dtd")]) for s in range(n_seeds)]
        assert float(lookup(rows, "average", trainer, "base")["std"]) == pytest.approx(pstd(seed_b), abs=1e-4)
        assert float(lookup(rows, "average", trainer, "new")["std"]) == pytest.approx(pstd(seed_n), abs=1e-4)
        seed_h = [hmean(b, n) for b, n in zip(seed_b, seed_n)]
        assert float(lookup(rows, "average", trainer, "H")["std"]) == pytest.approx(pstd(seed_h), abs=1e-4)
    md = (tmp_path / "tables" / "base2new.md").read_text()
    # Markdown: a table per dataset (and the average) with a row per trainer; CoOp's eurosat row
    # holds its mean +- std cells.
    assert "### Average over 2 datasets" in md and "### eurosat" in md and "### dtd" in md
    eurosat = md.split("### eurosat")[1].split("###")[0]
    by_method = {row[0]: row for row in md_rows(eurosat)}
    assert f"{mean([80.0, 82.0, 87.0]):.2f} ± {pstd([80.0, 82.0, 87.0]):.2f}" in by_method["CoOp"]
    assert "EMPL_CoOp" in by_method
    assert md in out.getvalue()


def test_published_rows_carry_their_source(b2n_tree, tmp_path):
    write_tables(str(b2n_tree), out_dir=str(tmp_path / "t"), stream=io.StringIO())
    reference = load_reference()
    maple = reference["sources"]["maple_cvpr23"]["label"]
    md = (tmp_path / "t" / "base2new.md").read_text()
    # MaPLe's published CoOp average is a row of the average table, under the measured rows.
    average = md.split("### Average")[1].split("###")[0]
    published_row = next(row for row in md_rows(average) if row[0].startswith(f"CoOp (published: {maple})"))
    assert published_row[1:] == ["82.69", "63.22", "71.66"]
    rows = read_csv(tmp_path / "t" / "base2new.csv")
    assert float(lookup(rows, "average", "MaPLe", "H", source=maple)["mean"]) == pytest.approx(78.55)
    empl = reference["sources"]["empl_iccv"]["label"]
    assert float(lookup(rows, "average", "EMPL", "H", source=empl)["mean"]) == pytest.approx(71.76)


def test_published_averages_stay_off_the_bundled_benchmark(tmp_path):
    """A published average is over the 11 real datasets: not shown beside the synthetic tasks'
    average (it stays in the CSV, with its source)."""
    root = tmp_path / "output"
    for seed in (1, 2):
        write_base2new(str(root), "MaPLe", "bundled", "world_objects", seed, 80.0, 70.0)
    write_tables(str(root), out_dir=str(tmp_path / "t"), stream=io.StringIO())
    md = (tmp_path / "t" / "base2new.md").read_text()
    assert "MaPLe" in md and "(published:" not in md
    rows = read_csv(tmp_path / "t" / "base2new.csv")
    maple = load_reference()["sources"]["maple_cvpr23"]["label"]
    assert float(lookup(rows, "average", "MaPLe", "H", source=maple)["mean"]) == pytest.approx(78.55)


def test_transfer_tables_by_hand(tmp_path):
    root = tmp_path / "output"
    accs = {"imagenet": [70.0, 72.0], "caltech101": [90.0, 93.0], "eurosat": [40.0, 50.0],
            "imagenet_a": [48.0, 50.0], "imagenet_r": [75.0, 76.0]}
    for seed in (1, 2):
        write_log(str(root / "imagenet" / "CoOp" / "cfgX_16shots" / f"seed{seed}" / "log.txt"),
                  fake_log(accs["imagenet"][seed - 1], False))
        for d in ("caltech101", "eurosat", "imagenet_a", "imagenet_r"):
            write_log(str(root / "evaluation" / "CoOp" / "cfgX_16shots" / d / f"seed{seed}" / "log.txt"),
                      fake_log(accs[d][seed - 1], True))
    write_tables(str(root), out_dir=str(tmp_path / "t"), stream=io.StringIO())
    xd = read_csv(tmp_path / "t" / "cross_dataset.csv")
    dg = read_csv(tmp_path / "t" / "domain_generalization.csv")
    for rows in (xd, dg):
        assert float(lookup(rows, "imagenet", "CoOp", "accuracy")["mean"]) == pytest.approx(71.0)
    assert float(lookup(xd, "average", "CoOp", "accuracy")["mean"]) == pytest.approx(mean([91.5, 45.0]))
    assert float(lookup(dg, "average", "CoOp", "accuracy")["mean"]) == pytest.approx(mean([49.0, 75.5]))
    assert float(lookup(dg, "imagenet_a", "CoOp", "accuracy")["std"]) == pytest.approx(1.0)
    assert not [r for r in xd if r["dataset"] == "imagenet_a"]  # DG targets only in the DG table
    md = (tmp_path / "t" / "domain_generalization.md").read_text()
    assert "MaPLe (published: MaPLe paper" in md and "50.90" in md


def test_paired_transfer_differences_by_hand(tmp_path):
    """paired_stats --protocol: per seed, the mean over the protocol's targets, A - B, and a
    seedless zero-shot compared with every seed of A."""
    from tools import paired_stats

    root = tmp_path / "output"
    accs = {("CoOp", "caltech101"): [90.0, 93.0, 91.0], ("CoOp", "eurosat"): [40.0, 50.0, 44.0],
            ("CoOp", "imagenet_a"): [48.0, 50.0, 47.0], ("CoOp", "imagenet_r"): [75.0, 76.0, 77.0],
            ("KgCoOp", "caltech101"): [91.0, 92.0, 94.0], ("KgCoOp", "eurosat"): [45.0, 49.0, 46.0],
            ("ZeroshotCLIP", "caltech101"): [92.0], ("ZeroshotCLIP", "eurosat"): [47.0]}
    for (trainer, dataset), values in accs.items():
        for seed, acc in enumerate(values, 1):
            write_log(str(root / "evaluation" / trainer / "cfgX_16shots" / dataset / f"seed{seed}" / "log.txt"),
                      fake_log(acc, True))
        if trainer != "ZeroshotCLIP":
            for seed in range(1, len(values) + 1):
                write_log(str(root / "imagenet" / trainer / "cfgX_16shots" / f"seed{seed}" / "log.txt"), fake_log(70.0, False))
    out = io.StringIO()
    assert paired_stats.main([str(root), "--protocol", "cross_dataset", "--pairs", "KgCoOp:CoOp", "CoOp:ZeroshotCLIP"],
                             out=out) == 0
    rows = {cells(line)[0]: cells(line) for line in out.getvalue().splitlines()[2:]}
    kg = [mean([91.0, 45.0]) - mean([90.0, 40.0]), mean([92.0, 49.0]) - mean([93.0, 50.0]),
          mean([94.0, 46.0]) - mean([91.0, 44.0])]
    assert rows["KgCoOp - CoOp"][1] == " / ".join(f"{d:+.2f}" for d in kg)
    zs = [mean([90.0, 40.0]) - 69.5, mean([93.0, 50.0]) - 69.5, mean([91.0, 44.0]) - 69.5]
    m, low, high = paired.t_interval(zs)
    assert rows["CoOp - ZeroshotCLIP"][2] == f"{m:+.2f} [{low:+.2f}, {high:+.2f}]"
    zs_root = tmp_path / "b2n"  # base-to-new: zero-shot's one run set against each seed of CoOp
    write_base2new(str(zs_root), "ZeroshotCLIP", "cfgZ", "eurosat", 1, 70.0, 60.0)
    for seed, (b, n) in enumerate(((80.0, 55.0), (84.0, 63.0)), 1):
        write_base2new(str(zs_root), "CoOp", "cfgA", "eurosat", seed, b, n)
    seeds, diffs = paired.paired_differences(collect_results(str(zs_root))[0], "CoOp", "ZeroshotCLIP")
    assert seeds == [1, 2] and diffs["base"] == [10.0, 14.0] and diffs["new"] == [-5.0, 3.0]
    out = io.StringIO()
    assert paired_stats.main([str(root), "--protocol", "domain_generalization", "--pairs", "KgCoOp:CoOp"], out=out) == 0
    assert "0 paired seed(s): need 2" in out.getvalue()  # KgCoOp has no DG target


def test_bundled_domain_generalization_targets_and_no_foreign_published_rows(tmp_path):
    """Trained on WorldNet: its restyled sets form the DG table, another task the cross-dataset
    one, and ImageNet's published rows appear in neither."""
    root = tmp_path / "output"
    accs = {"world_net": 50.0, "world_net_noisy": 24.0, "world_net_cluttered": 40.0, "world_objects": 70.0}
    write_log(str(root / "world_net" / "CoOp" / "bundled_16shots" / "seed1" / "log.txt"), fake_log(accs["world_net"], False))
    for d in ("world_net_noisy", "world_net_cluttered", "world_objects"):
        write_log(str(root / "evaluation" / "CoOp" / "bundled_16shots" / d / "seed1" / "log.txt"), fake_log(accs[d], True))
    write_tables(str(root), out_dir=str(tmp_path / "t"), source="world_net", stream=io.StringIO())
    dg = read_csv(tmp_path / "t" / "domain_generalization.csv")
    xd = read_csv(tmp_path / "t" / "cross_dataset.csv")
    assert float(lookup(dg, "average", "CoOp", "accuracy")["mean"]) == pytest.approx(mean([24.0, 40.0]))
    assert float(lookup(xd, "average", "CoOp", "accuracy")["mean"]) == pytest.approx(70.0)
    for name in ("domain_generalization", "cross_dataset"):
        assert "published" not in (tmp_path / "t" / f"{name}.md").read_text()


def test_plots_and_sweeps_are_valid_pngs(tmp_path):
    sweep = tmp_path / "sweeps"
    for lam, shift in ((0.01, 0.0), (0.1, 2.0), (1.0, -3.0)):
        for seed in (1, 2):
            for dataset in ("eurosat", "dtd"):
                write_base2new(str(sweep / f"lambda{lam}"), "EMPL_CoOp", "cfgA", dataset, seed,
                               80 + shift + seed, 60 + shift, lam=lam)
    for n_prompts in (2, 8):
        write_base2new(str(sweep / f"n{n_prompts}"), "EMPL_CoOp", "cfgA", "eurosat", 1, 70 + n_prompts, 50, n_prompts=n_prompts)
    points = sweep_points(collect_results(str(sweep))[0], "open_loss_weight")
    # n_prompts held at its most common value (4): three lambda values, base = mean over seeds and datasets
    assert sorted(points["EMPL_CoOp"]) == [0.01, 0.1, 1.0]
    assert points["EMPL_CoOp"][0.1][0] == pytest.approx(80 + 2 + 1.5)
    assert points["EMPL_CoOp"][0.1][1] == pytest.approx(62.0)
    written = write_tables(str(sweep), out_dir=str(tmp_path / "t"), plots_dir=str(tmp_path / "plots"),
                           stream=io.StringIO())
    for name in ("plot_h", "plot_open_loss_weight", "plot_n_chains"):
        with open(written[name], "rb") as f:
            data = f.read()
        assert len(data) > 1000 and data.startswith(PNG_MAGIC), name
    # the sweep roots are told apart in the table
    md = (tmp_path / "t" / "base2new.md").read_text()
    assert "EMPL_CoOp (lambda0.1)" in md and "EMPL_CoOp (n8)" in md


def test_config_values_from_the_dump_under_old_and_new_names(tmp_path):
    (tmp_path / "log.txt").write_text(fake_log(50.0, True, lam=0.3, n_prompts=6))
    dump = run_loading.read_config_dump(str(tmp_path))
    assert config_string(dump, "TRAINER.EMPL.OPEN_LOSS_WEIGHT") == "0.3"  # a run made before the renames
    assert config_string(dump, "TRAINER.EMPL.N_CHAINS") == "6"
    assert config_string(dump, "TRAINER.PRODA.N_PROMPTS") == "7"
    assert config_string(dump, "TRAINER.EMPL.NOPE") is None


def test_the_planner_reads_a_key_under_its_old_name_in_opts_as_train_py_does(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("TRAINER:\n  EMPL:\n    OPEN_LOSS_WEIGHT: 0.2\n")
    assert protocols.config_value(str(config), [], "TRAINER.EMPL.OPEN_LOSS_WEIGHT") == 0.2
    old_name = ["TRAINER.EMPL.LAMBDA", "0.7"]  # opts over the file, under the old name too
    assert protocols.config_value(str(config), old_name, "TRAINER.EMPL.OPEN_LOSS_WEIGHT") == "0.7"
    assert protocols.config_value(str(config), old_name, "OPTIM.MAX_EPOCH") == 10  # Dassl's default
    # Keys are read at the pairs' key positions only: a value that spells a key is a value.
    value_like_a_key = ["TRAINER.EMPL.HOST_CONFIG", "OPTIM.MAX_EPOCH", "OPTIM.LR", "0.1"]
    assert protocols.config_value(str(config), value_like_a_key, "OPTIM.MAX_EPOCH") == 10
    assert protocols.config_value(str(config), ["OPTIM.LR", "0.1", "OPTIM.LR", "0.3"], "OPTIM.LR") == "0.3"


def test_no_runs_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty" / "base2new").mkdir(parents=True)
    assert make_tables.main([str(tmp_path / "empty")]) == 2
    assert "no finished runs under" in capsys.readouterr().err
    assert make_tables.main([str(tmp_path / "missing")]) == 2


# ------------------------------------------------------------------------------------ driver
def dry_run(argv):
    out = io.StringIO()
    own, opts = sweep.split_extra_opts(argv)
    rc = run_protocol.main(own + ["--dry-run"] + (["--", *opts] if opts else []), out=out)
    return rc, out.getvalue()


def test_dry_run_prints_the_protocol_commands(tmp_path):
    output = str(tmp_path / "out")
    rc, text = dry_run(["base2new", "--trainers", "CoOp", "ZeroshotCLIP", "--datasets", "eurosat", "--seeds", "1", "2",
                        "--root", "/datasets", "--output-dir", output, "--", "OPTIM.MAX_EPOCH", "3"])
    assert rc == 0
    lines = text.splitlines()
    commands = [line for line in lines if "train.py" in line]
    common = "eurosat/shots_16/CoOp/vit_b16_ep50_ctxv1"
    train1 = f"{output}/base2new/train_base/{common}/seed1"
    test1 = f"{output}/base2new/test_new/{common}/seed1"
    assert f"[start] {train1}" in lines and f"[start] {test1}" in lines
    train_cmd = next(c for c in commands if f"--output-dir {train1}" in c)
    for piece in ("--root /datasets", "--seed 1", "--trainer CoOp", "--dataset-config-file configs/datasets/eurosat.yaml",
                  "--config-file configs/trainers/CoOp/vit_b16_ep50_ctxv1.yaml",
                  "DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base OPTIM.MAX_EPOCH 3"):
        assert piece in train_cmd
    assert "--eval-only" not in train_cmd
    test_cmd = next(c for c in commands if f"--output-dir {test1}" in c)
    assert f"--model-dir {train1} --load-epoch 3 --eval-only" in test_cmd  # last epoch from the opts
    assert "DATASET.SUBSAMPLE_CLASSES new" in test_cmd
    # ZeroshotCLIP: eval-only on base and new with CoOp's config, first seed only
    zs = [c for c in commands if "--trainer ZeroshotCLIP" in c]
    assert len(zs) == 2 and all("configs/trainers/CoOp/vit_b16.yaml" in c and "--eval-only" in c for c in zs)
    assert any("test_base/eurosat/shots_16/ZeroshotCLIP/vit_b16/seed1" in c for c in zs)
    assert len(commands) == 2 * 2 + 2


def test_dry_run_cross_dataset_layout(tmp_path):
    output = str(tmp_path / "out")
    rc, text = dry_run(["cross_dataset", "--trainers", "EMPL_ProDA", "--datasets", "caltech101", "dtd", "--seeds", "2",
                        "--root", "/d", "--output-dir", output])
    assert rc == 0
    train_dir = f"{output}/imagenet/EMPL_ProDA/vit_b16_ep10_cross_datasets_16shots/seed2"
    assert f"[start] {train_dir}" in text
    for d in ("caltech101", "dtd"):
        assert f"[start] {output}/evaluation/EMPL_ProDA/vit_b16_ep10_cross_datasets_16shots/{d}/seed2" in text
    load_epoch = protocols.max_epoch(protocols.config_path("EMPL_ProDA", "vit_b16_ep10_cross_datasets"), [])
    assert f"--model-dir {train_dir} --load-epoch {load_epoch} --eval-only" in text


def test_finished_runs_are_skipped_unfinished_resumed(tmp_path):
    output = tmp_path / "out"
    common = "eurosat/shots_16/CoOp/tiny/seed{}"
    # seed 1: training finished (result block); seed 2: training stopped after a checkpoint
    write_log(str(output / "base2new" / "train_base" / common.format(1) / "log.txt"), fake_log(70.0, False))
    seed2 = output / "base2new" / "train_base" / common.format(2)
    write_log(str(seed2 / "log.txt"), "epoch [1/5] batch [1/1] loss 2.0\n")
    write_log(str(seed2 / "prompt_learner" / "checkpoint"), "model.pth.tar-1\n")
    # seed 1's new-class test also finished
    write_log(str(output / "base2new" / "test_new" / common.format(1) / "log.txt"), fake_log(50.0, True))
    rc, text = dry_run(["base2new", "--trainers", "CoOp", "--cfg", "tiny", "--datasets", "eurosat", "--seeds", "1", "2", "3",
                        "--root", "/d", "--output-dir", str(output)])
    assert rc == 0
    lines = text.splitlines()
    b2n = f"{output}/base2new"
    assert f"[skip: finished] {b2n}/train_base/{common.format(1)}" in lines
    assert f"[skip: finished] {b2n}/test_new/{common.format(1)}" in lines
    assert f"[resume] {b2n}/train_base/{common.format(2)}" in lines
    assert f"[start] {b2n}/test_new/{common.format(2)}" in lines
    assert f"[start] {b2n}/train_base/{common.format(3)}" in lines
    commands = [line for line in lines if "train.py" in line]
    assert not any(f"--output-dir {b2n}/train_base/{common.format(1)}" in c for c in commands)
    assert any(f"--output-dir {b2n}/train_base/{common.format(2)}" in c for c in commands)  # same dir: dassl resumes
    assert len(commands) == 4


def test_an_unfinished_attempt_is_set_aside_before_a_rerun(tmp_path):
    """Its log.txt always; its config.yaml only when the run starts over (a resumed run keeps the
    config its checkpoint was trained with)."""
    for state in ("start", "resume"):
        folder = tmp_path / state
        write_log(str(folder / "log.txt"), "epoch [1/5] batch [1/1] loss 2.0\n")
        write_log(str(folder / "config.yaml"), "SEED: 1\n")
        run = protocols.Run(trainer="CoOp", cfg="tiny", dataset="eurosat", seed=1, output_dir=str(folder),
                            argv=[], eval_only=False)
        execution.set_aside_interrupted(run, state)
        names = sorted(os.listdir(folder))
        assert "log.txt" not in names and any(n.startswith("log.txt-interrupted-") for n in names)
        set_aside = any(n.startswith("config.yaml-interrupted-") for n in names)
        assert set_aside == (state == "start") and ("config.yaml" in names) == (state == "resume")
        assert len(names) == 2  # renamed, nothing deleted


def test_a_finished_run_with_another_config_is_skipped_with_a_note(tmp_path):
    """The folder names a run (its results stand), but a config.yaml that is not the config the
    command builds now (an edited config file, other opts) is said on the skip line."""
    import launch

    folder = str(tmp_path / "run")
    argv = protocols.train_argv("python", "/d", 1, "CoOp", "eurosat",
                                protocols.config_path("CoOp", "tiny"), folder, ["DATASET.NUM_SHOTS", "4"])
    run = protocols.Run(trainer="CoOp", cfg="tiny", dataset="eurosat", seed=1, output_dir=folder, argv=argv,
                        eval_only=False)
    write_log(os.path.join(folder, "log.txt"), fake_log(70.0, False))
    lines = {}
    for case, text in (("same", launch.config_from_argv(argv[2:]).dump()),
                       ("other", "OPTIM:\n  LR: 0.5\n")):
        write_log(os.path.join(folder, "config.yaml"), text)
        out = io.StringIO()
        assert execution.execute([run], out=out) == 0
        lines[case] = out.getvalue().strip()
    assert lines["same"] == f"[skip: finished] {folder}"
    assert lines["other"].startswith(f"[skip: finished] {folder} (its config.yaml differs")
    assert "another --output-dir" in lines["other"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["base2novel", "--trainers", "CoOp"], "unknown protocol 'base2novel'"),
        (["base2new", "--trainers", "Coop"], "did you mean CoOp?"),
        (["base2new", "--trainers", "CoOp", "--datasets", "imagenet-a"], "did you mean imagenet_a?"),
    ],
)
def test_bad_names_are_clear_errors(argv, message, capsys):
    assert run_protocol.main(argv + ["--root", "/d", "--dry-run"]) == 2
    assert message in capsys.readouterr().err


def test_odd_config_opts_are_refused_before_any_run(capsys):
    assert run_protocol.main(["base2new", "--trainers", "CoOp", "--root", "/d", "--", "OPTIM.MAX_EPOCH"]) == 2
    assert "KEY VALUE pairs" in capsys.readouterr().err


def test_missing_config_or_trainer_is_skipped_with_a_note(tmp_path):
    rc, text = dry_run(["base2new", "--trainers", "CoOp", "ProDA", "--cfg", "tiny_ctxv1", "--datasets", "dtd",
                        "--seeds", "1", "--root", "/d", "--output-dir", str(tmp_path)])
    assert rc == 0
    assert "note: skipping ProDA: config configs/trainers/ProDA/tiny_ctxv1.yaml does not exist" in text
    assert "--trainer CoOp" in text and "--trainer ProDA" not in text


def test_registry_names_are_accepted_for_datasets():
    assert protocols.resolve_datasets(["SyntheticShapes", "eurosat", "DescribableTextures"]) == [
        "synthetic_shapes", "eurosat", "dtd"]


# ------------------------------------------------------------------------------- end to end
def test_compare_end_to_end_on_the_tiny_clip(tmp_path):
    """CoOp and EMPL_CoOp through the driver on SyntheticShapes, 1 seed, 1 epoch; the table has both."""
    out = io.StringIO()
    output = tmp_path / "compare"
    rc = compare.main(["--root", str(tmp_path / "data"), "--datasets", "SyntheticShapes", "--trainers", "CoOp", "EMPL_CoOp",
                       "--seeds", "1", "--cfg", "tiny", "--shots", "2", "--output-dir", str(output),
                       "--plots", str(tmp_path / "plots"), "--", "OPTIM.MAX_EPOCH", "1", "TRAINER.EMPL.SGLD_STEPS", "1"], out=out)
    text = out.getvalue()
    assert rc == 0, text
    # One line per run (its output is in its log.txt): 2 trainers x (train base, test new).
    assert text.count("    accuracy ") == 4 and "Building transform" not in text
    rows = read_csv(output / "tables" / "base2new.csv")
    for trainer in ("CoOp", "EMPL_CoOp"):
        for metric in ("base", "new", "H"):
            value = float(lookup(rows, "synthetic_shapes", trainer, metric)["mean"])
            assert 0.0 <= value <= 100.0
        assert (output / "base2new" / "test_new" / "synthetic_shapes" / "shots_2" / trainer / "tiny" / "seed1" / "log.txt").is_file()
    table = text.split("### synthetic_shapes")[1]
    assert {row[0] for row in md_rows(table.split("\n\n##")[0])} >= {"CoOp", "EMPL_CoOp"}
    assert (tmp_path / "plots" / "base2new_H_by_dataset.png").read_bytes().startswith(PNG_MAGIC)
    # A second call finds every run finished and only re-prints the table.
    again = io.StringIO()
    assert compare.main(["--root", str(tmp_path / "data"), "--datasets", "synthetic_shapes", "--trainers", "CoOp", "EMPL_CoOp",
                         "--seeds", "1", "--cfg", "tiny", "--shots", "2", "--output-dir", str(output), "--", "TRAINER.EMPL.SGLD_STEPS", "1",
                         "OPTIM.MAX_EPOCH", "1"], out=again) == 0
    assert again.getvalue().count("[skip: finished]") == 4 and "train.py" not in again.getvalue()


def test_compare_all_protocols_share_the_source_runs(tmp_path):
    """The main job's plan (--protocol all): base-to-new on the four bundled tasks, and one
    source training per trainer and seed that both transfer protocols evaluate."""
    out = io.StringIO()
    output = str(tmp_path / "q")
    assert compare.main(["--protocol", "all", "--trainers", "CoOp", "ZeroshotCLIP", "--seeds", "1", "2",
                         "--output-dir", output, "--in-process", "--dry-run"], out=out) == 0
    starts = [line[len("[start] "):] for line in out.getvalue().splitlines() if line.startswith("[start] ")]
    assert len(starts) == len(set(starts))
    sources = [s for s in starts if s.startswith(f"{output}/world_net/")]
    assert sources == [f"{output}/world_net/CoOp/bundled_xd_16shots/seed{n}" for n in (1, 2)]
    evaluations = [s for s in starts if "/evaluation/CoOp/" in s]
    assert len(evaluations) == 2 * (len(protocols.BUNDLED_BASE2NEW) + len(protocols.SHIFTED_DOMAINS["world_net"]))
    b2n = [s for s in starts if "/base2new/" in s and "/CoOp/" in s]
    assert len(b2n) == len(protocols.BUNDLED_BASE2NEW) * 2 * 2  # train base + test new, per task and seed
    assert "train.py" not in out.getvalue()  # in-process: no command lines


def test_paired_differences_and_t_interval_by_hand(b2n_tree):
    """tools/paired_stats.py: per-seed averages over datasets, A - B on the seeds both have
    (1 and 2 here), and the Student-t interval of the mean (t_0.975 with 1 df = 12.706)."""
    from tools import paired_stats

    out = io.StringIO()
    assert paired_stats.main([str(b2n_tree), "--pairs", "EMPL_CoOp:CoOp"], out=out) == 0
    results, _ = collect_results(str(b2n_tree))
    seeds, diffs = paired.paired_differences(results, "EMPL_CoOp", "CoOp")
    assert seeds == [1, 2]
    for i, seed in enumerate(seeds):
        ea = [ACCS[("EMPL_CoOp", d)] for d in ("eurosat", "dtd")]
        ca = [ACCS[("CoOp", d)] for d in ("eurosat", "dtd")]
        eb, en = mean([a[0][i] for a in ea]), mean([a[1][i] for a in ea])
        cb, cn = mean([a[0][i] for a in ca]), mean([a[1][i] for a in ca])
        assert diffs["base"][i] == pytest.approx(eb - cb)
        assert diffs["new"][i] == pytest.approx(en - cn)
        assert diffs["H"][i] == pytest.approx(hmean(eb, en) - hmean(cb, cn))
    m, low, high = paired.t_interval(diffs["H"])
    d = diffs["H"]
    half = 12.706 * abs(d[0] - d[1]) / math.sqrt(2) / math.sqrt(2)  # sample std of 2 values = |a-b|/sqrt(2)
    assert m == pytest.approx(mean(d)) and high - m == pytest.approx(half, rel=1e-4) and m - low == pytest.approx(half, rel=1e-4)
    assert "EMPL_CoOp - CoOp" in out.getvalue() and f"{m:+.2f} [{low:+.2f}, {high:+.2f}]" in out.getvalue()
    with pytest.raises(ValueError, match="2 seeds"):
        paired.t_interval([1.0])


def test_paired_cells_list_every_cell_below_the_margin(b2n_tree):
    """paired_stats --cells: every (task, seed, split) A - B against ACCS by hand, the cells below
    -margin counted and named, the worst one reported."""
    from tools import paired_stats

    results, _ = collect_results(str(b2n_tree))
    found = paired.cell_differences(results, "CoOp", "EMPL_CoOp")
    expected = [(d, seed, m, ACCS[("CoOp", d)][k][seed - 1] - ACCS[("EMPL_CoOp", d)][k][seed - 1])
                for seed in (1, 2) for d in sorted(("eurosat", "dtd")) for k, m in enumerate(("base", "new"))]
    assert [c[:3] for c in found] == [e[:3] for e in expected]
    assert [c[3] for c in found] == pytest.approx([e[3] for e in expected])
    margin = 1.5
    below = [e for e in expected if e[3] < -margin]
    out = io.StringIO()
    assert paired_stats.main([str(b2n_tree), "--pairs", "CoOp:EMPL_CoOp", "--cells", str(margin)], out=out) == 0
    row = [line for line in out.getvalue().splitlines() if line.startswith("| CoOp - EMPL_CoOp")][0]
    assert 0 < len(below) < len(expected)  # the margin splits the cells
    assert cells(row)[1] == f"{len(below)} of {len(expected)}"
    assert all(f"{d} seed {seed} {m} {x:+.2f}" in cells(row)[3] for d, seed, m, x in below)
    worst = min(expected, key=lambda e: e[3])
    assert cells(row)[2] == f"{worst[3]:+.2f} ({worst[0]} seed {worst[1]} {worst[2]})"


def test_paired_stats_takes_each_trainer_from_the_first_folder_that_has_it(b2n_tree, tmp_path):
    """paired_stats A_DIR B_DIR: EMPL's runs from one folder and its host's from another (an
    ablation's value folder and its default folder) give the one-folder result; a trainer in
    both folders is taken from the first."""
    import shutil
    from types import SimpleNamespace
    from tools import paired_stats

    only = {}
    for keep, drop in (("EMPL_CoOp", "CoOp"), ("CoOp", "EMPL_CoOp")):
        only[keep] = tmp_path / keep
        shutil.copytree(b2n_tree, only[keep])
        for folder in [p for p in only[keep].rglob(drop) if p.is_dir()]:
            shutil.rmtree(folder)
        assert {r.trainer for r in collect_results(str(only[keep]))[0]} == {keep}
    outputs = []
    for roots in ([b2n_tree], [only["EMPL_CoOp"], only["CoOp"]], [only["CoOp"], b2n_tree]):
        out = io.StringIO()
        assert paired_stats.main([*map(str, roots), "--pairs", "EMPL_CoOp:CoOp", "--cells", "1"], out=out) == 0
        outputs.append(out.getvalue())
    assert outputs[0] == outputs[1] == outputs[2] and "EMPL_CoOp - CoOp" in outputs[0]
    first, second = ([SimpleNamespace(trainer=t, accuracy=a) for t, a in runs]
                     for runs in ((("CoOp", 1.0),), (("CoOp", 2.0), ("EMPL_CoOp", 3.0))))
    merged = paired_stats.first_folder_per_trainer([first, second])
    assert [(r.trainer, r.accuracy) for r in merged] == [("CoOp", 1.0), ("EMPL_CoOp", 3.0)]


def test_paired_stats_compares_each_host_with_its_rerun(b2n_tree, tmp_path):
    """paired_stats --rerun ROOT: "B (re-run) - B" after the pairs, B's runs in ROOT against B's in
    the roots, per seed and cell (the yardstick of training randomness); A - B is unchanged."""
    from tools import paired_stats

    rerun = tmp_path / "rerun"
    shift = {"eurosat": (1.0, -4.0), "dtd": (-3.0, 2.0)}  # CoOp re-run = CoOp + shift, seeds 1-3
    for dataset, (db, dn) in shift.items():
        bases, news = ACCS[("CoOp", dataset)]
        for seed, (b, n) in enumerate(zip(bases, news), 1):
            write_base2new(str(rerun), "CoOp", "cfgA", dataset, seed, b + db, n + dn, seed_offset=100)
    plain, with_rerun = io.StringIO(), io.StringIO()
    assert paired_stats.main([str(b2n_tree), "--pairs", "EMPL_CoOp:CoOp"], out=plain) == 0
    assert paired_stats.main([str(b2n_tree), "--pairs", "EMPL_CoOp:CoOp", "--rerun", str(rerun)], out=with_rerun) == 0
    lines = with_rerun.getvalue().splitlines()
    pair_rows = [cells(l) for l in plain.getvalue().splitlines() if l.startswith("| EMPL_CoOp - CoOp")]
    assert len(pair_rows) == 3 and pair_rows == [cells(l) for l in lines if l.startswith("| EMPL_CoOp - CoOp")]
    rows = {cells(l)[1]: cells(l) for l in lines if l.startswith("| CoOp (re-run) - CoOp")}
    base, new = mean([v[0] for v in shift.values()]), mean([v[1] for v in shift.values()])
    assert rows["base"][2] == " / ".join([f"{base:+.2f}"] * 3) and rows["new"][2] == " / ".join([f"{new:+.2f}"] * 3)
    out = io.StringIO()
    assert paired_stats.main([str(b2n_tree), "--pairs", "EMPL_CoOp:CoOp", "--rerun", str(rerun), "--cells", "2.5"], out=out) == 0
    row = [l for l in out.getvalue().splitlines() if l.startswith("| CoOp (re-run) - CoOp")][0]
    assert cells(row)[1] == "6 of 12"  # eurosat new -4 and dtd base -3 on each of 3 seeds
    # A pair may name the re-run itself: EMPL_CoOp - CoOp (re-run) = (EMPL_CoOp - CoOp) - shift.
    against = io.StringIO()
    assert paired_stats.main([str(b2n_tree), "--pairs", "EMPL_CoOp:CoOp (re-run)", "--rerun", str(rerun)], out=against) == 0
    base_rows = {tuple(cells(l)[:2]): cells(l)[2] for l in (plain.getvalue() + against.getvalue()).splitlines()
                 if "| base " in l}
    plain_base = [float(x) for x in base_rows[("EMPL_CoOp - CoOp", "base")].split(" / ")]
    assert base_rows[("EMPL_CoOp - CoOp (re-run)", "base")] == " / ".join(f"{d - base:+.2f}" for d in plain_base)
    # A folder of ordinary runs (no TRAIN.SEED_OFFSET) is not a re-run: a clear error, exit 2.
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert paired_stats.main([str(b2n_tree), "--pairs", "EMPL_CoOp:CoOp", "--rerun", str(b2n_tree)], out=io.StringIO()) == 2
    assert "made without TRAIN.SEED_OFFSET" in err.getvalue() and "-- TRAIN.SEED_OFFSET 100" in err.getvalue()


def test_ablation_table_uses_the_compare_tables_conventions(b2n_tree, tmp_path):
    """ablate_empl's summary row of a folder: base and new as the compare tables' Average row,
    H the harmonic mean of those means (not the mean of the seeds' H) with the std of the seeds'
    H; the paired column is H's per-seed difference from the default."""
    import shutil
    from types import SimpleNamespace
    from tools import ablate_empl

    shutil.copytree(b2n_tree, tmp_path / "abl" / "default")
    shutil.copytree(b2n_tree, tmp_path / "abl" / "other")
    for dataset in ("eurosat", "dtd"):  # the value's EMPL_CoOp: +2 on new, seed 1 only moved base
        bases, news = ACCS[("EMPL_CoOp", dataset)]
        for seed, (b, n) in enumerate(zip(bases, news), 1):
            write_base2new(str(tmp_path / "abl" / "other"), "EMPL_CoOp", "cfgA", dataset, seed, b + (seed == 1), n + 2)
    args = SimpleNamespace(output_dir=str(tmp_path / "abl"), trainer="EMPL_CoOp", datasets=["eurosat", "dtd"])
    md, points = ablate_empl.summarize(args, "demo", [("default", "default", []), ("other", "other", [])])
    rows = {cells(l)[0]: cells(l) for l in md.splitlines()[2:]}
    average = base2new_summary(collect_results(str(b2n_tree))[0])[0]["EMPL_CoOp"]["average"]
    seed_base = [mean([ACCS[("EMPL_CoOp", d)][0][i] for d in ("eurosat", "dtd")]) for i in range(2)]
    seed_new = [mean([ACCS[("EMPL_CoOp", d)][1][i] for d in ("eurosat", "dtd")]) for i in range(2)]
    h = hmean(mean(seed_base), mean(seed_new))
    assert h != pytest.approx(mean([hmean(b, n) for b, n in zip(seed_base, seed_new)]), abs=0.005)  # they differ here
    seed_h_std = pstd([hmean(b, n) for b, n in zip(seed_base, seed_new)])
    assert rows["default"][1:4] == [f"{mean(seed_base):.2f} ± {pstd(seed_base):.2f}",
                                    f"{mean(seed_new):.2f} ± {pstd(seed_new):.2f}", f"{h:.2f} ± {seed_h_std:.2f}"]
    assert rows["default"][3] == f"{average['H']:.2f} ± {average['H_std']:.2f}"  # the compare table's cell
    other_h = [hmean(b + (i == 0), n + 2) for i, (b, n) in enumerate(zip(seed_base, seed_new))]
    diffs = [o - hmean(b, n) for o, b, n in zip(other_h, seed_base, seed_new)]
    assert rows["other"][4].startswith(f"{mean(diffs):+.2f} [")


def test_ablation_plan_shares_the_default_and_evaluates_inference_on_its_models(capsys):
    """tools/ablate_empl.py: a value equal to the config's runs in the shared 'default' folder;
    inference-only ablations re-evaluate the default's trained models instead of training."""
    from tools import ablate_empl

    defaults = ablate_empl.config_defaults("EMPL_ProDA", "bundled")  # two-stage by default
    weight = "TRAINER.EMPL.OPEN_LOSS_WEIGHT"
    assert ablate_empl.folder_name([weight, str(defaults.TRAINER.EMPL.OPEN_LOSS_WEIGHT)], defaults) == "default"
    assert ablate_empl.folder_name([weight, "1.0"], defaults) == "OPEN_LOSS_WEIGHT-1.0"
    assert ablate_empl.folder_name(["TRAINER.EMPL.PERSISTENT", str(not defaults.TRAINER.EMPL.PERSISTENT)],
                                   defaults).startswith("PERSISTENT-")
    assert ablate_empl.main(["--trainer", "EMPL_ProDA", "--ablations", "open_loss_weight", "inference",
                             "--seeds", "1", "--dry-run", "--output-dir", "out/abl"]) == 0
    folders = [l.split("out/abl/")[1] for l in capsys.readouterr().out.splitlines() if l.startswith("[start] ")]
    trainings = [f for f in folders if "/train_base/" in f]
    assert sorted({f.split("/")[0] for f in trainings}) == [
        "OPEN_LOSS_WEIGHT-0.0", "OPEN_LOSS_WEIGHT-0.01", "OPEN_LOSS_WEIGHT-1.0", "default"]
    # Two-stage EMPL_ProDA: ProDA's host runs are trained once, in the default folder, for every value.
    hosts = [f for f in trainings if "/ProDA/" in f]
    assert len(hosts) == 4 and all(f.startswith("default/") for f in hosts), hosts
    # A value that trains EMPL differently (its LR and epochs) leaves the host at its own config,
    # also where the default trains from scratch and only values plan hosts (EMPL_CoOp).
    for trainer, host in (("EMPL_CoOp", "CoOp"), ("EMPL_ProDA", "ProDA")):
        args = argparse.Namespace(trainer=trainer, cfg="bundled", datasets=["world_aerial"], seeds=[1], shots=16,
                                  output_dir="out/abl", python="python", root="data", source=None)
        label, opts = ablate_empl.ABLATIONS["training"][0]
        assert "OPTIM.LR" in opts and "HOST_RUN" in " ".join(opts)
        runs = ablate_empl.training_runs(args, "two-stage", opts)
        host_run = next(r for r in runs if r.trainer == host)
        assert host_run.output_dir.startswith(os.path.join("out/abl", "default"))
        assert not any(a.startswith(("OPTIM.", "TRAINER.EMPL.")) for a in host_run.argv), host_run.argv
        assert next(r for r in runs if r.trainer == trainer and not r.eval_only).depends_on is host_run
    other_modes = [o for _, o in ablate_empl.ABLATIONS["inference"] if ablate_empl.folder_name(o, defaults) != "default"]
    assert len(other_modes) == len(ablate_empl.ABLATIONS["inference"]) - 1  # one value is the config's
    evaluations = [f for f in folders if f.startswith("INFERENCE-")]  # the inference ablation's only
    assert len(evaluations) == len(other_modes) * 4 * 2  # x 4 bundled tasks x (base, new), seed 1
    args = argparse.Namespace(trainer="EMPL_CoOp", cfg="bundled", datasets=["world_aerial"], seeds=[1], shots=16,
                              output_dir="out/abl", python="python", root="data")
    evaluations = [" ".join(r.argv) for r in ablate_empl.evaluation_runs(args, "INFERENCE-anchor", other_modes[0], {})]
    assert all("--eval-only" in l and "out/abl/default/base2new/train_base/" in l for l in evaluations)
