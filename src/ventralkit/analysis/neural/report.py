"""Result files of ``ventralkit neural``: scores.csv, per_neuroid.csv, run.json and scores.png (all atomic)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...files import write_csv, write_json, write_records
from .fit import NeuralResult

METRIC_LABELS = {"pls": "PLS (Pearson r)", "ridge": "ridge (Pearson r)", "ridgecv": "ridge CV (Pearson r)",
                 "rdm": "RDM (Spearman rho)", "cka": "CKA (unbiased)"}


def _cell(v: float):
    return "" if v is None or not math.isfinite(v) else round(float(v), 6)


def write_scores(result: NeuralResult, out: Path) -> list[Path]:
    """scores.csv (``layer,metric,raw,ceiling,score,note``) and per_neuroid.csv (regression metrics).

    An empty cell is a value that could not be computed; ``note`` says why.
    """
    rows = [{k: (r[k] if k in ("layer", "metric", "note") else _cell(r[k])) for k in r} for r in result.rows]
    paths = [write_records(out / "scores.csv", ["layer", "metric", "raw", "ceiling", "score", "note"], rows)]
    table = [["layer", "metric", "neuroid", "r", "ceiling"]]
    nc = result.neuroid_ceiling
    for (layer, metric), per in result.per_neuroid.items():
        for j, v in enumerate(per):
            table.append([layer, metric, result.neuroids[j], _cell(v), _cell(nc[j]) if nc is not None else ""])
    paths.append(write_csv(out / "per_neuroid.csv", table))
    return paths


def write_run(result: NeuralResult, out: Path, inputs: dict) -> Path:
    """run.json: inputs, options, counts (dropped neuroids, missing trials), notes on missing scores, the best
    layer per metric and the software versions."""
    import platform

    import scipy
    import sklearn

    from ...version import __version__

    best = {}
    for m in result.metrics:
        try:
            best[m] = result.best(m)
        except KeyError:
            best[m] = None
    return write_json(out / "run.json", {
        "inputs": inputs,
        "options": result.options,
        "n_stimuli": result.n_stimuli,
        "n_neuroids": len(result.neuroids),
        "n_repetitions": result.n_repetitions,
        "dropped_neuroids": result.dropped_neuroids,
        "constant_neuroids": result.constant_neuroids,
        "missing_trials": {"values": result.missing_values, "trials": result.missing_trials,
                           "of_trials": result.n_repetitions * result.n_stimuli,
                           "handling": "left out; each stimulus averaged over its finite repetitions"},
        "notes": [{"layer": r["layer"], "metric": r["metric"], "note": r["note"]} for r in result.rows
                  if r.get("note")],
        "ceiling": {m: (None if not math.isfinite(c) else c) for m, c in result.ceilings.items()},
        "best_layer": best,
        "layers": result.layers,
        "versions": {"ventralkit": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
                     "scikit-learn": sklearn.__version__, "python": platform.python_version()},
    })


def plot_scores(result: NeuralResult, path: Path, title: str = "") -> Path:
    """Raw score against layer (time steps in order), one line per metric, its ceiling dashed, best layer marked."""
    from ...plots import plt, save_figure

    layers = result.layers
    x = np.arange(len(layers))
    fig, ax = plt.subplots(figsize=(max(7.5, 0.55 * len(layers) + 4.5), 4.4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn: dict[float, list[str]] = {}  # the regression metrics share one ceiling: draw it once
    for i, m in enumerate(result.metrics):
        c = colors[i % len(colors)]
        y = np.array([result.value(layer, m) for layer in layers], dtype=float)
        label = METRIC_LABELS.get(m, m)
        if np.isfinite(y).any():
            b = int(np.nanargmax(y))
            ax.plot([x[b]], [y[b]], marker="*", ms=15, color=c, zorder=5)
            label += f"\n  best {layers[b]}: {y[b]:.3f}"
        ax.plot(x, y, "o-", color=c, label=label)
        ceil = result.ceilings.get(m, float("nan"))
        if math.isfinite(ceil):
            drawn.setdefault(round(ceil, 6), []).append(m)
    for ceil, ms in drawn.items():
        c = colors[result.metrics.index(ms[0]) % len(colors)] if len(ms) == 1 else "0.35"
        ax.axhline(ceil, color=c, ls="--", lw=1.2, label=f"ceiling {'/'.join(ms)}: {ceil:.3f}")
    ax.set_xticks(x)
    ax.set_xticklabels(layers, rotation=40 if len(layers) > 4 else 0, ha="right" if len(layers) > 4 else "center",
                       fontsize=8)
    ax.set_xlabel("layer and time step (feature file)")
    ax.set_ylabel("raw score (dashed: ceiling)")
    values = np.array([r["raw"] for r in result.rows] + [c for c in result.ceilings.values()], dtype=float)
    values = values[np.isfinite(values)]
    if values.size:  # zoomed to the data: differences between layers are often a few hundredths
        lo, hi = float(values.min()), float(values.max())
        pad = 0.1 * (hi - lo) + 0.02
        ax.set_ylim(lo - pad, hi + pad)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, title="star: best layer",
              title_fontsize=8)
    n = f"{result.n_stimuli} stimuli, {len(result.neuroids)} neuroids"
    if result.n_repetitions > 1:
        n += f", {result.n_repetitions} repetitions"
    ax.set_title((title + "\n" if title else "") + n, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
