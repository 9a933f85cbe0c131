"""Evaluation figures: the confusion matrix as a PNG."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np


def confusion_matrix_png(
    confusion: np.ndarray,
    classes: Sequence[str] | None,
    path: str | os.PathLike,
    normalize: bool = True,
    title: str | None = None,
    max_labels: int = 40,
) -> Path:
    """Draw ``confusion`` (rows = true class, columns = predicted) and write it to ``path``.

    With ``normalize`` each row is divided by its count (per-class recall on the diagonal); rows of
    classes absent from the data stay blank. Class names label the axes when there are at most
    ``max_labels`` classes (otherwise ticks are class indices); names with characters no installed font
    has are drawn as their index, with a note under the figure. Returns the path written.
    """
    import matplotlib.pyplot as plt

    from . import save_figure

    conf = np.asarray(confusion, dtype=float)
    n = conf.shape[0]
    if normalize:
        support = conf.sum(axis=1, keepdims=True)
        shown = np.divide(conf, support, out=np.full_like(conf, np.nan), where=support > 0)
    else:
        shown = conf
    side = float(np.clip(2.5 + 0.28 * n, 4.5, 16.0))
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class" if normalize else "images")
    note = None
    if classes is not None and n <= max_labels:
        from .text import drawable_labels

        labels = drawable_labels(classes)  # names in any script, or indices with a note: never boxes
        note = labels.note
        ticks = np.arange(n)
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.set_xticklabels(labels.texts, rotation=90 if n > 10 else 0, fontsize=8)
        ax.set_yticklabels(labels.texts, fontsize=8)
        if labels.family:
            for tick in ax.get_xticklabels() + ax.get_yticklabels():
                tick.set_fontfamily(labels.family)
    if n <= 15:  # numbers in the cells when they are readable
        for i in range(n):
            for j in range(n):
                if conf[i, j] > 0:
                    v = shown[i, j]
                    txt = f"{v:.2f}" if normalize else f"{int(conf[i, j])}"
                    ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                            color="white" if normalize and v > 0.6 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    total = conf.sum()
    acc = np.trace(conf) / total if total else float("nan")
    ax.set_title(title or f"confusion matrix ({int(total)} images, top-1 {acc:.3f})")
    fig.tight_layout()
    if note:
        import textwrap

        fig.text(0.01, 0.0, textwrap.fill("Note: " + note, int(18 * (side + 1.2))), fontsize=7, va="top", color="0.3")
    return save_figure(fig, Path(path), bbox_inches="tight" if note else None)
