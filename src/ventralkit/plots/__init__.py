"""Figures (matplotlib, Agg backend): one module per topic; each function writes a PNG and returns its path."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from ..files import atomic_path  # noqa: E402


def save_figure(fig, path, dpi: int = 110, **kwargs):
    """Write ``fig`` to ``path`` atomically (its folder is created), close it, and return the path."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, **kwargs)
    plt.close(fig)
    return path
