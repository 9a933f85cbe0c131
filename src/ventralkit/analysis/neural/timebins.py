"""Time-resolved scores: responses in time bins against every time step of a (recurrent) model.

Recordings of the ventral stream come in time bins after stimulus onset (Brain-Score's assemblies are
presentation x neuroid x time_bin); a recurrent model's area runs several times per image
(``<module>-t<k>`` feature files). ``score_time_bins`` scores every layer x time step against every bin
with the registered metrics, each bin on its own (its own trial average and split-half ceiling; the
same regression splits for every bin), from one Gram matrix per layer. With ``bootstrap=N`` every score gets
a percentile 95 % interval and standard error as a per-layer score does (``bootstrap.py``), from the same N
resamples of the stimuli in every bin and layer, so the scores of two bins or time steps are resampled together.

``time_mapping`` then reads, per bin, which time step of the recorded area's module Brain-Score's
temporal commitment uses (``models.time_mapping``: the step whose window starts nearest the bin's start;
CORnet-S only) beside the time step and the layer that actually score best in that bin.

Responses: ``(stimuli, neuroids, bins)`` or ``(repetitions, stimuli, neuroids, bins)``; bins as
``(start, end)`` ms pairs, one per entry of the last axis (``read_time_bins``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import DataError
from ...models.commitment_file import split_feature_name
from ...models.time_mapping import nearest_time_step
from . import bootstrap as B
from . import metrics as M
from .fit import (NO_BOOTSTRAP, _check_finite_features, _Checked, _draw_bootstrap, _feature_items, _score_gram,
                  _small_blas, check_inputs, split_half_ceilings)
from .io import numeric_array
from .mapping import ceiled_as, check_ceiling_convention
from .registry import get_metric


@dataclass
class TimeResult:
    """Scores of every feature (layer x time step) in every time bin under every metric.

    ``rows``: one dict per (feature, bin, metric): ``feature, layer, time_step, bin_start, bin_end, metric, raw,
    ceiling, score, ci_low, ci_high, sem, note`` (the interval of ``raw``; NaN without a bootstrap).
    ``ceilings[metric]``: one split-half ceiling per bin.
    """

    rows: list[dict]
    features: list[str]
    bins: list[tuple[float, float]]
    metrics: list[str]
    ceilings: dict[str, list[float]]
    n_stimuli: int
    n_neuroids: int
    n_repetitions: int
    options: dict = field(default_factory=dict)

    def raw_matrix(self, metric: str, key: str = "raw") -> np.ndarray:
        """(features, bins) array of ``key`` under ``metric``."""
        out = np.full((len(self.features), len(self.bins)), np.nan)
        fi = {f: i for i, f in enumerate(self.features)}
        for r in self.rows:
            if r["metric"] == metric:
                out[fi[r["feature"]], r["bin"]] = r[key]
        return out


# --------------------------------------------------------------------------- inputs


def read_time_bins(path, flag: str = "--time_bins") -> list[tuple[float, float]]:
    """(start, end) ms of each bin from a text file: one bin per line, ``start end`` or ``start,end``; a first
    line that is not two numbers is a header. Every end must be after its start."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{flag} {path}: no such file; give one 'start,end' line (ms) per time bin")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    bins = []
    for i, line in enumerate(lines):
        cells = line.replace(",", " ").split()
        try:
            start, end = (float(c) for c in cells) if len(cells) == 2 else (None, None)
        except ValueError:
            start = end = None
        if start is None:
            if i == 0 and bins == []:
                continue  # a header
            raise DataError(f"{flag} {path}: line {i + 1} {line!r} is not 'start,end' in ms")
        if not (math.isfinite(start) and math.isfinite(end) and end > start):
            raise DataError(f"{flag} {path}: line {i + 1}: bin {start:g}-{end:g} ms must end after it starts")
        bins.append((start, end))
    if not bins:
        raise DataError(f"{flag} {path}: no time bins; give one 'start,end' line (ms) per bin")
    return bins


def binned_array(responses, n_bins: int, where: str) -> np.ndarray:
    """The responses as (stimuli, neuroids, bins) or (repetitions, stimuli, neuroids, bins), bins matching."""
    arr = numeric_array(responses, where, (3, 4), "time-binned responses must be (stimuli, neuroids, bins) or "
                        "(repetitions, stimuli, neuroids, bins)")
    if arr.shape[-1] != n_bins:
        raise DataError(f"{where}: the last axis has {arr.shape[-1]} time bins but --time_bins lists {n_bins}; "
                        "give one line per bin, in the order of the last axis")
    return arr


def check_bins(n_features: int, stack, bins, metrics=("pls",), groups=None, splits: int = 10, ceiling=None,
               strict: bool = False, rows=None, where: str = "responses") -> list[_Checked]:
    """``check_inputs`` for each bin of ``stack`` (``bins_first``: each ``stack[b]`` a bin's responses)."""
    return [check_inputs(n_features, stack[b], metrics, groups, splits, ceiling, strict, rows,
                         where=f"{where} (bin {s:g}-{e:g} ms)") for b, (s, e) in enumerate(bins)]


def bins_first(responses, n_bins: int, where: str) -> np.ndarray:
    """The binned responses as a stack of per-bin responses, (bins, [repetitions,] stimuli, neuroids): each
    ``stack[b]`` is what ``neural_fit`` takes, and the stimuli stay on axis -2 as in unbinned responses."""
    return np.moveaxis(binned_array(responses, n_bins, where), -1, 0)


# --------------------------------------------------------------------------- scores


def score_time_bins(features, responses, bins: Sequence[tuple[float, float]], metrics: Sequence[str] = ("pls",),
                    groups=None, splits: int = 10, seed: int = 0, ceiling: bool | None = None, strict: bool = False,
                    rows=None, progress: bool = False, sources: Mapping[str, str] | None = None,
                    where: str = "responses", ceiling_convention: str | None = None,
                    bootstrap: int = 0) -> TimeResult:
    """Score every feature (``<module>-t<k>``) against the responses of every time bin.

    Which time step of a recurrent model matches which neural time bin is a question of these scores side by
    side; each bin is scored on its own so a late bin is not diluted by an early one.

    features, groups, splits, seed, ceiling, strict, rows, sources, ceiling_convention: as ``neural_fit``; responses
    ``(N, K, B)`` or ``(R, N, K, B)``; ``bins``: B (start, end) ms pairs. Each bin is scored as ``neural_fit``
    scores (N, K) / (R, N, K) responses, with the same regression splits in every bin.
    bootstrap: resamples of the stimuli (0: none), seeded by ``seed``, the same in every bin: each row's
    ``ci_low, ci_high, sem``, as ``neural_fit(bootstrap=N)`` gives a bin's per-layer scores.
    """
    items = _feature_items(features)
    check_ceiling_convention(ceiling_convention)
    bins = [(float(s), float(e)) for s, e in bins]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a caller that wants them runs check_bins first (the command does)
        checked = check_bins(int(items[0][1].shape[0]), bins_first(responses, len(bins), where), bins, metrics,
                             groups, splits, ceiling, strict, rows, where)
    metrics = list(checked[0].metrics)
    n = len(checked[0].rows)
    per_split = any(get_metric(m).per_split for m in metrics)
    split_list = M.regression_splits(n, checked[0].groups, splits, seed) if per_split else []
    ceilings = _bin_ceilings(checked, metrics, ceiling, seed)
    resamples = _draw_bootstrap(bootstrap, n, seed)
    from ...engine.progress import progress_bar

    out = []
    for name, feat in progress_bar(items, desc="time bins", enabled=progress, unit="layer"):
        g, s, d = M.gram(feat)
        _check_finite_features(g, s, checked[0].rows, (sources or {}).get(name) or f"features {name}")
        layer, step = split_feature_name(name)
        with _small_blas(n):
            for b, c in enumerate(checked):
                samples: dict = {}
                for m, (raw, _per, note) in _score_gram(feat, g, s, d, c, split_list, resamples, samples).items():
                    ceil = ceilings[m][b]
                    out.append({"feature": name, "layer": layer, "time_step": step, "bin": b,
                                "bin_start": bins[b][0], "bin_end": bins[b][1], "metric": m, "raw": float(raw),
                                "ceiling": ceil, "score": ceiled_as(m, raw, ceil, ceiling_convention),
                                **_interval_cells(raw, note, samples.get(m), resamples)})
    options = {"metrics": metrics, "splits": splits, "seed": seed, "stratified": groups is not None,
               "ceiling_convention": ceiling_convention,
               "bootstrap": None if resamples is None else {
                   "resamples": resamples.count, "seed": seed, "over": "stimuli (the same resamples in every bin)",
                   "ci": f"percentile {B.CI_LEVEL:.0%} of raw", "fingerprint": resamples.fingerprint(),
                   "regressions": B.REGRESSION_NOTE}}
    first = checked[0]
    return TimeResult(rows=out, features=[n for n, _ in items], bins=bins, metrics=metrics, ceilings=ceilings,
                      n_stimuli=n, n_neuroids=int(first.y.shape[1]), n_repetitions=first.n_repetitions,
                      options=options)


def _interval_cells(raw: float, note: str, samples: np.ndarray | None, resamples: B.Resamples | None) -> dict:
    """``ci_low, ci_high, sem`` of one bin's score and its note (saying so when a bootstrap has no interval)."""
    cells = B.interval_columns(samples, resamples.n_stimuli if resamples else 0)
    if resamples is not None and samples is None and math.isfinite(raw):
        note = "; ".join(n for n in (note, NO_BOOTSTRAP) if n)
    return {**cells, "note": note}


def _bin_ceilings(checked: list[_Checked], metrics: list[str], ceiling, seed: int) -> dict[str, list[float]]:
    """The split-half ceiling of each bin per metric (NaN without repetitions or with ``ceiling=False``)."""
    out: dict[str, list[float]] = {m: [] for m in metrics}
    for c in checked:
        if c.reps is None or ceiling is False or c.constant.all():
            values = {m: float("nan") for m in metrics}
        else:
            with _small_blas(len(c.rows)):
                values = split_half_ceilings(c.reps, metrics, seed)[0]
        for m in metrics:
            out[m].append(float(values[m]))
    return out


# --------------------------------------------------------------------------- the mapping of time steps to bins


def area_module(features_folder, area: str | None, commitments=None) -> dict:
    """``{"model", "module", "windows", "time_mapping"}`` for the recorded ``area``: the model named in the folder's
    features.json, the area's module (the commitment file's when it commits the area, else the model's registry
    commitment; None when neither does), and the model's default time windows (``models.time_mapping``), used
    only when the module is the one the registry commits (the windows describe that module's time steps)."""
    import json

    from ...errors import ModelNotFoundError
    from ...models.commitments import area_commitments
    from ...models.time_mapping import SOURCE, time_windows

    try:
        model = json.loads((Path(features_folder) / "features.json").read_text(encoding="utf-8")).get("model")
    except (OSError, ValueError, AttributeError):
        model = None
    try:
        registry = area_commitments(model).get(area) if model and area else None
    except ModelNotFoundError:  # features of a model ventralkit does not register: no commitment, no windows
        registry = None
    module = registry.module if registry else None
    if commitments is not None and area in commitments.areas:
        module = commitments.areas[area].module
    windows = time_windows(model, area) if registry and module == registry.module else None
    record = None if windows is None else {
        "source": SOURCE, "windows_ms": {str(k): list(w) for k, w in windows.items()},
        "rule": "each bin goes to the time step whose window starts nearest the bin's start (the first on a tie)"}
    return {"model": model, "module": module, "windows": windows, "time_mapping": record}


def module_features(features: Sequence[str], module: str | None) -> dict[int, str]:
    """Time step -> feature name of ``module`` among ``features`` (empty when it is not there)."""
    out = {}
    for name in features:
        layer, step = split_feature_name(name)
        if module is not None and layer == module:
            out[0 if step is None else step] = name
    return dict(sorted(out.items()))


def time_mapping(result: TimeResult, area: str | None, module: str | None,
                 windows: dict[int, tuple[float, float]] | None) -> list[dict]:
    """Per metric and bin: the time step the default mapping commits (``windows``, e.g. Brain-Score's for CORnet-S),
    the best-scoring time step of the area's ``module``, and the best-scoring feature of any layer, with raw scores.

    A committed step the features do not hold, or no module / no default mapping, leaves those cells empty
    with a ``note`` saying why.
    """
    steps = module_features(result.features, module)
    out = []
    for m in result.metrics:
        raw = result.raw_matrix(m)
        for b, (start, end) in enumerate(result.bins):
            row = {"area": area or "", "module": module or "", "bin_start": start, "bin_end": end, "metric": m}
            row.update(_best(result.features, raw[:, b], "best"))
            if steps:
                idx = [result.features.index(f) for f in steps.values()]
                row.update(_best([result.features[i] for i in idx], raw[idx, b], "best_step"))
            row.update(_committed(result.features, raw[:, b], steps, windows, start, module))
            out.append(row)
    return out


def _best(names: list[str], values: np.ndarray, prefix: str) -> dict:
    if not np.isfinite(values).any():
        return {f"{prefix}_feature": "", f"{prefix}_raw": float("nan")}
    i = int(np.nanargmax(values))
    return {f"{prefix}_feature": names[i], f"{prefix}_raw": float(values[i])}


def _committed(features: list[str], values: np.ndarray, steps: dict[int, str], windows, start: float,
               module: str | None) -> dict:
    if windows is None:
        why = "no module for the area" if not module else f"no default time mapping for {module}'s model"
        return {"committed_step": None, "committed_feature": "", "committed_raw": float("nan"), "note": why}
    k = nearest_time_step(windows, start)
    if k not in steps:
        return {"committed_step": k, "committed_feature": "", "committed_raw": float("nan"),
                "note": f"time step {k} of {module} is not among the features"}
    return {"committed_step": k, "committed_feature": steps[k], "committed_raw": float(values[features.index(steps[k])]),
            "note": ""}


# --------------------------------------------------------------------------- files


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if not math.isfinite(v) else round(v, 6)
    return v


TIME_COLUMNS = ["feature", "layer", "time_step", "bin_start", "bin_end", "metric", "raw", "ceiling", "score", "ci_low",
                "ci_high", "sem", "note"]
MAPPING_COLUMNS = ["area", "module", "bin_start", "bin_end", "metric", "committed_step", "committed_feature",
                   "committed_raw", "best_step_feature", "best_step_raw", "best_feature", "best_raw", "note"]


def write_time_results(result: TimeResult, mapping: list[dict], out, run: dict, module: str | None,
                       figure: bool = True, title: str = "") -> list[Path]:
    """time_scores.csv, time_mapping.csv, run.json and (``figure``) time_scores.png in ``out``, each atomically."""
    from ...files import write_json, write_records

    out = Path(out)
    files = [write_records(out / "time_scores.csv", TIME_COLUMNS,
                           ({k: _cell(r[k]) for k in TIME_COLUMNS} for r in result.rows)),
             write_records(out / "time_mapping.csv", MAPPING_COLUMNS,
                           ({k: _cell(r.get(k)) for k in MAPPING_COLUMNS} for r in mapping))]
    files.append(write_json(out / "run.json", {
        **run, "options": result.options, "n_stimuli": result.n_stimuli, "n_neuroids": result.n_neuroids,
        "n_repetitions": result.n_repetitions, "time_bins_ms": [list(b) for b in result.bins],
        "ceiling": {m: [None if not math.isfinite(c) else c for c in cs] for m, cs in result.ceilings.items()},
        "features": result.features}))
    if figure:
        files.append(plot_time(result, mapping, module, out / "time_scores.png", title))
    return files


def plot_time(result: TimeResult, mapping: list[dict], module: str | None, path, title: str = "") -> Path:
    """time_scores.png (``plots.neural_time``): score against bin and time step, the committed steps marked."""
    from ...plots.neural_time import plot_time_scores

    first = result.metrics[0]
    committed = [r["committed_step"] for r in mapping if r["metric"] == first]
    return plot_time_scores(path, result.features, result.bins, {m: result.raw_matrix(m) for m in result.metrics},
                            {m: get_metric(m).label for m in result.metrics},
                            module_features(result.features, module), committed, title=title)
