"""Layer-to-area mapping on held-out stimuli: Brain-Score's layer commitment, offline.

Picking the best of many layers on the same stimuli it is then scored on reports the maximum of many
noisy scores, which is biased upwards. Brain-Score avoids it by choosing each region's layer on public
data (``ModelCommitment``'s layer selection on e.g. ``MajajHong2015public.IT-pls``) and scoring the
committed layer on other, held-out data. ``select_layer`` does the same on one set of recordings: it
splits the stimuli once (``select_fraction`` of them to choose, the rest to score; stratified by the object
labels when given), scores every layer x time step on both parts, commits the layer whose score is
highest on the selection part, and reports that layer's score on the held-out part. Every layer's two
scores stay in ``rows`` (``mapping.csv``), so the selection can be checked.

With ``bootstrap=N`` each held-out score gets a percentile 95 % interval and standard error from N resamples
of the held-out stimuli (``bootstrap.py``: the fitted mappings kept, no refit). Only the held-out part is
resampled: the layer was chosen on other stimuli, so the interval is not widened (or biased) by the choice.

Each layer's Gram matrix is computed once and serves both parts (the metrics see features only
through it, ``fit.py``); each part gets its own regression splits and its own split-half ceiling.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ...errors import ConfigError, DataError
from ...models.commitment_file import split_feature_name
from . import bootstrap as B
from . import metrics as M
from .fit import (NO_BOOTSTRAP, _check_finite_features, _Checked, _draw_bootstrap, _feature_items, _score_gram,
                  _small_blas, ceiled, check_inputs, split_half_ceilings)
from .registry import get_metric

DEFAULT_SELECT_FRACTION = 0.5


@dataclass
class LayerMapping:
    """The layer committed to one area, chosen on the selection stimuli, scored on the held-out ones.

    ``rows``: one dict per layer (feature) with ``feature, layer, time_step, select_raw, heldout_raw,
    heldout_score, ci_low, ci_high, sem, chosen`` (``heldout_score``: ceiled by the held-out part's ceiling, NaN
    without one; ``ci_low, ci_high, sem``: the bootstrap interval of ``heldout_raw``, NaN without a bootstrap).
    ``heldout_raw`` / ``heldout_score`` of the chosen layer are the reported numbers.
    """

    area: str
    metric: str
    chosen: str
    rows: list[dict]
    heldout_raw: float
    heldout_ceiling: float
    heldout_score: float
    select_rows: np.ndarray  # response rows used to choose
    heldout_rows: np.ndarray  # response rows the chosen layer is scored on
    options: dict = field(default_factory=dict)

    @property
    def select_raw(self) -> float:
        return next(r["select_raw"] for r in self.rows if r["chosen"])

    @property
    def heldout_interval(self) -> tuple[float, float, float]:
        """(ci_low, ci_high, sem) of the chosen layer's held-out raw score (NaN without a bootstrap)."""
        row = next(r for r in self.rows if r["chosen"])
        return row["ci_low"], row["ci_high"], row["sem"]

    def commitment_entry(self) -> dict:
        """The area's entry of a commitment file: the layer, the time step and the scores it was chosen by."""
        layer, step = split_feature_name(self.chosen)
        finite = (lambda v: None if not math.isfinite(v) else round(float(v), 6))  # noqa: E731
        return {"layer": layer, "time_step": step, "feature": self.chosen, "metric": self.metric,
                "select_raw": finite(self.select_raw), "heldout_raw": finite(self.heldout_raw),
                "heldout_ceiling": finite(self.heldout_ceiling), "heldout_score": finite(self.heldout_score),
                "heldout_ci": [finite(v) for v in self.heldout_interval[:2]],
                "heldout_sem": finite(self.heldout_interval[2]),
                "n_select": int(len(self.select_rows)), "n_heldout": int(len(self.heldout_rows)),
                "candidates": len(self.rows)}

    def summary(self) -> str:
        """One line: what was committed, on how many stimuli, and its held-out score."""
        score = "" if not math.isfinite(self.heldout_score) else f", ceiled {self.heldout_score:.3f}"
        lo, hi, _ = self.heldout_interval
        ci = f" [{lo:.3f}, {hi:.3f}]" if math.isfinite(lo) and math.isfinite(hi) else ""
        return (f"committed {self.area} -> {self.chosen}: chosen by {self.metric} on {len(self.select_rows)} stimuli "
                f"(raw {self.select_raw:.3f}), held-out raw {self.heldout_raw:.3f}{ci}{score} on "
                f"{len(self.heldout_rows)} others")


@dataclass
class _Part:
    name: str
    index: np.ndarray  # response rows of this part
    checked: _Checked
    splits: list


def ceiled_as(metric: str, raw: float, ceiling: float, convention: str | None = None) -> float:
    """``fit.ceiled`` under ``convention`` (None: ``neural_fit``'s default), so the mapping and time scores are
    ceiled as scores.csv is."""
    return ceiled(raw, ceiling, metric) if convention is None else ceiled(raw, ceiling, metric, convention)


def check_ceiling_convention(convention: str | None) -> None:
    """A named ceiling convention must be one ``neural_fit`` knows (None: its default)."""
    if convention is not None:
        from .registry import check_convention

        check_convention(convention)


def selection_split(n: int, select_fraction: float = DEFAULT_SELECT_FRACTION, groups=None,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(selection rows, held-out rows) of ``n`` stimuli: one shuffle split, stratified by ``groups`` when given."""
    from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

    check_select_fraction(select_fraction)
    if groups is not None:
        cv = StratifiedShuffleSplit(n_splits=1, train_size=select_fraction, random_state=seed)
        a, b = next(cv.split(np.zeros(n), np.asarray(groups)))
    else:
        a, b = next(ShuffleSplit(n_splits=1, train_size=select_fraction, random_state=seed).split(np.zeros(n)))
    return np.sort(a), np.sort(b)


def check_select_fraction(value) -> float:
    """``select_fraction`` must lie strictly between 0 and 1 (both parts need stimuli)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ConfigError(f"--select_fraction {value!r}: give the fraction of stimuli used to choose the layer, "
                          "strictly between 0 and 1 (e.g. 0.5)")
    return float(value)


def _parts(n_features: int, responses, metric: str, groups, splits: int, seed: int, ceiling, strict: bool, rows,
           select_fraction: float, where: str) -> list[_Part]:
    """The selection and held-out parts, each checked as ``neural_fit`` checks its input."""
    from .io import response_array

    arr = response_array(responses, where)
    n = arr.shape[-2]
    if n < 8:
        raise DataError(f"{where}: {n} stimuli; choosing a layer on some and scoring it on others needs at least 8")
    groups = None if groups is None else np.asarray(groups)
    if groups is not None and groups.shape != (n,):
        raise DataError(f"groups: {len(groups)} labels for {n} stimuli; give one label per stimulus")
    feature_rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    try:
        index = selection_split(n, select_fraction, groups, seed)
    except ValueError as err:  # a stratified split that cannot put every label in both parts
        raise DataError(f"groups: cannot split the stimuli {select_fraction:g} / {1 - select_fraction:g} with every "
                        f"label in both parts ({err}); use coarser labels or no --groups") from None
    parts = []
    for name, idx in zip(("selection", "held-out"), index):
        label = f"{where} ({name} part: {len(idx)} of {n} stimuli, --select_fraction {select_fraction:g})"
        checked = check_inputs(n_features, np.take(arr, idx, axis=-2), (metric,),
                               None if groups is None else groups[idx], splits, ceiling, strict,
                               feature_rows[idx], where=label)
        per_split = get_metric(metric).per_split
        split_list = M.regression_splits(len(idx), checked.groups, splits, seed) if per_split else []
        parts.append(_Part(name, idx, checked, split_list))
    return parts


def check_selection(n_features: int, responses, metric: str, groups=None, splits: int = 10, ceiling=None,
                    strict: bool = False, rows=None, select_fraction: float = DEFAULT_SELECT_FRACTION, seed: int = 0,
                    where: str = "responses") -> None:
    """Check before any work that both parts of the split can be scored (``select_layer`` checks the same)."""
    _parts(n_features, responses, metric, groups, splits, seed, ceiling, strict, rows, select_fraction, where)


def _score_parts(feat, parts: list[_Part], metric: str, name: str, source: str | None,
                 resamples: B.Resamples | None = None) -> list[tuple[float, str, np.ndarray | None]]:
    """(raw score, note, resampled scores) of one layer on each part, from one Gram matrix; only the held-out
    (last) part is resampled, by ``resamples`` (None: no bootstrap, or a metric without a resampler)."""
    g, s, d = M.gram(feat)
    used = np.concatenate([p.checked.rows for p in parts])
    _check_finite_features(g, s, used, source or f"features {name}")
    out = []
    with _small_blas(len(used)):
        for i, p in enumerate(parts):
            rs = resamples if i == len(parts) - 1 else None
            samples: dict = {}
            raw, _per_neuroid, note = _score_gram(feat, g, s, d, p.checked, p.splits, rs, samples)[metric]
            out.append((raw, note, samples.get(metric)))
    return out


def _heldout_columns(raw: float, samples: np.ndarray | None, resamples: B.Resamples | None) -> tuple[dict, str]:
    """``ci_low, ci_high, sem`` of a held-out score and the note when a bootstrap was asked but has no interval."""
    cells = B.interval_columns(samples, resamples.n_stimuli if resamples else 0)
    return cells, NO_BOOTSTRAP if resamples is not None and samples is None and math.isfinite(raw) else ""


def _heldout_ceiling(part: _Part, metric: str, ceiling, seed: int) -> float:
    if part.checked.reps is None or ceiling is False or part.checked.constant.all():
        return float("nan")
    with _small_blas(len(part.checked.rows)):
        return split_half_ceilings(part.checked.reps, (metric,), seed)[0][metric]


def select_layer(features, responses, area: str, metric: str = "pls", select_fraction: float = DEFAULT_SELECT_FRACTION,
                 groups=None, splits: int = 10, seed: int = 0, ceiling: bool | None = None, strict: bool = False,
                 rows: Sequence[int] | None = None, progress: bool = False, sources: Mapping[str, str] | None = None,
                 where: str = "responses", ceiling_convention: str | None = None, bootstrap: int = 0) -> LayerMapping:
    """Commit the layer (x time step) of ``features`` that best predicts ``responses`` of ``area``, on held-out data.

    Choosing on the stimuli that are then scored would report the best of many noisy scores (biased upwards);
    this chooses on one part of the stimuli and scores on the rest, as Brain-Score's layer commitment does.

    features, responses, groups, splits, seed, ceiling, strict, rows, sources, ceiling_convention: as ``neural_fit``.
    metric: the registered metric that chooses and scores (one).
    select_fraction: the fraction of stimuli used to choose (default 0.5); the rest score the chosen layer.
    bootstrap: resamples of the held-out stimuli (0: none), seeded by ``seed``: each row's ``ci_low, ci_high, sem``.
    The split is one ``ShuffleSplit`` (``StratifiedShuffleSplit`` with ``groups``) with ``random_state=seed``;
    ties between layers go to the earlier one. Returns a ``LayerMapping``.
    """
    if not isinstance(area, str) or not area.strip():
        raise ConfigError("give the brain area the responses were recorded in (--area NAME, e.g. IT)")
    get_metric(metric)
    check_ceiling_convention(ceiling_convention)
    items = _feature_items(features)
    parts = _parts(int(items[0][1].shape[0]), responses, metric, groups, splits, seed, ceiling, strict, rows,
                   select_fraction, where)
    resamples = _draw_bootstrap(bootstrap, len(parts[1].checked.rows), seed)
    from ...engine.progress import progress_bar

    out = []
    for name, feat in progress_bar(items, desc=f"layer selection ({area})", enabled=progress, unit="layer"):
        (sel, sel_note, _), (held, held_note, samples) = _score_parts(feat, parts, metric, name,
                                                                      (sources or {}).get(name), resamples)
        layer, step = split_feature_name(name)
        cells, boot_note = _heldout_columns(held, samples, resamples)
        out.append({"feature": name, "layer": layer, "time_step": step, "select_raw": float(sel),
                    "heldout_raw": float(held), **cells,
                    "note": "; ".join(n for n in (sel_note or held_note, boot_note) if n)})
    finite = [i for i, r in enumerate(out) if math.isfinite(r["select_raw"])]
    if not finite:
        why = next((r["note"] for r in out if r["note"]), "")
        raise DataError(f"{where}: no layer has a finite {metric} score on the selection stimuli"
                        + (f" ({why})" if why else ""))
    best = max(finite, key=lambda i: out[i]["select_raw"])  # max keeps the first of equal scores
    ceil = _heldout_ceiling(parts[1], metric, ceiling, seed)
    for i, r in enumerate(out):
        r["heldout_score"] = ceiled_as(metric, r["heldout_raw"], ceil, ceiling_convention)
        r["chosen"] = i == best
    options = {"metric": metric, "select_fraction": float(select_fraction), "seed": seed, "splits": splits,
               "stratified": groups is not None, "n_stimuli": int(len(parts[0].index) + len(parts[1].index)),
               "ceiling_convention": ceiling_convention,
               "bootstrap": None if resamples is None else {
                   "resamples": resamples.count, "seed": seed, "over": "held-out stimuli",
                   "ci": f"percentile {B.CI_LEVEL:.0%} of heldout_raw", "fingerprint": resamples.fingerprint(),
                   "regressions": B.REGRESSION_NOTE}}
    return LayerMapping(area=area, metric=metric, chosen=out[best]["feature"], rows=out,
                        heldout_raw=out[best]["heldout_raw"], heldout_ceiling=ceil,
                        heldout_score=out[best]["heldout_score"], select_rows=parts[0].index,
                        heldout_rows=parts[1].index, options=options)


# --------------------------------------------------------------------------- files


def _cell(v):
    return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else (
        round(float(v), 6) if isinstance(v, float) else v)


def write_mapping(mappings: Sequence[LayerMapping], out, provenance: Mapping) -> list:
    """``commitment.json`` (area -> layer, time step, the scores it was chosen by; ``provenance``) and
    ``mapping.csv`` (every layer's selection and held-out score per area), both written atomically."""
    from pathlib import Path

    from ...files import write_records
    from ...models.commitment_file import write_commitments

    out = Path(out)
    entries = {m.area: m.commitment_entry() for m in mappings}
    prov = dict(provenance)
    prov.update({"how": "chosen on the selection stimuli, scored on the held-out ones (ventralkit neural --commit)",
                 "split": {m.area: {**m.options, "select_rows": [int(i) for i in m.select_rows]} for m in mappings}})
    files = [write_commitments(out / "commitment.json", entries, prov)]
    columns = ["area", "feature", "layer", "time_step", "metric", "select_raw", "heldout_raw", "heldout_score",
               "ci_low", "ci_high", "sem", "chosen", "note"]
    records = [{"area": m.area, "metric": m.metric, **{k: _cell(v) for k, v in r.items()},
                "chosen": int(r["chosen"])} for m in mappings for r in m.rows]
    files.append(write_records(out / "mapping.csv", columns, records))
    return files
