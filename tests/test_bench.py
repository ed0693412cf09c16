"""Smoke test of the benchmark command in its small CPU mode: it builds each trainer on
synthetic tensors, times it, prints the table and writes JSON (no time assertions)."""
import json
import math

import pytest
import yaml

from tools import bench


def test_bench_prints_a_row_per_trainer_and_mode(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rows = bench.main([
        "--device", "cpu", "--backbone", "tiny-vit", "--classes", "5",
        "--trainers", "ZeroshotCLIP", "CoOp", "EMPL_CoOp", "NoSuchTrainer",
        "--warmup", "0", "--steps", "1", "--eval-batches", "1", "--eval-batch-size", "4",
        "--json", str(out),
    ])
    printed = capsys.readouterr().out
    assert "skip NoSuchTrainer" in printed
    expected = ["ZeroshotCLIP", "CoOp", "EMPL_CoOp (sample)", "EMPL_CoOp (sample_batch)", "EMPL_CoOp (amortized)",
                "EMPL_CoOp (anchor)"]
    assert [r["trainer"] for r in rows] == expected
    table_rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in printed.splitlines()
                  if line.startswith("| ")]
    assert [row[0] for row in table_rows if row[1] == "ours"] == expected
    for r in rows:
        assert r["classes"] == 5 and r["eval_ms_per_batch"] > 0 and r["eval_img_s"] > 0
    coop = next(r for r in rows if r["trainer"] == "CoOp")
    tiny_config = yaml.safe_load(open(bench.config_file("CoOp", "tiny-vit")))  # the tiny CLIP's config
    assert coop["batch"] == tiny_config["DATALOADER"]["TRAIN_X"]["BATCH_SIZE"] and coop["train_ms"] > 0
    assert math.isnan(rows[0]["train_ms"])  # zero-shot CLIP has no training step
    saved = json.loads(out.read_text())
    assert saved["backbone"] == "tiny-vit" and len(saved["rows"]) == len(rows)
    assert saved["rows"][0]["train_ms"] is None  # NaN is written as null


def test_transformer_flops_match_torch_flop_counter(tiny_clip):
    """The FLOP-bound line's formula against torch's own count of the tiny text encoder."""
    import torch

    from trainers.clip_encoders import TextEncoder

    encoder = TextEncoder(tiny_clip)
    n_seq, seq_len, width = 3, 9, tiny_clip.transformer.width
    x = torch.randn(n_seq, seq_len, width)
    with torch.no_grad():
        # bench's counter (the math attention kernel, whose matmuls it sees on any device)
        counted = bench.count_flops(lambda: encoder.run_blocks(x, 0, encoder.num_layers))
    expected = bench.transformer_flops(n_seq * seq_len, width, encoder.num_layers, seq_len)
    assert counted == expected


@pytest.mark.filterwarnings("ignore:TRAINER.EMPL.SGLD_GRADIENT anchor linearises")  # expected at the defaults
def test_flop_count_ranks_empl_sgld_gradients(capsys):
    """--count-flops and --opts: EMPL's linearised SGLD (one energy gradient per step) costs
    fewer FLOPs than exact SGLD and more than CoOp, whose count the EMPL key leaves alone."""
    common = ["--device", "cpu", "--backbone", "tiny-vit", "--classes", "5", "--trainers", "CoOp", "EMPL_CoOp",
              "--warmup", "0", "--steps", "1", "--eval-batches", "1", "--eval-batch-size", "4", "--count-flops"]
    runs = {"exact": bench.main(common + ["--opts", "TRAINER.EMPL.SGLD_GRADIENT", "exact"]),
            # the anchor gradient changes training only: its evaluation is measured in anchor mode alone
            "anchor": bench.main(common + ["--inference", "anchor", "--opts", "TRAINER.EMPL.SGLD_GRADIENT", "anchor"])}
    printed = capsys.readouterr().out
    assert "train FLOP x our CoOp" in printed and "opts TRAINER.EMPL.SGLD_GRADIENT anchor" in printed
    coop = {g: rows[0]["train_gflop"] for g, rows in runs.items()}
    empl = {g: rows[1]["train_gflop"] for g, rows in runs.items()}
    assert coop["exact"] == coop["anchor"] > 0
    assert coop["anchor"] < empl["anchor"] < empl["exact"]
    anchor_mode = {"exact": runs["exact"][4], "anchor": runs["anchor"][1]}  # EMPL_CoOp (anchor): no sampling at test
    assert anchor_mode["exact"]["eval_gflop_per_batch"] == anchor_mode["anchor"]["eval_gflop_per_batch"]
    # Evaluation split: class text features once, images per batch. Amortized mode pays for its
    # samples once and then only N+1 dot products per batch; sample_batch pays SGLD every batch,
    # sample (per image) every image.
    coop_row, sample, sample_batch, amortized, anchor = runs["exact"][0], *runs["exact"][1:]
    assert coop_row["eval_gflop_once"] > 0 and coop_row["eval_gflop_per_batch"] > 0
    assert amortized["eval_gflop_once"] > anchor["eval_gflop_once"] > 0
    assert anchor["eval_gflop_per_batch"] <= amortized["eval_gflop_per_batch"] < 1.01 * anchor["eval_gflop_per_batch"]
    assert sample["eval_gflop_per_batch"] > sample_batch["eval_gflop_per_batch"] > 2 * anchor["eval_gflop_per_batch"]


def test_empl_training_cost_includes_its_logged_diagnostics():
    """EMPL's SGLD diagnostics run on PRINT_FREQ batches: the training cost charges their extra
    FLOPs once per PRINT_FREQ steps (all of it with PRINT_FREQ 1, a little with 1000)."""
    common = ["--device", "cpu", "--backbone", "tiny-vit", "--classes", "5", "--trainers", "EMPL_CoOp",
              "--warmup", "0", "--steps", "1", "--eval-batches", "1", "--eval-batch-size", "4", "--count-flops",
              "--inference", "anchor"]
    every, rarely = (bench.main(common + ["--opts", "TRAIN.PRINT_FREQ", str(n)])[0]["train_gflop"] for n in (1, 1000))
    assert every > 1.05 * rarely > 0  # measured: 2.47 against 2.16 GFLOP on the tiny CLIP


def test_amp_autocasts_on_the_runs_device():
    """The reference models are timed under amp on the run's device, not always on cuda."""
    import torch

    from trainers.clip_backbone import autocast_dtype

    cpu = torch.device("cpu")
    autocast, scaler = bench.amp_for("amp", cpu)
    with autocast():
        assert torch.is_autocast_enabled("cpu") and not torch.is_autocast_enabled("cuda")
        product = torch.ones(2, 2) @ torch.ones(2, 2)
    assert product.dtype == autocast_dtype("cpu") and scaler._device == "cpu"
    plain, no_scaler = bench.amp_for("fp32", cpu)
    with plain():
        assert not torch.is_autocast_enabled("cpu")
    assert no_scaler is None


def test_skip_training_measures_evaluation_only():
    rows = bench.main(["--device", "cpu", "--backbone", "tiny-vit", "--classes", "5", "--trainers", "CoOp",
                       "--warmup", "0", "--steps", "1", "--eval-batches", "1", "--eval-batch-size", "4",
                       "--skip-training", "--count-flops"])
    assert math.isnan(rows[0]["train_ms"]) and math.isnan(rows[0]["train_gflop"])
    assert rows[0]["eval_ms_per_batch"] > 0 and rows[0]["eval_gflop_per_batch"] > 0


def test_inference_chooses_the_empl_modes_measured():
    rows = bench.main(["--device", "cpu", "--backbone", "tiny-vit", "--classes", "5", "--trainers", "EMPL_CoOp",
                       "--warmup", "0", "--steps", "1", "--eval-batches", "1", "--eval-batch-size", "4",
                       "--skip-training", "--count-flops", "--inference", "anchor", "sample"])
    assert [r["trainer"] for r in rows] == ["EMPL_CoOp (anchor)", "EMPL_CoOp (sample)"]
    assert rows[1]["eval_gflop_per_batch"] > rows[0]["eval_gflop_per_batch"]  # sampling costs per image
