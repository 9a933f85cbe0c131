"""The figures of ``ventralkit behaviour``: per-image performance, error consistency per subject, shape bias.

They take plain lists (the analysis hands its numbers down; figures sit below it in the layer order).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from . import plt, save_figure

MODEL_COLOR = "#1f77b4"
HUMAN_COLOR = "#d62728"
#: subjects named under the error-consistency figure; more are drawn by position
MAX_NAMED_SUBJECTS = 40


def _fmt(score: Mapping, key: str = "score") -> str:
    v = score.get(key) if score else None
    return "--" if v is None or not math.isfinite(v) else f"{v:.3f}"


def _with_ci(score: Mapping) -> str:
    if not score:
        return "--"
    return f"{_fmt(score)} [{_fmt(score, 'ci_low')}, {_fmt(score, 'ci_high')}]"


def plot_image_scatter(path: Path, human: Sequence[float], model: Sequence[float], truth: Sequence[str],
                       score: Mapping, title: str = "") -> Path:
    """Per-image performance (i1n: normalised d', Rajalingham et al. 2018), model against the subjects, one dot
    per image coloured by its label, with the least-squares line. The title gives the i1n score (model vs one
    split half, as scored) and its ceiled value; the r of the dots themselves (all trials) is in the legend."""
    x, y = np.asarray(human, dtype=float), np.asarray(model, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    fig, ax = plt.subplots(figsize=(5.6, 5.0))
    labels = sorted(set(truth))
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    for k, label in enumerate(labels):
        m = ok & (np.asarray(truth) == label)
        ax.scatter(x[m], y[m], s=14, alpha=0.75, color=cmap(k % cmap.N), label=label if len(labels) <= 20 else None)
    if ok.sum() >= 3 and np.ptp(x[ok]) > 0:
        slope, icept = np.polyfit(x[ok], y[ok], 1)
        grid = np.linspace(x[ok].min(), x[ok].max(), 50)
        r = np.corrcoef(x[ok], y[ok])[0, 1]
        ax.plot(grid, slope * grid + icept, color="0.2", lw=1.2, label=f"fit, r = {r:.3f} (all trials)")
    ax.axhline(0, color="0.7", lw=0.8, zorder=0)
    ax.axvline(0, color="0.7", lw=0.8, zorder=0)
    ax.set_xlabel("subjects: image performance (i1n, normalised d')")
    ax.set_ylabel("model: image performance (i1n, normalised d')")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, title="label",
              title_fontsize=8)
    head = f"i1n {_with_ci(score)}, ceiled {_fmt(score, 'ceiled')}"
    ax.set_title((title + "\n" if title else "") + f"{int(ok.sum())} images; {head}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_error_consistency(path: Path, subjects: Sequence[str], model: Sequence[float], human: Sequence[float],
                           pair_kappas: Sequence[float], score: Mapping, title: str = "") -> Path:
    """Error consistency (Cohen's kappa, Geirhos et al. 2020) per subject: the model's with that subject (dots)
    and the subject's mean with the other subjects (diamonds), against the human-to-human band (the range of
    the subject pairs' kappas, 2.5-97.5 percentile, their mean dashed). kappa = 0: no more agreement in errors
    than two independent observers of these accuracies would show."""
    x = np.arange(len(subjects))
    fig, ax = plt.subplots(figsize=(min(14.0, max(5.5, 0.35 * len(subjects) + 3.5)), 4.2))
    pairs = np.asarray([v for v in pair_kappas if math.isfinite(v)], dtype=float)
    if pairs.size:
        lo, hi = np.percentile(pairs, [2.5, 97.5]) if pairs.size >= 10 else (pairs.min(), pairs.max())
        ax.axhspan(lo, hi, color=HUMAN_COLOR, alpha=0.12, label=f"human-human pairs ({pairs.size}): {lo:.2f} to {hi:.2f}")
        ax.axhline(pairs.mean(), color=HUMAN_COLOR, ls="--", lw=1.2, label=f"human-human mean {pairs.mean():.3f}")
    ax.plot(x, np.asarray(human, dtype=float), "D", color=HUMAN_COLOR, ms=6, label="subject vs the other subjects")
    ax.plot(x, np.asarray(model, dtype=float), "o", color=MODEL_COLOR, ms=7, label="model vs subject")
    mean = score.get("score") if score else None
    if mean is not None and math.isfinite(mean):
        ax.axhline(mean, color=MODEL_COLOR, ls=":", lw=1.2, label=f"model mean {_with_ci(score)}")
    ax.axhline(0, color="0.4", lw=0.8)
    if len(subjects) <= MAX_NAMED_SUBJECTS:
        ax.set_xticks(x)
        ax.set_xticklabels(subjects, rotation=40 if len(subjects) > 8 else 0,
                           ha="right" if len(subjects) > 8 else "center", fontsize=8)
        ax.set_xlabel("subject")
    else:  # hundreds of workers: positions only (per_subject.csv names them in this order)
        ax.set_xlabel(f"subject (the {len(subjects)} rows of per_subject.csv, in order)")
    ax.set_ylabel("error consistency (Cohen's kappa)")
    ax.set_ylim(min(-0.1, ax.get_ylim()[0]), max(1.0, ax.get_ylim()[1]))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_title((title + "\n" if title else "") + f"error consistency: ceiled {_fmt(score, 'ceiled')}", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_shape_bias(path: Path, labels: Sequence[str], model: Sequence[float], humans: Sequence[float],
                    subjects: Mapping[str, Sequence[float]], model_score: Mapping, human_score: Mapping,
                    title: str = "") -> Path:
    """Shape vs texture decisions per category in the style of Geirhos et al. 2019 (Fig. 4): one row per shape
    category; the bottom axis the fraction of texture decisions, the top axis the fraction of shape decisions
    (1 at the left); subjects as small grey dots, their pooled value as red diamonds, the model as blue
    circles; vertical lines: the averages over all cue-conflict decisions."""
    model, humans = np.asarray(model, dtype=float), np.asarray(humans, dtype=float)
    rows = [k for k in range(len(labels)) if np.isfinite(model[k]) or np.isfinite(humans[k])]
    y = np.arange(len(rows))[::-1]
    fig, ax = plt.subplots(figsize=(5.4, max(3.0, 0.32 * len(rows) + 1.8)))
    for values in subjects.values():
        v = np.asarray(values, dtype=float)[rows]
        ax.plot(1 - v, y, ".", color="0.6", ms=5, zorder=2)
    ax.plot([], [], ".", color="0.6", label="subjects")
    ax.plot(1 - humans[rows], y, "D", color=HUMAN_COLOR, ms=7, zorder=3, label=f"humans {_with_ci(human_score)}")
    ax.plot(1 - model[rows], y, "o", color=MODEL_COLOR, ms=8, zorder=4, label=f"model {_with_ci(model_score)}")
    for score, color in ((human_score, HUMAN_COLOR), (model_score, MODEL_COLOR)):
        v = score.get("score") if score else None
        if v is not None and math.isfinite(v):
            ax.axvline(1 - v, color=color, lw=1.2, ls="--", zorder=1)
    ax.set_yticks(y)
    ax.set_yticklabels([labels[k] for k in rows], fontsize=8)
    ax.set_xlim(-0.03, 1.03)
    ax.set_xlabel("fraction of 'texture' decisions")
    top = ax.secondary_xaxis("top", functions=(lambda v: 1 - v, lambda v: 1 - v))
    top.set_xlabel("fraction of 'shape' decisions")
    ax.set_ylabel("shape category")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
