"""Modality gap of trained prompt learners (EMPL paper, Figure 2): individual and class level,
magnitude and direction consistency, compared across runs.

    python -m tools.modality_gap RUN [RUN ...] --root DATA --out DIR [--split test]
        [--labels NAME ...] [--opts KEY VALUE ...]

RUN is a train.py --output-dir (ZeroshotCLIP: the folder of its --eval-only run). For each run
the model is rebuilt from the run's config (tools/run_loading.py: RUN/config.yaml, or the config
printed into RUN/log.txt by older runs) and its last checkpoint (as train.py --eval-only
--model-dir RUN does), then on the split:
- image embedding z_i: the trainer's normalised image feature;
- class text embedding t_c: the normalised mean of the class text features the trainer predicts
  with (CoOp: its prompt; ProDA: mean over its K prompts; EMPL: mean over anchor + samples in
  the run's TRAINER.EMPL.INFERENCE mode; sample mode draws them per test batch, as evaluation
  does, so t_c is then averaged over batches and each image uses its own batch's t_c);
- individual gap z_i - t_{y_i}; class gap mean_{i in c} z_i - t_c;
- magnitude ||gap||; direction consistency cos(gap, mean gap direction).

Writes DIR/modality_gap_summary.csv (one row per run), DIR/modality_gap_per_class.csv and
DIR/modality_gap.png, and prints the summary as a Markdown table.
"""
import argparse
import os.path as osp

import torch

import parse_test_res
from dassl.utils import UserValueError
from tools.analysis import add_run_folder_arguments, analyse_runs, write_csv
from tools.embedding_stats import modality_gap_stats, summarize_gap_stats
from tools.reporting.tables import md_table
from trainers.clip_backbone import l2_normalize

SPLITS = ("test", "val", "train")
SUMMARY_COLUMNS = (
    "individual_magnitude_mean", "individual_magnitude_std",
    "individual_consistency_mean", "individual_consistency_std",
    "class_magnitude_mean", "class_magnitude_std",
    "class_consistency_mean", "class_consistency_std",
)


def split_loader(trainer, split: str):
    """The data loader of a split; val falls back to test as Dassl's test() does."""
    if split == "test":
        return trainer.test_loader
    if split == "val":
        return trainer.val_loader if trainer.val_loader is not None else trainer.test_loader
    if split == "train":
        return trainer.train_loader_x
    raise UserValueError(f"split must be one of {SPLITS}, got {split!r}")


@torch.no_grad()
def collect_embeddings(trainer, split: str = "test"):
    """Image embeddings and each image's class text embedding, through the trainer's accessors.

    -> (image_features [N, D], text_per_image [N, D], labels [N], class_names [C]); all
    L2-normalised, float64 on CPU.
    """
    images, texts, labels = [], [], []
    class_text = None
    for batch in split_loader(trainer, split):
        image, label = trainer.parse_batch_test(batch)
        image_features = trainer.inference_image_features(image)
        if class_text is None or trainer.text_features_depend_on_images:
            prompt_features = trainer.inference_text_features(image_features)  # [S, C, D]
            class_text = l2_normalize(prompt_features.double().mean(0)).cpu()  # [C, D]
        images.append(image_features.double().cpu())
        texts.append(class_text[label.cpu()])
        labels.append(label.cpu())
    n_classes = trainer.dm.num_classes
    class_names = [trainer.lab2cname[i] for i in range(n_classes)]
    return torch.cat(images), torch.cat(texts), torch.cat(labels), class_names


def last_accuracy(run_dir: str):
    """The last '* accuracy: X%' of RUN/log.txt (the run's own evaluation), or None."""
    try:
        return parse_test_res.read_metric(osp.join(run_dir, "log.txt"), "accuracy", end_signal=None)
    except OSError:
        return None


def analyse_run(trainer, run_dir: str, split: str):
    """-> (summary dict, per-class rows) of one run's trainer."""
    image_features, text_per_image, labels, class_names = collect_embeddings(trainer, split)
    stats = modality_gap_stats(image_features, text_per_image, labels, len(class_names))
    summary = {"trainer": trainer.cfg.TRAINER.NAME, "n_images": len(labels), **summarize_gap_stats(stats)}
    summary["logged_accuracy"] = last_accuracy(run_dir)
    per_class = [
        {
            "class": name,
            "n_images": int(stats["class_count"][c]),
            "individual_magnitude": float(stats["per_class_individual_magnitude"][c]),
            "individual_consistency": float(stats["per_class_individual_consistency"][c]),
            "class_magnitude": float(stats["class_magnitude"][c]),
            "class_consistency": float(stats["class_consistency"][c]),
        }
        for c, name in enumerate(class_names)
    ]
    return summary, per_class


def markdown_table(rows) -> str:
    """rows: [{'run', 'trainer', summary keys...}] -> a Markdown table (mean +- std)."""
    header = ["run", "trainer", "images", "indiv. magnitude", "indiv. consistency", "class magnitude",
              "class consistency", "logged acc. (%)"]
    table = []
    for r in rows:
        acc = "" if r["logged_accuracy"] is None else f"{r['logged_accuracy']:.1f}"
        cells = [r["run"], r["trainer"], str(r["n_images"])]
        for name in ("individual_magnitude", "individual_consistency", "class_magnitude", "class_consistency"):
            cells.append(f"{r[name + '_mean']:.4f} ± {r[name + '_std']:.4f}")
        cells.append(acc)
        table.append(cells)
    return md_table(header, table)


def plot_gaps(rows, path: str, title: str = "") -> None:
    """Two panels (magnitude, direction consistency); per run, bars for the individual and the
    class gap with their std as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["run"] for r in rows]
    x = torch.arange(len(rows)).numpy()
    width = 0.38
    fig, axes = plt.subplots(1, 2, figsize=(max(6.0, 1.6 * len(rows) + 3), 3.2), dpi=90)
    for ax, quantity, ylabel in (
        (axes[0], "magnitude", "gap magnitude ||z - t||"),
        (axes[1], "consistency", "direction consistency (cos)"),
    ):
        for offset, level, color in ((-width / 2, "individual", "tab:blue"), (width / 2, "class", "tab:orange")):
            means = [r[f"{level}_{quantity}_mean"] for r in rows]
            stds = [r[f"{level}_{quantity}_std"] for r in rows]
            ax.bar(x + offset, means, width, yerr=stds, capsize=3, color=color, label=level)
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m tools.modality_gap", description=__doc__.split("\n")[0])
    add_run_folder_arguments(parser, "folder for the CSV files and the figure", "TRAINER.EMPL.INFERENCE anchor")
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--title", default="", help="figure title")
    return parser


def main(argv=None) -> str:
    args = build_parser().parse_args(argv)

    def measure(trainer, run_dir):
        summary, per_class = analyse_run(trainer, run_dir, args.split)
        return {"split": args.split, **summary, "per_class": per_class}

    rows = analyse_runs(args, measure)
    per_class_rows = [{"run": row["run"], **r} for row in rows for r in row["per_class"]]
    write_csv(osp.join(args.out, "modality_gap_summary.csv"), rows,
              ("run", "trainer", "run_dir", "split", "n_images", *SUMMARY_COLUMNS, "logged_accuracy"))
    write_csv(osp.join(args.out, "modality_gap_per_class.csv"), per_class_rows,
              ("run", "class", "n_images", "individual_magnitude", "individual_consistency",
               "class_magnitude", "class_consistency"))
    plot_gaps(rows, osp.join(args.out, "modality_gap.png"), args.title)
    table = markdown_table(rows)
    print(table)
    print(f"\nwrote {args.out}/modality_gap_summary.csv, modality_gap_per_class.csv, modality_gap.png")
    return table


if __name__ == "__main__":
    from launch import run_reporting_user_errors

    run_reporting_user_errors(main)
