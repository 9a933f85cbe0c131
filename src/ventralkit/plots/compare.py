"""The run comparison as a figure: val top-1 / top-5 / superclass top-1 per run, head parameters in the labels."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import save_figure  # noqa: E402

METRICS = (("top1", "val top-1"), ("top5", "val top-5"), ("super_top1", "superclass top-1"))


def _label(row) -> str:
    params = f"{row.params_head:,} head params" if row.params_head is not None else "head params ?"
    return f"{row.run}\n{row.head} on {row.backbone}\n{params}"


def datasets_line(rows) -> str:
    """'cifar100, 100 classes' (or one such part per distinct dataset), for the figure's title."""
    seen = []
    for r in rows:
        key = (getattr(r, "dataset", None), getattr(r, "num_classes", None))
        if key not in seen:
            seen.append(key)
    parts = []
    for dataset, n in seen:
        classes = f"{n} classes" if n is not None else "classes ?"
        parts.append(f"{dataset or 'dataset ?'}, {classes}")
    return "; ".join(parts)


def plot_comparison(rows, output: str | Path, title: str = "Classifier heads compared") -> Path:
    """Grouped bars, one group per run (``analysis.compare.RunRow``); a metric a run lacks is left out.

    The title names the dataset and class count the runs were trained on (head sizes depend on it)."""
    metrics = [(k, name) for k, name in METRICS if any(getattr(r, k) is not None for r in rows)]
    x = np.arange(len(rows))
    width = 0.8 / max(len(metrics), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(rows) + 2), 4.8))
    for i, (key, name) in enumerate(metrics):
        values = [getattr(r, key) for r in rows]
        heights = [v if v is not None else 0.0 for v in values]
        bars = ax.bar(x + (i - (len(metrics) - 1) / 2) * width, heights, width, label=name)
        for bar, v in zip(bars, values):
            if v is not None:
                ax.annotate(f"{v:.3f}", (bar.get_x() + bar.get_width() / 2, v), textcoords="offset points",
                            xytext=(0, 2), ha="center", fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels([_label(r) for r in rows], fontsize=7)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("accuracy (best over epochs)")
    ax.set_title(f"{title}\n{datasets_line(rows)}", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    if metrics:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)  # outside the bars
    fig.tight_layout()
    return save_figure(fig, Path(output), bbox_inches="tight")
