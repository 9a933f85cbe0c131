"""Figures of the feedback study (``analysis.feedback_study``): accuracy against epoch and compute,
and what each pass of the V4 -> V1 loop changes inside the network."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from . import save_figure

_COLOURS = {"feedforward": "black", "gated": "tab:green", "additive": "tab:blue", "replace": "tab:red"}
_STYLES = {1: "-", 2: "-", 3: "--", 4: ":"}


def _label(design: str, k: int) -> str:
    return "feed-forward (outer_times 1)" if design == "feedforward" else f"{design}, outer_times {k}"


def plot_study(curves: dict, gmac: dict, n_train: int, output: str | Path, settings: dict) -> Path:
    """Val top-1 (mean over seeds, band = +- sd) against epoch and against training compute.

    Training compute per epoch = 3 x forward MACs x training images (a backward pass costs about
    twice the forward one)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    order = sorted(curves, key=lambda dk: (dk[1], list(_COLOURS).index(dk[0]) if dk[0] in _COLOURS else 9))
    for design, k in order:
        runs = curves[(design, k)]
        n = min(len(c) for c in runs)
        a = np.array([c[:n] for c in runs], dtype=float)
        mean = a.mean(0)
        sd = a.std(0, ddof=1) if len(a) > 1 else np.zeros(n)
        epochs = np.arange(1, n + 1)
        tmac = epochs * 3 * gmac[(design, k)] * n_train / 1e3
        style = dict(color=_COLOURS.get(design, "grey"), ls=_STYLES.get(k, "-."), marker="o", ms=3)
        for ax, x in ((axes[0], epochs), (axes[1], tmac)):
            ax.plot(x, mean, label=f"{_label(design, k)} (n={len(a)})", **style)
            ax.fill_between(x, mean - sd, mean + sd, color=style["color"], alpha=0.15, lw=0)
    axes[0].set_xlabel("epoch")
    axes[0].xaxis.get_major_locator().set_params(integer=True)
    axes[1].set_xlabel("training compute (TMAC, 3 x forward)")
    axes[0].set_ylabel("val top-1 (mean ± sd over seeds)")
    for ax in axes:
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False)
    fig.suptitle(f"CORnet-S100 feedback designs on {settings['dataset']} ({settings['image_size']} px)")
    fig.tight_layout()
    path = save_figure(fig, output)
    plt.close(fig)
    return path


def plot_inside(rows: list[dict], output: str | Path) -> Path:
    """Per pass: CKA with the first, feed-forward pass (V1, V4) and top-1 read out after it (mean over seeds)."""
    panels = (("v1_cka_first", "V1: CKA(pass 0, pass p)"), ("v4_cka_first", "V4: CKA(pass 0, pass p)"),
              ("readout_top1", "val top-1 read out after pass p"))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    groups: dict[tuple[str, int], dict[int, list[dict]]] = {}
    for r in rows:
        groups.setdefault((r["design"], r["outer_times"]), {}).setdefault(r["pass"], []).append(r)
    for (design, k), by_pass in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        passes = sorted(by_pass)
        for ax, (key, title) in zip(axes, panels):
            xs = [p for p in passes if by_pass[p][0][key] is not None]
            ys = [float(np.mean([r[key] for r in by_pass[p]])) for p in xs]
            ax.plot(xs, ys, marker="o", color=_COLOURS.get(design, "grey"), ls=_STYLES.get(k, "-."),
                    label=f"{_label(design, k)} (n={len(by_pass[passes[0]])})")
            ax.set_title(title, fontsize=10)
    for ax in axes:
        ax.set_xlabel("pass p (0 = the feed-forward sweep)")
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].set_ylabel("linear CKA (1 = unchanged)")
    axes[2].set_ylabel("top-1")
    axes[2].legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False)
    fig.suptitle("What each pass of the V4 -> V1 loop changes (val images)")
    fig.tight_layout()
    path = save_figure(fig, output)
    plt.close(fig)
    return path
