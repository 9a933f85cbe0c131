"""Figures (matplotlib, Agg backend): one module per topic; each function writes a PNG and returns its path."""

from __future__ import annotations

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
