"""Figures of the feedback study (``studies.feedback``): accuracy against epoch and compute,
and what each pass of the V4 -> V1 loop changes inside the network.

Designs often land on the same point (the gated network and the feed-forward one reach the same
accuracy; a study of one epoch puts every design at epoch 1), so no series may hide another: each
design has its own marker as well as its colour, and on the count axes (epoch, pass) the series
are spread a little sideways around the whole number they belong to.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from . import count_axis, save_figure

_COLOURS = {"feedforward": "black", "gated": "tab:green", "additive": "tab:blue", "replace": "tab:red"}
_MARKERS = {"feedforward": "s", "gated": "o", "additive": "^", "replace": "v"}
_STYLES = {1: "-", 2: "-", 3: "--", 4: ":"}
#: sideways spread of the series on a count axis, in units of that axis (all series within +-0.2)
_SPREAD = 0.4


def _label(design: str, k: int) -> str:
    return "feed-forward (outer_times 1)" if design == "feedforward" else f"{design}, outer_times {k}"


def _style(design: str, k: int) -> dict:
    """Colour by design, line style by number of passes, marker by design; outer_times 3+ hollow."""
    colour = _COLOURS.get(design, "grey")
    return dict(color=colour, ls=_STYLES.get(k, "-."), marker=_MARKERS.get(design, "D"), ms=6, mew=1.3,
                mfc=colour if k <= 2 else "white")


def _offsets(n: int) -> list[float]:
    """Sideways offsets of ``n`` series on a count axis, centred on zero (none for a single series)."""
    if n <= 1:
        return [0.0] * n
    step = min(_SPREAD / (n - 1), 0.08)
    return [(i - (n - 1) / 2) * step for i in range(n)]


def _order(keys) -> list[tuple[str, int]]:
    """Series in legend order (fewest passes first); the feed-forward network last drawn, on top."""
    rank = list(_COLOURS)
    return sorted(keys, key=lambda dk: (dk[1], rank.index(dk[0]) if dk[0] in rank else len(rank)))


def plot_study(curves: dict, gmac: dict, n_train: int, output: str | Path, settings: dict) -> Path:
    """Val top-1 (mean over seeds, band = +- sd) against epoch and against training compute.

    Training compute per epoch = 3 x forward MACs x training images (a backward pass costs about
    twice the forward one)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    order = _order(curves)
    epochs_seen = []
    for (design, k), dx in zip(order, _offsets(len(order))):
        runs = curves[(design, k)]
        n = min(len(c) for c in runs)
        a = np.array([c[:n] for c in runs], dtype=float)
        mean = a.mean(0)
        sd = a.std(0, ddof=1) if len(a) > 1 else np.zeros(n)
        epochs = np.arange(1, n + 1)
        epochs_seen += list(epochs)
        tmac = epochs * 3 * gmac[(design, k)] * n_train / 1e3
        style = _style(design, k)
        z = 4 if design == "feedforward" else 3
        for ax, x in ((axes[0], epochs + dx), (axes[1], tmac)):
            ax.plot(x, mean, label=f"{_label(design, k)} (n={len(a)})", zorder=z, **style)
            ax.fill_between(x, mean - sd, mean + sd, color=style["color"], alpha=0.12, lw=0)
            if n == 1:  # a band needs two points: one epoch shows its sd as an error bar
                ax.errorbar(x, mean, yerr=sd, fmt="none", ecolor=style["color"], capsize=3, lw=1, zorder=z)
    axes[0].set_xlabel("epoch (designs spread sideways so none hides another)")
    count_axis(axes[0], epochs_seen)
    axes[1].set_xlabel("training compute (TMAC, 3 x forward)")
    axes[0].set_ylabel("val top-1 (mean ± sd over seeds)")
    for ax in axes:
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False)
    fig.suptitle(f"CORnet-S100 feedback designs on {settings['dataset']} ({settings['image_size']} px)")
    fig.tight_layout()
    return save_figure(fig, output)


def plot_inside(rows: list[dict], output: str | Path) -> Path:
    """Per pass: CKA with the first, feed-forward pass (V1, V4) and top-1 read out after it (mean over seeds)."""
    panels = (("v1_cka_first", "V1: CKA(pass 0, pass p)"), ("v4_cka_first", "V4: CKA(pass 0, pass p)"),
              ("readout_top1", "val top-1 read out after pass p"))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    groups: dict[tuple[str, int], dict[int, list[dict]]] = {}
    for r in rows:
        groups.setdefault((r["design"], r["outer_times"]), {}).setdefault(r["pass"], []).append(r)
    order = _order(groups)
    passes_seen = []
    for (design, k), dx in zip(order, _offsets(len(order))):
        by_pass = groups[(design, k)]
        passes = sorted(by_pass)
        passes_seen += passes
        for ax, (key, title) in zip(axes, panels):
            xs = [p for p in passes if by_pass[p][0][key] is not None]
            ys = [float(np.mean([r[key] for r in by_pass[p]])) for p in xs]
            ax.plot(np.array(xs, dtype=float) + dx, ys, label=f"{_label(design, k)} (n={len(by_pass[passes[0]])})",
                    **_style(design, k))
            ax.set_title(title, fontsize=10)
    for ax in axes:
        ax.set_xlabel("pass p (0 = the feed-forward sweep)")
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        count_axis(ax, passes_seen)
    axes[0].set_ylabel("linear CKA (1 = unchanged)")
    axes[2].set_ylabel("top-1")
    axes[2].legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False)
    fig.suptitle("What each pass of the V4 -> V1 loop changes (val images; designs spread sideways so none "
                 "hides another)")
    fig.tight_layout()
    return save_figure(fig, output)
