"""Robustness figures: error heatmap (corruption x severity), error per corruption, model comparison."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..analysis.robustness.names import ALL, group_of  # noqa: E402
from . import save_figure  # noqa: E402

GROUP_COLOURS = {"noise": "#4C72B0", "blur": "#55A868", "weather": "#8172B2", "digital": "#C44E52",
                 "extra": "#8C8C8C"}


def _order(names) -> list[str]:
    names = set(names)
    return [c for c in ALL if c in names]


def _save(fig, path) -> Path:
    return save_figure(fig, Path(path), dpi=120, bbox_inches="tight")


def plot_error_heatmap(errors: dict[str, dict[int, float]], path, title: str | None = None,
                       clean_error: float | None = None) -> Path:
    """Top-1 error (%) of every corruption (rows, canonical order) at every severity (columns)."""
    rows = _order(c for c, sev in errors.items() if sev)
    sevs = sorted({int(s) for c in rows for s in errors[c]})
    grid = np.full((len(rows), len(sevs)), np.nan)
    for i, c in enumerate(rows):
        for j, s in enumerate(sevs):
            if s in errors[c]:
                grid[i, j] = 100 * errors[c][s]
    fig, ax = plt.subplots(figsize=(1.1 * len(sevs) + 3.2, 0.36 * len(rows) + 1.6))
    im = ax.imshow(grid, cmap="magma_r", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(sevs)), [str(s) for s in sevs])
    ax.set_yticks(range(len(rows)), rows)
    for label in ax.get_yticklabels():
        label.set_color(GROUP_COLOURS[group_of(label.get_text())])
    ax.set_xlabel("severity")
    for i in range(len(rows)):
        for j in range(len(sevs)):
            if not math.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=7,
                        color="white" if grid[i, j] > 55 else "black")
    fig.colorbar(im, ax=ax, label="top-1 error (%)")
    sub = f" (clean {100 * clean_error:.1f}%)" if clean_error is not None else ""
    ax.set_title((title or "top-1 error under corruption") + sub, fontsize=10)
    return _save(fig, path)


def plot_corruption_bars(mean_errors: dict[str, float], path, title: str | None = None,
                         clean_error: float | None = None, baseline: dict[str, float] | None = None,
                         baseline_name: str = "baseline") -> Path:
    """Mean error over severities per corruption, coloured by group; baseline errors as markers."""
    names = _order(mean_errors)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(0.5 * len(names) + 2.5, 4))
    ax.bar(x, [100 * mean_errors[c] for c in names], color=[GROUP_COLOURS[group_of(c)] for c in names])
    if baseline:
        bx = [i for i, c in enumerate(names) if c in baseline]
        ax.scatter(bx, [100 * baseline[names[i]] for i in bx], marker="_", s=200, color="black", zorder=3,
                   label=baseline_name)
    if clean_error is not None:
        ax.axhline(100 * clean_error, color="black", ls="--", lw=1, label=f"clean {100 * clean_error:.1f}%")
    ax.set_xticks(x, names, rotation=60, ha="right")
    ax.set_ylabel("top-1 error (%), mean over severities")
    ax.set_ylim(0, 100)
    if baseline or clean_error is not None:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title(title or "error per corruption", fontsize=10)
    return _save(fig, path)


def plot_robustness_comparison(table: dict[str, dict[str, float]], path, title: str | None = None,
                               clean_errors: dict[str, float | None] | None = None,
                               scores: dict[str, float | None] | None = None, score_name: str = "mCE") -> Path:
    """Grouped bars: mean error per corruption for each model (``table[model][corruption]``).

    ``clean_errors`` adds a 'clean' group first; ``scores`` (e.g. mCE per model) goes in the legend.
    """
    models = list(table)
    names = _order({c for m in models for c in table[m]})
    groups = (["clean"] if clean_errors and any(v is not None for v in clean_errors.values()) else []) + names
    x = np.arange(len(groups))
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(min(16.0, max(7.0, 0.16 * len(groups) * len(models) + 0.3 * len(groups) + 2)), 4.2))
    cmap = plt.get_cmap("tab10")
    for k, model in enumerate(models):
        values = [(clean_errors or {}).get(model) if g == "clean" else table[model].get(g) for g in groups]
        heights = [100 * v if v is not None else np.nan for v in values]
        label = model
        if scores and scores.get(model) is not None:
            label += f" ({score_name} {100 * scores[model]:.1f}%)"
        ax.bar(x - 0.4 + width * (k + 0.5), heights, width, label=label, color=cmap(k % 10))
    ax.set_xticks(x, groups, rotation=60, ha="right")
    ax.set_ylabel("top-1 error (%), mean over severities")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title(title or "robustness comparison", fontsize=10)
    return _save(fig, path)
