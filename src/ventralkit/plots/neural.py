"""The figure of ``ventralkit neural``: raw score against layer, one line per metric, ceilings dashed.

It takes plain data (layer names, values per metric, labels), not a ``NeuralResult``: figures sit
below the analyses in the layer order, so the analysis hands its numbers down here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from . import plt, save_figure


def plot_layer_scores(path: Path, layers: Sequence[str], raw: Mapping[str, Sequence[float]],
                      ceilings: Mapping[str, float], labels: Mapping[str, str], *, n_stimuli: int, n_neuroids: int,
                      n_repetitions: int = 1, title: str = "",
                      ci: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None) -> Path:
    """Raw score against layer (time steps in order), one line per metric, its ceiling dashed, best layer marked.

    ``raw[metric]`` holds one value per layer (NaN: missing), in the order of ``layers``; the metrics are
    drawn in the order of ``raw``, each named by ``labels[metric]``. Metrics that share a ceiling (the
    regressions) get one dashed line. ``ci[metric] = (low, high)``: a shaded 95 % interval per layer (bootstrap).
    """
    metrics = list(raw)
    x = np.arange(len(layers))
    fig, ax = plt.subplots(figsize=(max(7.5, 0.55 * len(layers) + 4.5), 4.4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn: dict[float, list[str]] = {}  # the regression metrics share one ceiling: draw it once
    for i, m in enumerate(metrics):
        _draw_metric(ax, x, layers, np.array(raw[m], dtype=float), labels[m], colors[i % len(colors)],
                     (ci or {}).get(m))
        ceil = ceilings.get(m, float("nan"))
        if math.isfinite(ceil):
            drawn.setdefault(round(ceil, 6), []).append(m)
    for ceil, ms in drawn.items():
        c = colors[metrics.index(ms[0]) % len(colors)] if len(ms) == 1 else "0.35"
        ax.axhline(ceil, color=c, ls="--", lw=1.2, label=f"ceiling {'/'.join(ms)}: {ceil:.3f}")
    _layer_axis(ax, x, layers)
    ax.set_ylabel("raw score (dashed: ceiling)")
    _zoom_to_data(ax, [v for values in raw.values() for v in values] + list(ceilings.values())
                  + [v for band in (ci or {}).values() for side in band for v in side])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, title="star: best layer",
              title_fontsize=8)
    n = f"{n_stimuli} stimuli, {n_neuroids} neuroids"
    if n_repetitions > 1:
        n += f", {n_repetitions} repetitions"
    ax.set_title((title + "\n" if title else "") + n, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _draw_metric(ax, x: np.ndarray, layers: Sequence[str], y: np.ndarray, label: str, color, band=None) -> None:
    """One metric's line, its best layer starred and named in the legend, its 95 % interval shaded (if given)."""
    if band is not None and np.isfinite(np.asarray(band, dtype=float)).any():
        ax.fill_between(x, np.asarray(band[0], dtype=float), np.asarray(band[1], dtype=float), color=color,
                        alpha=0.18, lw=0)
    if np.isfinite(y).any():
        b = int(np.nanargmax(y))
        ax.plot([x[b]], [y[b]], marker="*", ms=15, color=color, zorder=5)
        label += f"\n  best {layers[b]}: {y[b]:.3f}"
    ax.plot(x, y, "o-", color=color, label=label)


def _layer_axis(ax, x: np.ndarray, layers: Sequence[str]) -> None:
    """Layer names as ticks, slanted when there are more than four."""
    ax.set_xticks(x)
    ax.set_xticklabels(layers, rotation=40 if len(layers) > 4 else 0, ha="right" if len(layers) > 4 else "center",
                       fontsize=8)
    ax.set_xlabel("layer and time step (feature file)")


def _zoom_to_data(ax, values) -> None:
    """Y limits around the finite values: differences between layers are often a few hundredths."""
    values = np.array(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size:
        lo, hi = float(values.min()), float(values.max())
        pad = 0.1 * (hi - lo) + 0.02
        ax.set_ylim(lo - pad, hi + pad)
