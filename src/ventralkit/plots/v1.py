"""Figures of the in-silico V1 probe: example tuning curves, property histograms, run comparison.

Each function writes one PNG and returns its path (matplotlib, Agg backend). Every histogram has its
y label (fraction of units) and an x label with the property's unit; ticks are round numbers placed on
the reference's bins (log-spaced bins get log-spaced ticks); a panel without units says so instead of
staying empty. The tuning-curve figure explains its dashed line and its panel titles in a caption.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, MultipleLocator  # noqa: E402

from . import save_figure  # noqa: E402

#: x-axis label (with unit) of each property the probe writes; others show their column name
PROPERTY_LABELS = {
    "preferred_orientation": "preferred orientation (deg)",
    "circular_variance": "circular variance (0 sharp, 1 untuned)",
    "orientation_bandwidth": "orientation bandwidth (deg)",
    "orthogonal_preferred_ratio": "orthogonal / preferred response",
    "orientation_selective": "orientation selective",
    "osi": "orientation selectivity index",
    "cv_bandwidth_ratio": "circular variance / bandwidth (1/deg)",
    "opr_cv_diff": "orth/pref ratio - circular variance",
    "peak_sf": "peak spatial frequency (cycles/deg)",
    "sf_bandwidth_ratio": "SF bandwidth, 100 x low/high cut-off (%)",
    "sf_selective": "SF selective (both cut-offs exist)",
    "sf_bandwidth": "SF bandwidth (octaves)",
    "surround_suppression_index": "surround suppression index",
    "grating_summation_field": "grating summation field (deg)",
    "surround_diameter": "surround diameter (deg)",
    "modulation_ratio": "modulation ratio F1/F0",
    "max_dc": "peak F0 response (spikes/s)",
    "c50": "semi-saturation contrast c50",
}
CAPTION = ("Rows: example responsive units, from sharp (low CV) to broad orientation tuning. Solid: the unit's "
           "response (spikes/s, mean over phases); dashed grey: its response to a blank grey screen (baseline). "
           "Titles: CV = circular variance (0: one orientation, 1: all alike); peak = preferred spatial frequency; "
           "SSI = surround suppression index, (peak - response to the largest grating) / peak; c50 = contrast "
           "giving half the maximal response (Naka-Rushton fit; \"c50 > c\": no half-saturation up to the highest "
           "contrast c shown, \"c50 < c\": past half already at the lowest, so no value is given).")


def _plain_log_axis(ax, axis: str = "x") -> None:
    """Log axis with plain round labels (0.5, 1, 2, 5) instead of 10^k."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(FuncFormatter(lambda v, _: ""))


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


def _column(columns: dict, key: str, u: int) -> float:
    values = columns.get(key)
    return float(values[u]) if values is not None and u < len(values) else float("nan")


def plot_tuning_curves(curves: dict, columns: dict, path, units: list[int] | None = None, title: str = "") -> Path:
    """One row per example unit: orientation, spatial-frequency, size and contrast tuning curves.

    A curve without any response above zero is labelled "no response"; when no unit of the layer is
    responsive the title says so (the rows then show unresponsive units).
    """
    units = example_units(columns) if units is None else list(units)
    panels = [k for k in ("orientation", "spatial_frequency", "size", "contrast") if k in curves]
    axes_keys = {"orientation": "orientation_axis", "spatial_frequency": "sf_axis", "size": "size_axis",
                 "contrast": "contrast_axis"}
    xlabels = {"orientation": "orientation (deg)", "spatial_frequency": "spatial frequency (cycles/deg)",
               "size": "grating diameter (deg)", "contrast": "contrast"}
    flag = columns.get("responsive_orientation")
    none_responsive = flag is not None and not np.nansum(flag)
    nrow, ncol = max(1, len(units)), max(1, len(panels))
    fig, axs = plt.subplots(nrow, ncol, figsize=(3.0 * ncol, 2.0 * nrow + 1.0), squeeze=False)
    for r, u in enumerate(units):
        for c, key in enumerate(panels):
            ax = axs[r, c]
            x = np.asarray(curves[axes_keys[key]], float)
            y = np.asarray(curves[key][u], float)
            ax.plot(x, y, "o-", ms=3, lw=1.2, color="C0")
            if key in ("spatial_frequency", "size", "contrast"):
                ax.set_xscale("log")
                _plain_log_axis(ax)
            if "baseline" in columns:
                ax.axhline(_column(columns, "baseline", u), color="0.6", lw=0.8, ls="--")
            if not np.any(np.nan_to_num(y) > 0):
                ax.text(0.5, 0.5, "no response", transform=ax.transAxes, ha="center", va="center", fontsize=8,
                        color="0.4")
            if key == "orientation":
                ax.xaxis.set_major_locator(MultipleLocator(45))  # 0, 45, 90, 135 deg
                ax.set_ylabel(f"unit {u}\nresponse (spikes/s)", fontsize=8)
                ax.set_title(f"CV {_column(columns, 'circular_variance', u):.2f}", fontsize=8)
            elif key == "spatial_frequency":
                ax.set_title(f"peak {_column(columns, 'peak_sf', u):.2f} cycles/deg", fontsize=8)
            elif key == "size":
                ax.set_title(f"SSI {_column(columns, 'surround_suppression_index', u):.2f}", fontsize=8)
            elif key == "contrast":
                ax.set_title(c50_title(columns, u, x), fontsize=8)
            if r == nrow - 1:
                ax.set_xlabel(xlabels[key], fontsize=8)
            ax.tick_params(labelsize=7)
    if not units:
        axs[0, 0].text(0.5, 0.5, "no units", transform=axs[0, 0].transAxes, ha="center", va="center")
    head = title + (": no responsive units (rows show silent units)" if none_responsive else "")
    if head:
        fig.suptitle(head, fontsize=10)
    handles = [Line2D([], [], color="C0", marker="o", ms=3, lw=1.2, label="response"),
               Line2D([], [], color="0.6", ls="--", lw=0.8, label="baseline (blank screen)")]
    fig.tight_layout(rect=(0, 0.7 / (2.0 * nrow + 1.0), 1, 1))
    fig.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.01, 0.0), ncol=1, fontsize=7, frameon=False)
    import textwrap

    fig.text(0.2, 0.005, textwrap.fill(CAPTION, int(3.0 * ncol * 72 * 0.78 / (6.5 * 0.52))), fontsize=6.5,
             ha="left", va="bottom", color="0.25")
    return _save(fig, path)


def c50_title(columns: dict, u: int, contrasts: np.ndarray) -> str:
    """The contrast panel's title: the fitted c50, or the side of the contrasts shown it is censored on.

    A censored c50 is NaN in the columns (``properties._censor_fits``); showing the fit grid's end as a
    number would pass a code off as a measurement."""
    c50 = _column(columns, "c50", u)
    if np.isfinite(c50):
        return f"c50 {c50:.2f}"
    shown = np.asarray(contrasts, float)
    shown = shown[shown > 0]
    if _column(columns, "c50_above_range", u) == 1 and shown.size:
        return f"c50 > {shown.max():g} (no saturation)"
    if _column(columns, "c50_below_range", u) == 1 and shown.size:
        return f"c50 < {shown.min():g}"
    return "c50: no fit"


def _round_ticks(bins: np.ndarray, log: bool, period: float | None = None) -> tuple[np.ndarray, list[str]]:
    """Round values inside the bin range and their positions on the bar axis (edge k at k - 0.5).

    Angles (``period`` 180 or 360) get multiples of 45 deg; log-spaced bins get 1-2-5 or decade ticks."""
    lo, hi = float(bins[0]), float(bins[-1])
    if period:
        values = np.arange(math.ceil(lo / 45) * 45, hi + 1e-9, 45.0)
        return np.interp(values, bins, np.arange(len(bins))) - 0.5, [f"{v:g}" for v in values]
    if log and lo > 0:
        decades = math.log10(hi / lo)
        subs = (1.0, 2.0, 5.0) if decades <= 2.0 else (1.0,)
        values = LogLocator(subs=subs).tick_values(lo, hi)
        edges = np.log(bins)
        to_pos = np.log
    else:
        values = MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
        edges = bins
        to_pos = np.asarray
    values = np.array([v for v in values if lo - 1e-9 * abs(hi - lo) <= v <= hi + 1e-9 * abs(hi - lo)])
    pos = np.interp(to_pos(values), edges, np.arange(len(bins))) - 0.5
    return pos, [f"{v:g}" for v in values]


#: properties whose values are spatial frequencies: their panels mark the range the input cannot show
SF_PROPERTIES = ("peak_sf", "sf_low", "sf_high")


def plot_property_histograms(columns: dict, references: dict, path, properties: list[str] | None = None,
                             masks: dict | None = None, title: str = "", summary_rows: list[dict] | None = None,
                             sf_limit: float | None = None) -> Path:
    """Model distribution (responsive units) against the monkey reference, per property, on the reference bins.

    ``sf_limit`` (cycles/deg, the input's Nyquist frequency): spatial-frequency panels shade the range above
    it, where the model was shown no gratings, so a model histogram that stops there is read as a limit of
    the input and not of the model."""
    if properties is None:
        properties = [p for p, ref in references.items() if p in columns]
    n = max(1, len(properties))
    ncol = min(4, n)
    nrow = int(np.ceil(n / ncol))
    fig, axs = plt.subplots(nrow, ncol, figsize=(3.3 * ncol, 2.7 * nrow + 0.7), squeeze=False)
    scores = {r["property"]: r.get("score") for r in (summary_rows or [])}
    any_ref = False
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
            paired = ref.has_data
            any_ref |= paired
            width, shift = (0.4, 0.2) if paired else (0.8, 0.0)
            if mh.sum():
                ax.bar(x - shift, mh / mh.sum(), width=width, color="C0")
            if paired:
                rh = ref.histogram()
                ax.bar(x + shift, rh / rh.sum(), width=width, color="C3", alpha=0.8)
            if len(bins) == 3 and bins[0] == 0 and bins[-1] == 1:  # a 0/1 property
                ax.set_xticks([0, 1], ["0 (no)", "1 (yes)"], fontsize=7)
            else:
                pos, labels = _round_ticks(bins, bool(getattr(ref, "log_bins", False)), getattr(ref, "period", None))
                ax.set_xticks(pos, labels, fontsize=7)
            ax.set_xlim(-0.7, len(bins) - 1.3)
            if prop in SF_PROPERTIES and sf_limit:
                _shade_untested(ax, bins, bool(getattr(ref, "log_bins", False)), sf_limit)
        elif v.size:
            ax.hist(v, bins=20, color="C0", weights=np.full(v.size, 1.0 / v.size))
        if v.size == 0:
            ax.text(0.5, 0.5, "no responsive units", transform=ax.transAxes, ha="center", va="center", fontsize=8,
                    color="0.4")
        s = scores.get(prop)
        stitle = prop + "\n" + (f"score {s:.2f}, " if isinstance(s, float) and np.isfinite(s) else "") + f"n={v.size} units"
        ax.set_title(stitle, fontsize=8)
        ax.set_xlabel(PROPERTY_LABELS.get(prop, prop.replace("_", " ")), fontsize=7.5)
        ax.set_ylabel("fraction of units", fontsize=7.5)
        ax.tick_params(labelsize=7)
    for j in range(len(properties), nrow * ncol):
        axs[j // ncol, j % ncol].axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97 if title else 1))
    handles = [Patch(color="C0", label="model (responsive units)")]
    if any_ref:
        handles.append(Patch(color="C3", alpha=0.8, label="monkey V1 (published)"))
    fig.legend(handles=handles, loc="upper right", bbox_to_anchor=(1.0, 1.0), ncol=len(handles), fontsize=7.5,
               frameon=False)
    return save_figure(fig, Path(path), bbox_inches="tight")


def _shade_untested(ax, bins: np.ndarray, log: bool, limit: float) -> None:
    """Grey out the bar-axis range above ``limit`` (cycles/deg) and say why, if it falls inside the bins."""
    if not bins[0] < limit < bins[-1]:
        return
    to = np.log if log else np.asarray
    pos = float(np.interp(to(limit), to(bins), np.arange(len(bins)))) - 0.5
    right = ax.get_xlim()[1]
    ax.axvspan(pos, right, color="0.85", alpha=0.6, lw=0, zorder=0)
    ax.axvline(pos, color="0.4", ls="--", lw=0.8)
    ax.text(pos + 0.15, 0.97, f"model not tested:\nabove the input's\nNyquist, {limit:.3g} cpd",
            transform=ax.get_xaxis_transform(), ha="left", va="top", fontsize=6.5, color="0.3")


def plot_comparison(header: list[str], rows: list[list], path,
                    title: str = "V1 property scores against monkey V1 (1: as close as the monkey data to itself)") -> Path:
    """Grouped bars: one group per property, one bar per run (rows from ``compare.comparison``).

    A property a run has no score for is a hatched "n/a" slot, not a zero bar; the runs are named by
    the labels in ``header`` (run names)."""
    labels = header[1:]
    props = [r[0] for r in rows]
    vals = np.array([[np.nan if not isinstance(x, (int, float)) else float(x) for x in r[1:]] for r in rows])
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(props) * max(1, len(labels)) ** 0.5 + 2), 3.8))
    width = 0.8 / max(1, len(labels))
    x = np.arange(len(props))
    missing = False
    for k, lab in enumerate(labels):
        pos = x + (k - (len(labels) - 1) / 2) * width
        col = vals[:, k] if vals.size else np.array([])
        ax.bar(pos, col, width, label=lab)
        for p, v in zip(pos, col):
            if not np.isfinite(v):
                missing = True
                ax.bar(p, 1.0, width, facecolor="none", edgecolor="0.6", hatch="///", lw=0)
                ax.text(p, 0.5, "n/a", rotation=90, ha="center", va="center", fontsize=6, color="0.3",
                        bbox=dict(facecolor="white", edgecolor="none", pad=0.5))
    if "mean score" in props:  # the summary, set apart from the properties
        ax.axvline(props.index("mean score") - 0.5, color="0.5", lw=0.8, ls=":")
    ax.set_xticks(x)
    ax.set_xticklabels(props, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("score (similarity / ceiling)")
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=10)
    handles, _ = ax.get_legend_handles_labels()
    if missing:
        handles.append(Patch(facecolor="none", edgecolor="0.6", hatch="///", label="no score"))
    ax.legend(handles=handles, fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return save_figure(fig, Path(path), bbox_inches="tight")


def _save(fig, path) -> Path:
    return save_figure(fig, Path(path), bbox_inches="tight")
