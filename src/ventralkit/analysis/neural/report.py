"""Result files of ``ventralkit neural``: scores.csv, per_neuroid.csv, run.json and scores.png (all atomic)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...files import write_csv, write_json, write_records
from .fit import NeuralResult
from .registry import get_metric


def _cell(v: float):
    return "" if v is None or not math.isfinite(v) else round(float(v), 6)


def write_scores(result: NeuralResult, out: Path) -> list[Path]:
    """scores.csv (``layer,metric,raw,ceiling,score,ci_low,ci_high,sem,note``) and per_neuroid.csv (regression
    metrics). ``ci_low, ci_high, sem``: the raw score's bootstrap interval (empty without ``--bootstrap``).

    An empty cell is a value that could not be computed; ``note`` says why.
    """
    rows = [{k: (r[k] if k in ("layer", "metric", "note") else _cell(r[k])) for k in r} for r in result.rows]
    columns = ["layer", "metric", "raw", "ceiling", "score", "ci_low", "ci_high", "sem", "note"]
    paths = [write_records(out / "scores.csv", columns, rows)]
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
    """scores.png (``plots.neural.plot_layer_scores``): raw score per layer and metric, each metric named by its
    registry label, ceilings dashed, best layer marked."""
    from ...plots.neural import plot_layer_scores

    layers, metrics = result.layers, result.metrics
    ci = None
    if result.bootstrap is not None:  # the raw scores' 95 % intervals, shaded
        ci = {m: ([result.value(layer, m, "ci_low") for layer in layers],
                  [result.value(layer, m, "ci_high") for layer in layers]) for m in metrics}
    return plot_layer_scores(path, layers, {m: [result.value(layer, m) for layer in layers] for m in metrics},
                             result.ceilings, _labels(result),
                             n_stimuli=result.n_stimuli, n_neuroids=len(result.neuroids),
                             n_repetitions=result.n_repetitions, title=title, ci=ci)


def _labels(result: NeuralResult) -> dict[str, str]:
    """Each metric's legend: its registry label, except that ``rdm`` names its RDM method, comparator and subjects
    when they are not the built-in ones (``options["rsa"]``: the built-in records no subjects)."""
    labels = {m: get_metric(m).label for m in result.metrics}
    rsa = result.options.get("rsa") or {}
    if "rdm" in labels and rsa.get("subjects"):
        subjects = rsa["subjects"]
        who = f", mean of {len(subjects)} subjects" if subjects != ["all"] else ""
        labels["rdm"] = f"RDM ({rsa['rdm_method']}, {rsa['comparator']}{who})"
    return labels
