"""Robustness figures: error heatmap (corruption x severity), error per corruption, model comparison.

Corruption names are coloured by group (noise, blur, weather, digital, extra) with a legend for the
colours, except in the model comparison, where colours name the models and each group is a band named
above its bars; the mCE goes in the title when there is one; a corruption or severity that was not evaluated
is drawn as missing (hatched, "n/a"), never as a zero-height bar; a baseline measured on another
dataset (AlexNet's ImageNet-C errors on digits) is drawn hollow with the caveat under the figure;
runs evaluated on different severity sets are marked, since their means are not comparable.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from ..data.imagenet_c import ALL, group_of  # noqa: E402
from . import save_figure  # noqa: E402

GROUP_COLOURS = {"noise": "#4C72B0", "blur": "#55A868", "weather": "#8172B2", "digital": "#C44E52",
                 "extra": "#8C8C8C"}
MISSING = dict(facecolor="none", edgecolor="0.6", hatch="///", lw=0.0)


def _order(names) -> list[str]:
    """Canonical order, completed to whole groups: a corruption missing from a group that was evaluated
    is shown (as missing), so a partial benchmark is visible in the figure."""
    groups = {group_of(c) for c in names}
    return [c for c in ALL if group_of(c) in groups]


def _save(fig, path) -> Path:
    return save_figure(fig, Path(path), dpi=120, bbox_inches="tight")


def _group_handles(names) -> list[Patch]:
    groups = [g for g in GROUP_COLOURS if any(group_of(c) == g for c in names)]
    return [Patch(color=GROUP_COLOURS[g], label=g) for g in groups]


def _title(title: str, mce: float | None = None, baseline_name: str | None = None,
           clean_error: float | None = None) -> str:
    parts = []
    if clean_error is not None:
        parts.append(f"clean {100 * clean_error:.1f}%")
    if mce is not None and math.isfinite(mce):
        parts.append(f"mCE {100 * mce:.1f}%" + (f" vs {baseline_name}" if baseline_name else ""))
    return title + (f" ({', '.join(parts)})" if parts else "")


def _footnote(fig, ax, text: str | None) -> None:
    """``text`` wrapped to the axes' width, under everything the axes draw (tick labels included)."""
    if not text:
        return
    box = ax.get_tightbbox(fig.canvas.get_renderer()).transformed(fig.transFigure.inverted())
    chars = int(ax.get_position().width * fig.get_size_inches()[0] * 72 / (7.5 * 0.52))
    fig.text(ax.get_position().x0, box.y0 - 0.02, textwrap.fill("Note: " + text, chars), ha="left", va="top",
             fontsize=7.5, color="0.25")


def plot_error_heatmap(errors: dict[str, dict[int, float]], path, title: str | None = None,
                       clean_error: float | None = None, mce: float | None = None,
                       baseline_name: str | None = None, caveat: str | None = None) -> Path:
    """Top-1 error (%) of every corruption (rows, canonical order) at every severity (columns).

    A severity evaluated for some corruptions but not others is a hatched "n/a" cell.
    """
    rows = _order(c for c, sev in errors.items() if sev)
    sevs = sorted({int(s) for c in rows for s in errors.get(c) or {}})
    grid = np.full((len(rows), len(sevs)), np.nan)
    for i, c in enumerate(rows):
        for j, s in enumerate(sevs):
            if s in (errors.get(c) or {}):
                grid[i, j] = 100 * errors[c][s]
    fig, ax = plt.subplots(figsize=(1.0 * len(sevs) + 3.4, 0.34 * len(rows) + 1.9))
    im = ax.imshow(grid, cmap="magma_r", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(sevs)), [str(s) for s in sevs])
    ax.set_yticks(range(len(rows)), rows)
    for label in ax.get_yticklabels():
        label.set_color(GROUP_COLOURS[group_of(label.get_text())])
    ax.set_xlabel("severity")
    for i in range(len(rows)):
        for j in range(len(sevs)):
            if math.isnan(grid[i, j]):
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, **MISSING))
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=7, color="0.4")
            else:
                ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=7,
                        color="white" if grid[i, j] > 55 else "black")
    fig.colorbar(im, ax=ax, label="top-1 error (%)")
    ax.legend(handles=_group_handles(rows), title="corruption group (label colour)", fontsize=7, title_fontsize=7,
              loc="upper center", bbox_to_anchor=(0.5, -0.09 - 0.6 / max(len(rows), 1)), ncol=5, frameon=False)
    ax.set_title(_title(title or "top-1 error under corruption", mce, baseline_name, clean_error), fontsize=10)
    _footnote(fig, ax, caveat)
    return _save(fig, path)


def plot_corruption_bars(mean_errors: dict[str, float | None], path, title: str | None = None,
                         clean_error: float | None = None, baseline: dict[str, float] | None = None,
                         baseline_name: str = "baseline", mce: float | None = None,
                         caveat: str | None = None) -> Path:
    """Mean error over severities per corruption, coloured by group; baseline errors as markers.

    ``caveat`` (a baseline measured on another dataset) draws the baseline marks hollow and grey, labels
    them as from another dataset, and writes the caveat under the figure.
    """
    names = _order(mean_errors)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(0.5 * len(names) + 2.8, 4))
    missing = False
    for i, c in enumerate(names):
        v = mean_errors.get(c)
        if v is None or not math.isfinite(v):
            missing = True
            ax.bar(i, 100, **MISSING)
            ax.text(i, 50, "not evaluated", ha="center", va="center", fontsize=7, color="0.3", rotation=90,
                    bbox=dict(facecolor="white", edgecolor="none", pad=1))
        else:
            ax.bar(i, 100 * v, color=GROUP_COLOURS[group_of(c)])
    handles = _group_handles(names) + ([Patch(label="not evaluated", **MISSING)] if missing else [])
    if baseline:
        bx = [i for i, c in enumerate(names) if c in baseline]
        label = baseline_name + (" (another dataset, see note)" if caveat else "")
        style = dict(marker="_", s=220, color="0.45", linewidths=1.5) if caveat else \
            dict(marker="_", s=220, color="black", linewidths=2)
        ax.scatter(bx, [100 * baseline[names[i]] for i in bx], zorder=3, **style)
        handles.append(Line2D([], [], ls="", marker="_", markersize=12, mew=1.5 if caveat else 2,
                              color=style["color"], label=label))
    if clean_error is not None:
        ax.axhline(100 * clean_error, color="black", ls="--", lw=1)
        handles.append(Line2D([], [], color="black", ls="--", lw=1, label=f"clean error {100 * clean_error:.1f}%"))
    ax.set_xticks(x, names, rotation=60, ha="right")
    ax.set_ylabel("top-1 error (%), mean over severities")
    ax.set_ylim(0, 100)
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.set_title(_title(title or "error per corruption", mce, baseline_name if baseline else None), fontsize=10)
    _footnote(fig, ax, caveat)
    return _save(fig, path)


def _group_spans(ax, columns: list[str]) -> None:
    """Name the corruption groups by position, not colour: alternate grey bands behind each group's
    columns and its name above them. The comparison's colours belong to the runs, so a group drawn in
    a colour would read as a run (noise blue beside a run in blue)."""
    spans: list[list] = []  # [group, first column, last column]
    for i, name in enumerate(columns):
        group = "clean" if name == "clean" else group_of(name)
        if spans and spans[-1][0] == group:
            spans[-1][2] = i
        else:
            spans.append([group, i, i])
    top = ax.get_xaxis_transform()  # x in data, y in axes fraction
    for n, (group, first, last) in enumerate(spans):
        if n % 2:
            ax.axvspan(first - 0.5, last + 0.5, color="0.92", lw=0, zorder=0)
        ax.text((first + last) / 2, 1.01, group, transform=top, ha="center", va="bottom", fontsize=9, color="0.2",
                style="italic")


def plot_robustness_comparison(table: dict[str, dict[str, float]], path, title: str | None = None,
                               clean_errors: dict[str, float | None] | None = None,
                               scores: dict[str, float | None] | None = None, score_name: str = "mCE",
                               severities: dict[str, list[int]] | None = None, caveat: str | None = None) -> Path:
    """Grouped bars: mean error per corruption for each model (``table[model][corruption]``).

    ``clean_errors`` adds a 'clean' group first; ``scores`` (e.g. mCE per model) goes in the legend and
    the title. A corruption a model was not evaluated on is a hatched "n/a" slot, not a missing bar.
    ``severities`` (the severities each model was evaluated on): when they differ, each model's legend
    entry names its set and the title says the means are not comparable.
    """
    models = list(table)
    names = _order({c for m in models for c in table[m]})
    groups = (["clean"] if clean_errors and any(v is not None for v in clean_errors.values()) else []) + names
    x = np.arange(len(groups))
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(min(16.0, max(7.0, 0.16 * len(groups) * len(models) + 0.3 * len(groups) + 2)), 4.2))
    cmap = plt.get_cmap("tab10")
    sev_sets = {m: tuple(sorted(severities[m])) for m in models if severities and severities.get(m)}
    mixed = len(set(sev_sets.values())) > 1
    any_missing = False
    for k, model in enumerate(models):
        values = [(clean_errors or {}).get(model) if g == "clean" else table[model].get(g) for g in groups]
        pos = x - 0.4 + width * (k + 0.5)
        label = model
        if scores and scores.get(model) is not None:
            label += f" ({score_name} {100 * scores[model]:.1f}%)"
        if mixed and model in sev_sets:
            label += f" [severities {','.join(map(str, sev_sets[model]))}]"
        for p, v in zip(pos, values):
            if v is None or not math.isfinite(v):
                any_missing = True
                ax.bar(p, 100, width, **MISSING)
        heights = [100 * v if v is not None else np.nan for v in values]
        ax.bar(pos, heights, width, label=label, color=cmap(k % 10))
    handles, _ = ax.get_legend_handles_labels()
    if any_missing:
        handles.append(Patch(label="not evaluated", **MISSING))
    ax.set_xticks(x, groups, rotation=60, ha="right")
    ax.set_xlim(-0.5, len(groups) - 0.5)
    _group_spans(ax, groups)
    ax.set_ylabel("top-1 error (%), mean over severities")
    ax.set_ylim(0, 100)
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    head = title or "robustness comparison"
    if scores and any(v is not None for v in scores.values()):
        head += f" ({score_name} in the legend)"
    if mixed:
        head += "\nruns evaluated on different severities: their means are not comparable"
    ax.set_title(head, fontsize=10, pad=16)  # above the group names
    _footnote(fig, ax, caveat)
    return _save(fig, path)
