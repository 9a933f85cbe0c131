"""Figures of the in-silico V1 probe: example tuning curves, property histograms, run comparison.

Each function writes one PNG and returns its path (matplotlib, Agg backend).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import save_figure  # noqa: E402


def example_units(columns: dict, n: int = 6) -> list[int]:
    """Up to ``n`` responsive units spread over the range of circular variance (sharp to broad)."""
    flag = columns.get("responsive_orientation")
    cv = np.asarray(columns.get("circular_variance", []), float)
    ok = np.nonzero((flag > 0) & np.isfinite(cv))[0] if flag is not None else np.nonzero(np.isfinite(cv))[0]
    if ok.size == 0:
        ok = np.arange(min(n, len(cv)))
        return [int(u) for u in ok]
    order = ok[np.argsort(cv[ok])]
    picks = np.unique(np.linspace(0, len(order) - 1, min(n, len(order))).round().astype(int))
    return [int(order[i]) for i in picks]


def plot_tuning_curves(curves: dict, columns: dict, path, units: list[int] | None = None, title: str = "") -> Path:
    """One row per example unit: orientation, spatial-frequency, size and contrast tuning curves."""
    units = example_units(columns) if units is None else list(units)
    panels = [k for k in ("orientation", "spatial_frequency", "size", "contrast") if k in curves]
    axes_keys = {"orientation": "orientation_axis", "spatial_frequency": "sf_axis", "size": "size_axis",
                 "contrast": "contrast_axis"}
    xlabels = {"orientation": "orientation (deg)", "spatial_frequency": "spatial frequency (cpd)",
               "size": "diameter (deg)", "contrast": "contrast"}
    nrow, ncol = max(1, len(units)), max(1, len(panels))
    fig, axs = plt.subplots(nrow, ncol, figsize=(3.0 * ncol, 2.0 * nrow + 0.6), squeeze=False)
    for r, u in enumerate(units):
        for c, key in enumerate(panels):
            ax = axs[r, c]
            x = np.asarray(curves[axes_keys[key]], float)
            y = np.asarray(curves[key][u], float)
            ax.plot(x, y, "o-", ms=3, lw=1.2, color="C0")
            if key in ("spatial_frequency", "size", "contrast"):
                ax.set_xscale("log")
            if "baseline" in columns and key in ("orientation", "contrast"):
                ax.axhline(columns["baseline"][u], color="0.6", lw=0.8, ls="--")
            if key == "orientation":
                cv = columns.get("circular_variance", [np.nan] * (u + 1))[u]
                ax.set_ylabel(f"unit {u}\nrate (sp/s)", fontsize=8)
                ax.set_title(f"CV {cv:.2f}", fontsize=8)
            elif key == "spatial_frequency":
                ax.set_title(f"peak {columns.get('peak_sf', [np.nan] * (u + 1))[u]:.2f} cpd", fontsize=8)
            elif key == "size":
                ax.set_title(f"SSI {columns.get('surround_suppression_index', [np.nan] * (u + 1))[u]:.2f}",
                             fontsize=8)
            elif key == "contrast":
                ax.set_title(f"c50 {columns.get('c50', [np.nan] * (u + 1))[u]:.2f}", fontsize=8)
            if r == nrow - 1:
                ax.set_xlabel(xlabels[key], fontsize=8)
            ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_property_histograms(columns: dict, references: dict, path, properties: list[str] | None = None,
                             masks: dict | None = None, title: str = "", summary_rows: list[dict] | None = None) -> Path:
    """Model distribution (responsive units) against the monkey reference, per property, on the reference bins."""
    if properties is None:
        properties = [p for p, ref in references.items() if p in columns]
    n = max(1, len(properties))
    ncol = min(4, n)
    nrow = int(np.ceil(n / ncol))
    fig, axs = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.5 * nrow + 0.5), squeeze=False)
    scores = {r["property"]: r.get("score") for r in (summary_rows or [])}
    for i, prop in enumerate(properties):
        ax = axs[i // ncol, i % ncol]
        ref = references.get(prop)
        v = np.asarray(columns[prop], float)
        if masks and prop in masks:
            v = v[masks[prop]]
        v = v[np.isfinite(v)]
        if ref is not None:
            bins = np.asarray(ref.bins, float)
            vc = np.clip(ref.map_values(v), bins[0], bins[-1])
            mh = np.histogram(vc, bins)[0].astype(float)
            x = np.arange(len(bins) - 1)
            if mh.sum():
                ax.bar(x - 0.2, mh / mh.sum(), width=0.4, color="C0", label="model")
            if ref.has_data:
                rh = ref.histogram()
                ax.bar(x + 0.2, rh / rh.sum(), width=0.4, color="C3", alpha=0.8, label="monkey V1")
            step = max(1, int(np.ceil((len(bins) - 1) / 6)))
            ax.set_xticks(np.arange(len(bins))[::step] - 0.5)
            ax.set_xticklabels([f"{b:.3g}" for b in bins[::step]], fontsize=7, rotation=45)
            ax.set_xlim(-0.7, len(bins) - 1.3)
            ax.text(0.98, 0.95, f"n={v.size}", transform=ax.transAxes, ha="right", va="top", fontsize=7)
        elif v.size:
            ax.hist(v, bins=20, color="C0", density=False)
        s = scores.get(prop)
        stitle = f"{prop}" + (f"\nscore {s:.2f}" if isinstance(s, float) and np.isfinite(s) else "")
        ax.set_title(stitle, fontsize=8)
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=7, frameon=False)
    for j in range(len(properties), nrow * ncol):
        axs[j // ncol, j % ncol].axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_comparison(header: list[str], rows: list[list], path, title: str = "score per property") -> Path:
    """Grouped bars: one group per property, one bar per run (rows from ``compare.comparison``)."""
    labels = header[1:]
    props = [r[0] for r in rows]
    vals = np.array([[np.nan if not isinstance(x, (int, float)) else float(x) for x in r[1:]] for r in rows])
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(props) * max(1, len(labels)) ** 0.5 + 2), 3.6))
    width = 0.8 / max(1, len(labels))
    x = np.arange(len(props))
    for k, lab in enumerate(labels):
        ax.bar(x + (k - (len(labels) - 1) / 2) * width, np.nan_to_num(vals[:, k]), width, label=lab)
    ax.set_xticks(x)
    ax.set_xticklabels(props, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("score")
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path) -> Path:
    return save_figure(fig, Path(path))
