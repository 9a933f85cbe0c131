"""Training curves: top-1, top-5 and loss against epoch, train and val, several runs overlaid.

Made to be read in a paper: every panel has its y label; accuracies sit on 0-1 (``zoom=True`` lets
them auto-scale) so a change of 0.01 does not look dramatic; the loss is on a log axis so one
diverged run does not flatten the others; a value that is missing or non-finite (NaN/inf, which the
records store as null) breaks the line and is marked with an ``x`` at the top of the panel; a series
with a single point gets a marker; the legend sits outside the panels; each run is labelled by its
model and the options that differ between the overlaid runs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator

from . import save_figure

from ..engine.records import read_metrics

PANELS = (("top1", "top-1 accuracy"), ("top5", "top-5 accuracy"), ("loss", "cross-entropy loss"))
PHASES = (("val", "-"), ("train", "--"))
#: options that do not change what a run learns: never used to tell runs apart
_BOOKKEEPING = {"output_path", "workers", "device", "progress", "resume", "tensorboard", "save_every_minutes",
                "log_every", "keep_epochs", "config", "stages", "stage", "ventralkit_version", "git_commit",
                "num_params", "num_trainable", "classes", "world_size", "checkpoint", "val_every"}


def _options(run_dir: Path) -> dict:
    """The run's options as one flat dict (``model_kwargs`` merged in); {} without a readable config."""
    path = run_dir / "config.json"
    if not path.is_file():
        return {}
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    cfg = cfg.get("config", cfg) if isinstance(cfg, dict) else {}
    flat = {k: v for k, v in cfg.items() if k not in _BOOKKEEPING and k != "model_kwargs"}
    flat.update(cfg.get("model_kwargs") or {})
    return flat


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(_short(v) for v in value)
    return str(value)


def run_labels(run_dirs) -> list[str]:
    """One short label per run: the model plus the options whose values differ between the runs.

    Runs that still read the same (same model and options) get their folder name added.
    """
    run_dirs = [Path(r) for r in run_dirs]
    opts = [_options(r) for r in run_dirs]
    keys = sorted(set.intersection(*(set(o) for o in opts)) - {"model"}) if opts else []  # in every config
    differ = [k for k in keys if len({json.dumps(o.get(k), sort_keys=True, default=str) for o in opts}) > 1]
    labels = []
    for run, o in zip(run_dirs, opts):
        parts = [str(o.get("model", run.name))]
        parts += [f"{k}={_short(o.get(k))}" for k in differ[:4]]
        labels.append(" ".join(parts) + (" ..." if len(differ) > 4 else ""))
    if len(set(labels)) < len(labels) or len(run_dirs) == 1:
        labels = [f"{lab} ({run.name})" for lab, run in zip(labels, run_dirs)]
    return labels


def _value(record: dict, key: str) -> float | None:
    """The record's value as a float; None when absent, null (how NaN is saved) or non-finite."""
    v = record.get(key)
    if isinstance(v, (int, float)) and math.isfinite(v):
        return float(v)
    return None


def plot_runs(run_dirs, output: str | Path, title: str | None = None, zoom: bool = False) -> Path:
    """One figure, three panels (top-1, top-5, loss); solid = val, dashed = train; one colour per run."""
    run_dirs = [Path(r) for r in run_dirs]
    labels = run_labels(run_dirs)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    finite = {key: [] for key, _ in PANELS}
    any_break, epochs = False, []
    for i, run in enumerate(run_dirs):
        recs = read_metrics(run)
        c = colours[i % len(colours)]
        for phase, style in PHASES:
            rows = [r for r in recs if r.get("phase") == phase and isinstance(r.get("epoch"), (int, float))]
            if not rows:
                continue
            x = [float(r["epoch"]) for r in rows]
            for ax, (key, _) in zip(axes, PANELS):
                if not any(key in r for r in rows):
                    continue  # never recorded (e.g. top-5 of a run without it): nothing to mark
                y = [_value(r, key) for r in rows]
                good = [v for v in y if v is not None]
                finite[key] += good
                marker = "o" if phase == "val" or len(good) == 1 else None
                ax.plot(x, [math.nan if v is None else v for v in y], style, color=c, marker=marker,
                        markersize=3.5 if phase == "val" else 5, lw=1.4)
                gaps = [xi for xi, v in zip(x, y) if v is None]
                if gaps:  # a break in the line, marked where it happens
                    any_break = True
                    ax.plot(gaps, [0.97] * len(gaps), "x", color=c, markersize=7, mew=1.8,
                            transform=ax.get_xaxis_transform(), clip_on=False)
        best = [v for r in recs if r.get("phase") == "val" for v in [_value(r, "top1")] if v is not None]
        if best:  # in the legend rather than on the curve, where close values would overlap
            labels[i] += f" (best val top-1 {max(best):.3f})"
        epochs += [float(r["epoch"]) for r in recs if isinstance(r.get("epoch"), (int, float))]
    for ax, (key, name) in zip(axes, PANELS):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        values = finite[key]
        if epochs and all(e == int(e) for e in epochs):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if key == "loss":
            if values and min(values) > 0:
                ax.set_yscale("log")
                ax.set_ylabel(name + " (log scale)")
                plain = FuncFormatter(lambda v, _: f"{v:g}")
                decades = math.log10(max(values) / min(values))
                ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades < 2 else (1.0,)))
                ax.yaxis.set_major_formatter(plain)
                ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        elif not zoom:
            ax.set_ylim(0, 1.02)
        if not values:
            ax.text(0.5, 0.5, f"no finite {name} recorded", transform=ax.transAxes, ha="center", va="center",
                    color="0.4", fontsize=9)
            if key == "loss":
                ax.set_ylim(0, 1)
    styles = [Line2D([], [], color="0.25", ls="-", marker="o", markersize=3.5, label="val"),
              Line2D([], [], color="0.25", ls="--", label="train")]
    if any_break:
        styles.append(Line2D([], [], color="0.25", ls="", marker="x", mew=1.8, label="missing or non-finite value"))
    runs = [Line2D([], [], color=colours[i % len(colours)], lw=2.5, label=lab) for i, lab in enumerate(labels)]
    # below the panels, outside the data: line styles on one row, then the runs
    fig.legend(handles=styles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(styles), fontsize=8,
               frameon=False)
    fig.legend(handles=runs, loc="upper center", bbox_to_anchor=(0.5, -0.065), ncol=min(2, len(runs)), fontsize=8,
               frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, Path(output), bbox_inches="tight")
