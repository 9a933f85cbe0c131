"""Training curves: top-1, top-5 and loss against epoch, train and val, several runs overlaid.

Made to be read in a paper: every panel has its y label; accuracies sit on 0-1 (``zoom=True`` lets
them auto-scale) so a change of 0.01 does not look dramatic; the loss is on a log axis so one
diverged run does not flatten the others; a value that is missing or non-finite (NaN/inf, which the
records store as null) breaks the line and is marked with an ``x`` at the top of the panel; val and
train differ by marker (filled circle, hollow square) as well as line style, so a run of one epoch,
where each series is a single point, still tells them apart; an epoch axis holding one epoch shows
the tick "1"; the legend sits outside the panels; runs are named by what differs between them.

``curves_figure`` returns the figure with the series it drew (for tests and notebooks);
``plot_runs`` draws and saves it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator

from . import count_axis, save_figure

from ..engine.records import read_config, read_metrics

PANELS = (("top1", "top-1 accuracy"), ("top5", "top-5 accuracy"), ("loss", "cross-entropy loss"))
#: how each phase is drawn: line style, marker (filled circle / hollow square) and the most markers per line
PHASES = {"val": dict(ls="-", marker="o", markersize=4.5, most=50),
          "train": dict(ls="--", marker="s", markersize=6, markerfacecolor="none", markeredgewidth=1.2, most=12)}
#: options that do not change what a run learns: never used to tell runs apart
_BOOKKEEPING = {"output_path", "workers", "device", "progress", "resume", "tensorboard", "save_every_minutes",
                "log_every", "keep_epochs", "config", "stages", "ventralkit_version", "git_commit",
                "num_params", "num_trainable", "classes", "world_size", "checkpoint", "val_every", "overwrite",
                "trust_checkpoint", "data_backend", "compile", "channels_last", "sources"}
#: a label lists at most this many differing options; runs that differ in more are named by their folder
MAX_KEYS = 3


@dataclass
class Series:
    """One line drawn: a run's ``phase`` (val/train) values of ``metric`` at ``x`` epochs (None = missing)."""

    run: Path
    label: str
    phase: str
    metric: str
    x: list[float]
    y: list[float | None]


@dataclass
class CurvesFigure:
    """The figure ``curves_figure`` drew, the run labels of its legend and every series on it."""

    figure: Figure
    labels: list[str]
    series: list[Series] = field(default_factory=list)


def _options(run_dir: Path) -> dict:
    """The run's options as one flat dict (``model_kwargs`` merged in, bookkeeping left out).

    A config.json that is not the engine's is a one-line error naming it (``read_config``)."""
    doc = read_config(run_dir)
    cfg = doc.get("config") or doc
    flat = {k: v for k, v in cfg.items() if k not in _BOOKKEEPING and k != "model_kwargs"}
    flat.update(cfg.get("model_kwargs") or {})
    return flat


def _short(value) -> str:
    """A value as it reads in a legend: 0.01 not 0.010000, a path by its last part, lists with commas."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(_short(v) for v in value)
    if isinstance(value, dict):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
        return text if len(text) <= 24 else text[:21] + "..."
    if isinstance(value, str) and "/" in value.rstrip("/"):
        return Path(value).name
    return str(value)


def folder_names(run_dirs) -> list[str]:
    """The shortest trailing parts of the paths that tell the runs apart: ``joint``, or ``a/joint`` and
    ``b/joint`` for the same stage of two staged runs."""
    paths = [Path(r).resolve() for r in run_dirs]
    depth = 1
    while True:
        names = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(names)) == len(names) or depth >= max(len(p.parts) for p in paths):
            return names
        depth += 1


def differing_options(options: list[dict]) -> list[str]:
    """The option keys (in every run's config) whose values are not the same in all runs; ``model`` first."""
    if len(options) < 2:
        return []
    keys = set.intersection(*(set(o) for o in options)) - {"stage"}  # a stage's name is no option
    differ = [k for k in sorted(keys) if len({json.dumps(o[k], sort_keys=True, default=str) for o in options}) > 1]
    return sorted(differ, key=lambda k: k != "model")


def run_labels(run_dirs) -> list[str]:
    """One short label per run, naming it by what differs between the runs.

    One run: its folder and model. The stages of a staged run: their folders (named after the stages).
    Several runs: the options that differ (``lr=0.01, seed=1``) when there are 1 to ``MAX_KEYS`` of them
    and they tell every run apart; otherwise (nothing differs, or so much that the label would be an
    option list) the folder name, which the user chose.
    """
    run_dirs = [Path(r) for r in run_dirs]
    opts = [_options(r) for r in run_dirs]
    names = folder_names(run_dirs)
    if len(run_dirs) == 1:
        model = opts[0].get("model")
        return [f"{names[0]} ({model})" if model else names[0]]
    stages = [o.get("stage") for o in opts]
    if all(stages) and len(set(stages)) == len(stages):
        return names  # the stages of a staged run: their names say what differs
    differ = differing_options(opts)
    if 1 <= len(differ) <= MAX_KEYS:
        labels = [", ".join(f"{k}={_short(o[k])}" for k in differ) for o in opts]
        if len(set(labels)) == len(labels):
            return labels
    return names


def shared_description(run_dirs) -> str | None:
    """What every run shares, for the title: 'cornet_z on digits' (None when the models differ)."""
    opts = [_options(Path(r)) for r in run_dirs]
    models = {str(o.get("model")) for o in opts}
    if len(models) != 1 or None in (o.get("model") for o in opts):
        return None
    datasets = {_dataset(o) for o in opts}
    return models.pop() + (f" on {datasets.pop()}" if len(datasets) == 1 and None not in datasets else "")


def _dataset(options: dict) -> str | None:
    """The dataset's name: the built-in one (``digits``), or the image folder's name; None if unknown."""
    if options.get("dataset") not in (None, "folder"):
        return str(options["dataset"])
    return _short(options["data_path"]) if options.get("data_path") else None


def _value(record: dict, key: str) -> float | None:
    """The record's value as a float; None when absent, null (how NaN is saved) or non-finite."""
    v = record.get(key)
    if isinstance(v, (int, float)) and math.isfinite(v):
        return float(v)
    return None


def _markers_at(n: int, most: int) -> list[int]:
    """Indices of at most ``most`` points spread over ``n``, first and last included (markers of a
    long train series would otherwise merge into a thick line)."""
    if n <= most:
        return list(range(n))
    step = (n - 1) / (most - 1)
    return sorted({round(i * step) for i in range(most)})


def _draw_series(ax, s: Series, colour) -> bool:
    """Draw one series; mark its missing values with an ``x`` at the top. True if it had any."""
    style = {k: v for k, v in PHASES[s.phase].items() if k != "most"}
    ax.plot(s.x, [math.nan if v is None else v for v in s.y], color=colour, lw=1.4,
            markevery=_markers_at(len(s.x), PHASES[s.phase]["most"]), zorder=3 if s.phase == "val" else 2,
            **style)
    gaps = [xi for xi, v in zip(s.x, s.y) if v is None]
    if gaps:  # a break in the line, marked where it happens
        ax.plot(gaps, [0.97] * len(gaps), "x", color=colour, markersize=7, mew=1.8,
                transform=ax.get_xaxis_transform(), clip_on=False)
    return bool(gaps)


def _format_loss_axis(ax, name: str, values: list[float]) -> None:
    if values and min(values) > 0:
        ax.set_yscale("log")
        ax.set_ylabel(name + " (log scale)")
        decades = math.log10(max(values) / min(values))
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades < 2 else (1.0,)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _legends(fig, labels: list[str], colours: list, any_break: bool) -> None:
    """Below the panels, outside the data: the phases on one row, then the runs."""
    styles = [Line2D([], [], color="0.25", label=phase, **{k: v for k, v in PHASES[phase].items() if k != "most"})
              for phase in PHASES]
    if any_break:
        styles.append(Line2D([], [], color="0.25", ls="", marker="x", mew=1.8, label="missing or non-finite value"))
    runs = [Line2D([], [], color=colours[i % len(colours)], lw=2.5, label=lab) for i, lab in enumerate(labels)]
    fig.legend(handles=styles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(styles), fontsize=8,
               frameon=False, handlelength=4.5)  # long enough to show the dashes around the marker
    fig.legend(handles=runs, loc="upper center", bbox_to_anchor=(0.5, -0.065), ncol=min(2, len(runs)), fontsize=8,
               frameon=False)


def curves_figure(run_dirs, title: str | None = None, zoom: bool = False) -> CurvesFigure:
    """Three panels (top-1, top-5, loss), one colour per run; returns the figure and what it drew.

    Every run's config and records are read before anything is drawn, so a bad file is reported
    before a figure exists. Without ``title``, what the runs share (their model and dataset) is the title.
    """
    run_dirs = [Path(r) for r in run_dirs]
    labels = run_labels(run_dirs)
    records = [read_metrics(r) for r in run_dirs]
    if title is None and len(run_dirs) > 1:
        title = shared_description(run_dirs)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn = CurvesFigure(fig, labels)
    finite = {key: [] for key, _ in PANELS}
    any_break, epochs = False, []
    for i, (run, recs) in enumerate(zip(run_dirs, records)):
        for phase in PHASES:
            rows = [r for r in recs if r.get("phase") == phase and isinstance(r.get("epoch"), (int, float))]
            x = [float(r["epoch"]) for r in rows]
            epochs += x
            for ax, (key, _) in zip(axes, PANELS):
                if not rows or not any(key in r for r in rows):
                    continue  # never recorded (e.g. top-5 of a run without it): nothing to mark
                s = Series(run, labels[i], phase, key, x, [_value(r, key) for r in rows])
                finite[key] += [v for v in s.y if v is not None]
                any_break |= _draw_series(ax, s, colours[i % len(colours)])
                drawn.series.append(s)
        best = [v for r in recs if r.get("phase") == "val" for v in [_value(r, "top1")] if v is not None]
        if best:  # in the legend rather than on the curve, where close values would overlap
            labels[i] += f" (best val top-1 {max(best):.3f})"
    for ax, (key, name) in zip(axes, PANELS):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        count_axis(ax, epochs)
        if key == "loss":
            _format_loss_axis(ax, name, finite[key])
        elif not zoom:
            ax.set_ylim(0, 1.02)
        if not finite[key]:
            ax.text(0.5, 0.5, f"no finite {name} recorded", transform=ax.transAxes, ha="center", va="center",
                    color="0.4", fontsize=9)
            if key == "loss":
                ax.set_ylim(0, 1)
    _legends(fig, labels, colours, any_break)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return drawn


def plot_runs(run_dirs, output: str | Path, title: str | None = None, zoom: bool = False) -> Path:
    """Draw ``curves_figure`` of ``run_dirs`` and save it to ``output``; returns the path written."""
    return save_figure(curves_figure(run_dirs, title=title, zoom=zoom).figure, Path(output), bbox_inches="tight")


def draw_run_curves(run_dirs) -> list[Path]:
    """``plots/curves.png`` of each run folder a training call trained (``TrainResult.trained``).

    The engine writes only the records; whoever trained (the ``train`` command, ``ventralkit.train``, a
    study) draws the figure from them here. A figure must never cost the run: a failure is a warning."""
    from ..files import RunPaths

    drawn = []
    for run_dir in run_dirs:
        try:
            drawn.append(plot_runs([run_dir], RunPaths(run_dir).curves))
        except Exception as err:  # noqa: BLE001 - whatever broke the figure, the trained run stays
            print(f"warning: could not draw curves: {err}")
    return drawn
