"""Result files of ``ventralkit behaviour``: scores.csv, per_image.csv, per_subject.csv, run.json and plots/.

Every file is written atomically (``ventralkit.files``) and only after every score was computed, so a failed
run leaves nothing half-written. An empty cell is a value that could not be computed; run.json says why.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...files import write_json, write_records
from .result import HUMAN_SHAPE_BIAS, BehaviourResult

SCORE_COLUMNS = ["metric", "score", "ci_low", "ci_high", "ceiling", "ceiled"]
#: figure files under OUT/plots
FIGURES = {"image_scatter": "image_scatter.png", "error_consistency": "error_consistency.png",
           "shape_bias": "shape_bias.png"}


def _cell(v):
    if isinstance(v, (float, np.floating)):
        return "" if not math.isfinite(v) else round(float(v), 6)
    return v


def _clean(v):
    """JSON-ready: NaN and infinities become null, numpy numbers plain ones."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def write_tables(result: BehaviourResult, out: Path) -> list[Path]:
    """scores.csv (``metric,score,ci_low,ci_high,ceiling,ceiled``), per_image.csv and per_subject.csv."""
    rows = [{k: _cell(r[k]) for k in SCORE_COLUMNS} for r in result.scores]
    paths = [write_records(out / "scores.csv", SCORE_COLUMNS, rows)]
    for name, table in (("per_image.csv", result.per_image), ("per_subject.csv", result.per_subject)):
        columns = list(dict.fromkeys(k for row in table for k in row))
        paths.append(write_records(out / name, columns, [{k: _cell(v) for k, v in r.items()} for r in table]))
    return paths


def write_run(result: BehaviourResult, out: Path, inputs: dict | None = None) -> Path:
    """run.json: the inputs, how the decisions were made (the read-out's layer and training images), the options,
    every score with its interval, ceiled interval and note, per-split values and the software versions."""
    import platform

    import scipy
    import sklearn

    from ...version import __version__

    return write_json(out / "run.json", _clean({
        "inputs": inputs or {},
        **result.info,
        "scores": result.scores,
        "notes": {r["metric"]: r["note"] for r in result.scores if r.get("note")},
        "versions": {"ventralkit": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
                     "scikit-learn": sklearn.__version__, "python": platform.python_version()},
    }))


def draw_figures(result: BehaviourResult, out: Path, title: str = "") -> list[Path]:
    """plots/image_scatter.png, plots/error_consistency.png, plots/shape_bias.png (those the metrics allow)."""
    from ...plots import behaviour as figs

    folder, paths = out / "plots", []
    metrics = result.info["metrics"]
    if "i1n" in metrics or "i2n" in metrics:
        rows = result.per_image
        paths.append(figs.plot_image_scatter(
            folder / FIGURES["image_scatter"], [r["human_i1n"] for r in rows], [r["model_i1n"] for r in rows],
            [r["truth"] for r in rows], _score_of(result, "i1n"), title=title))
    if "error_consistency" in metrics:
        rows = result.per_subject
        paths.append(figs.plot_error_consistency(
            folder / FIGURES["error_consistency"], [r["subject"] for r in rows],
            [r["model_error_consistency"] for r in rows], [r["human_error_consistency"] for r in rows],
            result.figures.get("human_pair_kappas", []), _score_of(result, "error_consistency"), title=title))
    if "shape_bias" in metrics:
        by = result.figures["shape_by_category"]
        paths.append(figs.plot_shape_bias(
            folder / FIGURES["shape_bias"], result.info["labels"], by["model"], by["humans"], by["subjects"],
            _score_of(result, "shape_bias"), _score_of(result, HUMAN_SHAPE_BIAS), title=title))
    return paths


def _score_of(result: BehaviourResult, metric: str) -> dict:
    try:
        return {k: result.score(metric, k) for k in ("score", "ci_low", "ci_high", "ceiling", "ceiled")}
    except KeyError:
        return {}


def write_all(result: BehaviourResult, out: Path, inputs: dict | None = None, figures: bool = True,
              title: str = "") -> list[Path]:
    """Every result file in ``out``."""
    paths = write_tables(result, out)
    paths.append(write_run(result, out, inputs))
    if figures:
        paths += draw_figures(result, out, title)
    return paths
