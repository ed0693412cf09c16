"""The analysis tools: gap and diversity statistics on embeddings with known answers, nearest
tokens, the trainer accessors, and the three tools end to end on a 1-epoch CoOp run."""
import math
import os
import pytest
import torch

from tools.embedding_stats import (
    direction_consistency,
    effective_rank,
    modality_gap_stats,
    pairwise_cosine_distance,
    summarize_gap_stats,
)
from tools.interpret_prompt import nearest_tokens, token_strings
from tools.run_loading import NotARunDirError, build_trainer_from_run, load_run_config
from trainers.clip_backbone import l2_normalize


def basis(dim, i):
    v = torch.zeros(dim, dtype=torch.float64)
    v[i] = 1.0
    return v


# --------------------------------------------------------------------------- gap statistics
def test_constant_offset_gives_analytic_gap():
    """Texts e_c, images normalize(e_c + a e_last): every gap is (1/s - 1) e_c + (a/s) e_last
    with s = sqrt(1 + a^2); its norm sqrt(2 - 2/s); its cosine with the mean gap direction
    follows from the mean (1/s - 1)/C sum_c e_c + (a/s) e_last."""
    n_classes, dim, a, per_class = 4, 8, 0.75, 3
    s = math.sqrt(1 + a * a)
    text = torch.stack([basis(dim, c) for c in range(n_classes)])
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    images = l2_normalize(text[labels] + a * basis(dim, dim - 1))
    stats = modality_gap_stats(images, text[labels], labels, n_classes)

    magnitude = math.sqrt(2 - 2 / s)
    along_class, along_offset = 1 / s - 1, a / s
    mean_norm = math.sqrt(along_class**2 / n_classes + along_offset**2)
    consistency = mean_norm / magnitude  # (g . mean) / (|g| |mean|) = |mean|^2 / (|g| |mean|)
    for key in ("individual_magnitude", "class_magnitude"):
        torch.testing.assert_close(stats[key], torch.full_like(stats[key], magnitude))
    for key in ("individual_consistency", "class_consistency"):
        torch.testing.assert_close(stats[key], torch.full_like(stats[key], consistency))
    summary = summarize_gap_stats(stats)
    assert summary["class_magnitude_mean"] == pytest.approx(magnitude)
    assert summary["individual_consistency_std"] == pytest.approx(0.0, abs=1e-12)


def test_class_gap_averages_out_image_spread():
    """Images t_c + o +- w (o, w orthogonal to each other and to the texts): individual gaps
    o +- w (norm sqrt(|o|^2 + |w|^2)), class gap exactly o (norm |o|, consistency 1)."""
    n_classes, dim = 3, 8
    o, w = 0.5 * basis(dim, 6), 0.3 * basis(dim, 7)
    text = torch.stack([basis(dim, c) for c in range(n_classes)])
    labels = torch.arange(n_classes).repeat_interleave(2)
    signs = torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(n_classes).unsqueeze(1)
    images = text[labels] + o + signs * w
    stats = modality_gap_stats(images, text[labels], labels, n_classes)
    torch.testing.assert_close(stats["individual_magnitude"], torch.full((6,), math.hypot(0.5, 0.3), dtype=torch.float64))
    torch.testing.assert_close(stats["class_magnitude"], torch.full((3,), 0.5, dtype=torch.float64))
    torch.testing.assert_close(stats["class_consistency"], torch.ones(3, dtype=torch.float64))
    # Individual gaps o +- w against the mean direction o: cos = |o| / sqrt(|o|^2 + |w|^2).
    expected = 0.5 / math.hypot(0.5, 0.3)
    torch.testing.assert_close(stats["individual_consistency"], torch.full((6,), expected, dtype=torch.float64))


def test_direction_consistency_parallel_and_opposing():
    v, w = basis(5, 0), basis(5, 1)
    parallel = torch.stack([0.5 * v, 2.0 * v, 1.0 * v])
    torch.testing.assert_close(direction_consistency(parallel), torch.ones(3, dtype=torch.float64))
    eps = 1e-3  # gaps v + eps w and -v + eps w: the mean direction is w
    opposing = torch.stack([v + eps * w, -v + eps * w])
    expected = eps / math.sqrt(1 + eps * eps)
    torch.testing.assert_close(direction_consistency(opposing), torch.full((2,), expected, dtype=torch.float64))


def test_empty_class_is_nan_and_left_out_of_aggregates():
    text = torch.stack([basis(4, 0), basis(4, 1), basis(4, 2)])
    labels = torch.tensor([0, 0, 2])
    images = text[labels] + 0.1 * basis(4, 3)
    stats = modality_gap_stats(images, text[labels], labels, 3)
    assert math.isnan(stats["class_magnitude"][1]) and stats["class_count"].tolist() == [2, 0, 1]
    assert summarize_gap_stats(stats)["class_magnitude_mean"] == pytest.approx(0.1)


# --------------------------------------------------------------------------- diversity
def test_effective_rank_of_known_matrices():
    rank_one = torch.outer(torch.tensor([1.0, -2.0, 3.0, 0.5]), torch.randn(6))
    assert effective_rank(rank_one) == pytest.approx(1.0, abs=1e-6)
    orthonormal, _ = torch.linalg.qr(torch.randn(10, 3, dtype=torch.float64))
    assert effective_rank(orthonormal.t()) == pytest.approx(3.0)
    # Singular values 3 and 1: p = (3/4, 1/4), erank = exp(H(p)).
    diag = torch.diag(torch.tensor([3.0, 1.0]))
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert effective_rank(diag) == pytest.approx(math.exp(h))
    # Centred: two rows symmetric about a mean have a rank-1 spread.
    assert effective_rank(torch.tensor([[1.0, 1.0, 0.0], [1.0, -1.0, 0.0]]), center=True) == pytest.approx(1.0)


def test_pairwise_cosine_distance_matches_independent_computation():
    rows = torch.randn(5, 7, dtype=torch.float64)
    expected = [
        1 - torch.dot(rows[i], rows[j]).item() / (rows[i].norm() * rows[j].norm()).item()
        for i in range(5) for j in range(i + 1, 5)
    ]
    torch.testing.assert_close(pairwise_cosine_distance(rows), torch.tensor(expected, dtype=torch.float64))
    assert pairwise_cosine_distance(rows[:1]).numel() == 0


# --------------------------------------------------------------------------- interpret_prompt
def test_nearest_token_of_a_token_embedding_is_that_token(tiny_clip):
    table = tiny_clip.token_embedding.weight.detach()
    from trainers.clip_backbone import _tokenizer

    ids = [_tokenizer.encoder["photo</w>"], _tokenizer.encoder["dog</w>"], 1234]
    for metric in ("euclidean", "cosine"):
        found, scores = nearest_tokens(table[ids], table, topk=2, metric=metric)
        assert found[:, 0].tolist() == ids
        assert token_strings(found[:2, :1]) == [["photo</w>"], ["dog</w>"]]
    found, scores = nearest_tokens(table[ids], table, topk=2, metric="euclidean")
    torch.testing.assert_close(scores[:, 0], torch.zeros(3), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="width"):
        nearest_tokens(torch.zeros(2, 3), table)


# --------------------------------------------------------------------------- trainer accessors
def test_accessors_reproduce_coop_inference(build_tiny_trainer):
    trainer = build_tiny_trainer("CoOp", "configs/trainers/CoOp/tiny.yaml")
    trainer.set_model_mode("eval")
    image = next(iter(trainer.test_loader))["img"][:8]
    with torch.no_grad():
        logits = trainer.model_inference(image)
        z = trainer.inference_image_features(image)
        text = trainer.inference_text_features()
    assert text.shape[0] == 1
    torch.testing.assert_close(trainer.model.logit_scale.exp() * z @ text[0].t(), logits)


# --------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def coop_run(build_tiny_trainer, tmp_path_factory):
    """A 1-epoch CoOp run folder as train.py writes it: log.txt with train.py's own config dump
    (print_args) and prompt_learner/ checkpoints (trained in-process: no interpreter start)."""
    import contextlib

    import launch

    out = tmp_path_factory.mktemp("analysis_runs") / "CoOp" / "seed1"
    opts = ("OPTIM.MAX_EPOCH", "1", "TRAINER.COOP.N_CTX", "4", "TEST.NO_TEST", "True")
    trainer = build_tiny_trainer("CoOp", "configs/trainers/CoOp/tiny.yaml", *opts, output_dir=out)
    trainer.train()
    args = launch.build_parser().parse_args(["--trainer", "CoOp", "--output-dir", str(out), *opts])
    with open(out / "log.txt", "a") as log, contextlib.redirect_stdout(log):
        launch.print_args(args, trainer.cfg)
        print("Collecting env info ...")
    return str(out)


def test_run_config_round_trips(coop_run, synthetic_root):
    cfg = load_run_config(coop_run)
    assert cfg.TRAINER.NAME == "CoOp" and cfg.TRAINER.COOP.N_CTX == 4 and cfg.OPTIM.MAX_EPOCH == 1
    assert cfg.TRAINER.COOP.CTX_INIT == "" and tuple(cfg.INPUT.SIZE) == (32, 32)
    trainer = build_trainer_from_run(coop_run)
    saved = torch.load(os.path.join(coop_run, "prompt_learner", "model.pth.tar-1"), weights_only=False)
    torch.testing.assert_close(trainer.model.prompt_learner.ctx.detach(), saved["state_dict"]["ctx"])


def table_rows(table):
    """The body rows of a Markdown table, as lists of cells without their padding."""
    lines = table.splitlines()
    assert set(lines[1]) <= set("|-: ")  # the header's separator line
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines[2:]]


def test_tools_end_to_end(coop_run, tmp_path):
    from tools import interpret_prompt, modality_gap, prompt_diversity

    out = tmp_path / "analysis"
    table = modality_gap.main([coop_run, "--out", str(out), "--labels", "CoOp"])
    assert table_rows(table)[0][:3] == ["CoOp", "CoOp", "200"]
    for name in ("modality_gap.png", "modality_gap_summary.csv", "modality_gap_per_class.csv"):
        assert (out / name).stat().st_size > 0
    assert (out / "modality_gap.png").read_bytes()[:4] == b"\x89PNG"
    per_class = (out / "modality_gap_per_class.csv").read_text().splitlines()
    assert len(per_class) == 1 + 10  # header + SyntheticShapes' 10 classes

    table = prompt_diversity.main([coop_run, "--out", str(out)])
    assert (out / "prompt_diversity.csv").stat().st_size > 0
    assert table_rows(table)[0][2:6] == ["1", "token embeddings", "0", "1"]  # one prompt: no spread, rank 1

    text = interpret_prompt.main([os.path.join(coop_run, "prompt_learner", "model.pth.tar-1"),
                                  "--backbone", "tiny-vit", "--topk", "2"])
    assert text.count("\n  ") == 4  # one line per context vector


def test_clear_errors_on_folders_that_are_not_runs(tmp_path):
    from tools import interpret_prompt, modality_gap

    with pytest.raises(NotARunDirError, match="no log.txt"):
        modality_gap.main([str(tmp_path), "--out", str(tmp_path / "o")])
    (tmp_path / "log.txt").write_text("just some text\n")
    with pytest.raises(NotARunDirError, match="no config dump"):
        load_run_config(str(tmp_path))
    with pytest.raises(ValueError, match="--backbone"):
        (tmp_path / "ctx.pth").write_bytes(b"")
        interpret_prompt.main([str(tmp_path / "ctx.pth")])
    with pytest.raises(NotARunDirError, match="is not a folder"):
        modality_gap.main([str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
