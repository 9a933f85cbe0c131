"""The figure of ``ventralkit neural --time_bins``: score against time bin and model time step.

Left, per metric: the raw score of each time step of the recorded area's module against the bin's centre
(one line per step), the best step of each bin starred and the step the default time mapping commits
(Brain-Score's for CORnet-S) ringed. Right: every layer x time step against every bin as a heat map, the
committed cells outlined. It takes plain arrays, not a result object (figures sit below the analyses).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from . import plt, save_figure


def plot_time_scores(path: Path, features: Sequence[str], bins: Sequence[tuple[float, float]],
                     raw: Mapping[str, np.ndarray], labels: Mapping[str, str], module_steps: Mapping[int, str],
                     committed: Sequence[int | None] = (), title: str = "") -> Path:
    """raw[metric]: (features, bins) raw scores (NaN: missing); module_steps: time step -> feature name of the
    area's module (empty: draw every feature as a line); committed: the committed time step of each bin or None."""
    metrics = list(raw)
    fig, axes = plt.subplots(len(metrics), 2, figsize=(12.5, 3.9 * len(metrics)), squeeze=False,
                             gridspec_kw={"width_ratios": [1.1, 1]})
    centres = np.array([(s + e) / 2 for s, e in bins])
    for row, m in enumerate(metrics):
        _lines(axes[row, 0], features, centres, raw[m], module_steps, committed, labels[m])
        _heat(fig, axes[row, 1], features, bins, raw[m], module_steps, committed, labels[m])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _lines(ax, features, centres, values, module_steps, committed, label) -> None:
    """One line per time step of the module (or per feature), best per bin starred, committed step ringed."""
    names = list(module_steps.values()) or list(features)
    idx = [list(features).index(n) for n in names]
    sub = values[idx]
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(names), 1)))
    for j, name in enumerate(names):
        ax.plot(centres, sub[j], "o-", color=colors[j], ms=4, label=name)
    for b in range(len(centres)):
        if np.isfinite(sub[:, b]).any():
            j = int(np.nanargmax(sub[:, b]))
            ax.plot([centres[b]], [sub[j, b]], marker="*", ms=12, color=colors[j], zorder=5)
    steps = list(module_steps)
    for b, k in enumerate(committed):
        if k is not None and k in module_steps:
            ax.plot([centres[b]], [sub[steps.index(k), b]], "o", ms=11, mfc="none", mec="k", mew=1.3, zorder=6)
    ax.plot([], [], "o", mfc="none", mec="k", label="committed (default mapping)")
    ax.set_xlabel("time bin centre (ms after onset)")
    ax.set_ylabel(f"{label}, raw")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", title="star: best step per bin", title_fontsize=7)


def _heat(fig, ax, features, bins, values, module_steps, committed, label) -> None:
    """Every feature (rows) x every bin (columns), the committed cells outlined."""
    im = ax.imshow(values, aspect="auto", cmap="magma", interpolation="nearest")
    ax.set_yticks(range(len(features)))
    ax.set_yticklabels(features, fontsize=7)
    step = max(1, len(bins) // 8)
    ax.set_xticks(range(0, len(bins), step))
    ax.set_xticklabels([f"{s:g}-{e:g}" for s, e in bins][::step], rotation=40, ha="right", fontsize=7)
    ax.set_xlabel("time bin (ms)")
    for b, k in enumerate(committed):
        if k is not None and k in module_steps:
            r = list(features).index(module_steps[k])
            ax.add_patch(plt.Rectangle((b - 0.5, r - 0.5), 1, 1, fill=False, ec="cyan", lw=1.5))
    fig.colorbar(im, ax=ax, label=f"{label}, raw", fraction=0.05)
