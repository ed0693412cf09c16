"""The plots (PNG, matplotlib's Agg backend): base-to-new averages, H per dataset, a sweep's curves."""
from tools.reporting.summaries import AVERAGE, SWEEP_KEYS


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_base_new_h(summary, path: str) -> str:
    """Average base, new and H per method, with error bars (std over seeds), on an axis cut to
    the range of the data so the differences show; the legend sits outside the axes."""
    plt = pyplot()
    labels = [label for label in summary if AVERAGE in summary[label]]
    metrics = (("base", "Base"), ("new", "New"), ("H", "H"))
    width = 0.8 / max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(7.5, 4))
    lows, highs = [], []
    for i, label in enumerate(labels):
        avg = summary[label][AVERAGE]
        means = [avg[m].mean if m != "H" else avg["H"] for m, _ in metrics]
        stds = [avg[m].std if m != "H" else avg.get("H_std", 0.0) for m, _ in metrics]
        xs = [g + (i - (len(labels) - 1) / 2) * width for g in range(len(metrics))]
        ax.bar(xs, means, width, yerr=stds, capsize=2, label=label)
        lows += [m - s for m, s in zip(means, stds)]
        highs += [m + s for m, s in zip(means, stds)]
    if lows:
        span = max(highs) - min(lows)
        ax.set_ylim(max(0.0, min(lows) - 0.15 * span - 1), min(100.0, max(highs) + 0.1 * span + 1))
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels([name for _, name in metrics])
    ax.set_ylabel("accuracy (%), average over datasets")
    ax.set_title("Base-to-new (mean ± std over seeds)")
    return save_with_outside_legend(plt, fig, ax, path)


def save_with_outside_legend(plt, fig, ax, path: str) -> str:
    """The legend right of the axes (it covers no bar), then the PNG."""
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_h_by_dataset(summary, datasets, path: str) -> str:
    plt = pyplot()
    groups = datasets + [AVERAGE]
    labels = list(summary)
    width = 0.8 / max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(groups) * max(1, len(labels) / 2)), 4))
    values = []
    for i, label in enumerate(labels):
        xs = [g + (i - (len(labels) - 1) / 2) * width for g in range(len(groups))]
        hs = [summary[label].get(d, {}).get("H", 0.0) for d in groups]
        values += [h for h in hs if h > 0]
        ax.bar(xs, hs, width, label=label)
    if values:
        ax.set_ylim(max(0.0, min(values) - 5), min(100.0, max(values) + 3))
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=30, ha="right")
    ax.set_ylabel("H (harmonic mean of base and new, %)")
    ax.set_title("Base-to-new: H per dataset")
    return save_with_outside_legend(plt, fig, ax, path)


def plot_sweep(points, sweep: str, path: str) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for trainer, by_value in points.items():
        xs = sorted(by_value)
        for i, (metric, style) in enumerate((("base", "o-"), ("new", "s--"), ("H", "^:"))):
            ax.plot(xs, [by_value[x][i] for x in xs], style, label=f"{trainer} {metric}")
    ax.set_xlabel(SWEEP_KEYS[sweep])
    ax.set_ylabel("accuracy (%), mean over datasets")
    if sweep == "open_loss_weight" and all(x > 0 for by in points.values() for x in by):
        ax.set_xscale("log")
    ax.set_title(f"Base-to-new accuracy against {SWEEP_KEYS[sweep]}")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
