"""Figures (matplotlib, Agg backend): one module per topic; each function writes a PNG and returns its path."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from ..files import atomic_path  # noqa: E402


def save_figure(fig, path, dpi: int = 110, **kwargs):
    """Write ``fig`` to ``path`` atomically (its folder is created), close it, and return the path.

    The format comes from the path's suffix, PNG when it has none (as ``savefig`` itself decides).
    """
    suffix = Path(path).suffix.lstrip(".").lower()
    fmt = suffix if suffix in fig.canvas.get_supported_filetypes() else "png"
    if not suffix:
        path = Path(path).with_suffix(".png")  # what savefig("name") writes
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=fmt, **kwargs)
    finally:
        plt.close(fig)
    return path


def count_axis(ax, values, axis: str = "x") -> None:
    """An axis of counts (epochs, passes) that reads as such: at least one unit wide around the data,
    ticks on whole numbers when every value is one. A single epoch then shows as the tick "1", not as
    matplotlib's 0.945 ... 1.050 around a lone point."""
    from matplotlib.ticker import MaxNLocator

    values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not values:
        return
    lo, hi = min(values), max(values)
    if hi - lo < 1:
        mid = (lo + hi) / 2
        (ax.set_xlim if axis == "x" else ax.set_ylim)(mid - 0.6, mid + 0.6)
    if all(v == int(v) for v in values):
        getattr(ax, f"{axis}axis").set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
