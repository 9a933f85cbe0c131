"""The model-comparison figure of ``ventralkit neural compare``: the form rsatoolbox's model plot made standard.

Per metric, one bar per (model, layer) with its 95 % bootstrap interval, the noise-ceiling band in grey, and
above the bars one line per pair whose difference is significant after correction. A bar whose score is
significantly below the lower noise ceiling gets an open triangle at the band. Plain data in, as every figure
module here (figures sit below the analyses in the layer order).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import plt, save_figure

#: most significant-pair lines drawn in one panel; beyond, only those of the best bar (the rest: comparisons.csv)
MAX_LINES = 24


@dataclass
class ComparisonPanel:
    """One metric's panel: bar names, their group (model), estimates and intervals, the ceiling band (lower,
    upper; equal for a line, NaN for none), the significant pairs (indices) and which bars are below the ceiling."""

    label: str
    names: list[str]
    groups: list[str]
    estimates: list[float]
    ci_low: list[float]
    ci_high: list[float]
    ceiling: tuple[float, float] = (math.nan, math.nan)
    pairs: list[tuple[int, int]] = field(default_factory=list)
    below_ceiling: list[bool] = field(default_factory=list)


def plot_comparison(path: Path, panels: Sequence[ComparisonPanel], note: str = "") -> Path:
    """comparison.png: one row of bars per panel (metric)."""
    width = max(6.5, 0.55 * max(len(p.names) for p in panels) + 3)
    fig, axes = plt.subplots(len(panels), 1, figsize=(width, 3.6 * len(panels)), squeeze=False)
    for ax, panel in zip(axes[:, 0], panels):
        _draw_panel(ax, panel)
    if note:
        fig.suptitle(note, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def _draw_panel(ax, panel: ComparisonPanel) -> None:
    x = np.arange(len(panel.names))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    groups = list(dict.fromkeys(panel.groups))
    est = np.array(panel.estimates, dtype=float)
    lo, hi = np.array(panel.ci_low, dtype=float), np.array(panel.ci_high, dtype=float)
    ax.bar(x, est, color=[colors[groups.index(g) % len(colors)] for g in panel.groups], alpha=0.85)
    err = np.vstack([np.clip(est - lo, 0, None), np.clip(hi - est, 0, None)])
    ax.errorbar(x, est, yerr=np.nan_to_num(err), fmt="none", ecolor="k", capsize=3, lw=1.2)
    top = np.nanmax(np.concatenate([hi, est, [panel.ceiling[1], 0.0]]))
    _draw_ceiling(ax, x, panel)
    shown = _draw_pairs(ax, panel.pairs, est, top)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels(panel.names, rotation=35 if len(x) > 4 else 0, ha="right" if len(x) > 4 else "center",
                       fontsize=8)
    extra = f" ({len(panel.pairs) - shown} more significant pairs in comparisons.csv)" if shown < len(panel.pairs) \
        else ""
    ax.set_ylabel(panel.label, fontsize=9)
    ax.set_title(f"{panel.label}: {len(panel.pairs)} significant pairs{extra}", fontsize=9)
    if len(groups) > 1 and groups != [""]:
        handles = [plt.Rectangle((0, 0), 1, 1, color=colors[i % len(colors)]) for i in range(len(groups))]
        ax.legend(handles, groups, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def _draw_ceiling(ax, x: np.ndarray, panel: ComparisonPanel) -> None:
    """The grey band (or line) of the noise ceiling, and a triangle under it for bars significantly below it."""
    lower, upper = panel.ceiling
    if not math.isfinite(lower):
        return
    if math.isfinite(upper) and upper > lower:
        ax.axhspan(lower, upper, color="0.5", alpha=0.25, lw=0, label="noise ceiling")
    else:
        ax.axhline(lower, color="0.5", lw=2, alpha=0.6)
    below = [i for i, flag in enumerate(panel.below_ceiling) if flag]
    if below:
        ax.plot(x[below], [lower] * len(below), "v", mfc="none", mec="0.35", ms=7)


def _draw_pairs(ax, pairs: list[tuple[int, int]], est: np.ndarray, top: float) -> int:
    """A horizontal line over each significant pair, stacked above the bars; returns how many were drawn."""
    if len(pairs) > MAX_LINES and np.isfinite(est).any():
        best = int(np.nanargmax(est))
        pairs = [p for p in pairs if best in p][:MAX_LINES]
    step = 0.06 * max(abs(top), 0.1)
    for k, (i, j) in enumerate(sorted(pairs, key=lambda p: abs(p[1] - p[0]))):
        y = top + step * (k + 1)
        ax.plot([i, i, j, j], [y - step * 0.3, y, y, y - step * 0.3], color="0.2", lw=0.9)
    return len(pairs)
