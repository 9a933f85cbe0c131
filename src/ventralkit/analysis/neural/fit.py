"""``neural_fit``: score every layer of a model against recorded responses with Brain-Score's metrics.

Per layer the features are read once, into their N x N Gram matrix (``metrics.gram``); every metric
and every split then works on N x N objects, so the cost is one pass over the features plus
O(N^3) per split, whatever D is. Layers run one after another: the Gram products already use every
core through BLAS, and on a few cores running layers side by side only multiplies the memory.

The ceiling is the recordings' internal consistency, as Brain-Score's ``internal_consistency``:
split the repetitions in halves (``ShuffleSplit(train_size=0.5)``, 10 draws), average each half,
Pearson r per neuroid between the halves, Spearman-Brown corrected (n = 2), median over neuroids,
mean over draws. ``rdm`` and ``cka`` get the same split-half procedure with their own comparison
(the RDMs / CKA of the two halves), Spearman-Brown corrected. Ceiled score: see ``ceiled``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ...errors import ConfigError, DataError
from . import bootstrap as B
from . import metrics as M
from .io import response_array
from .registry import (CEILING_CONVENTIONS, DEFAULT_CEILING_CONVENTION, Halves, LayerView, check_convention,
                       get_metric, metric_names, resolve_metrics)
from .rsa_scoring import RSAContext, RSAOptions, check_rsa_inputs, prepare_rsa

CEILING_SPLITS = 10
#: below this many stimuli the N x N linear algebra runs on one BLAS thread (see ``_small_blas``)
SMALL_N = 3000


@dataclass
class NeuralResult:
    """Scores of every layer under every metric, with the ceiling and per-neuroid values.

    ``rows``: one dict per (layer, metric) with ``layer, metric, raw, ceiling, score, note`` (``ceiling`` and
    ``score`` NaN without repetitions; ``note`` says why a value is missing, "" when none is).
    ``per_neuroid[(layer, metric)]``: regression metrics' held-out r per neuroid, mean over splits.
    ``neuroid_ceiling``: the split-half ceiling per neuroid (or None).
    """

    rows: list[dict]
    per_neuroid: dict[tuple[str, str], np.ndarray]
    ceilings: dict[str, float]
    neuroid_ceiling: np.ndarray | None
    neuroids: list[int]  # column of each kept neuroid in the given responses
    n_stimuli: int
    n_repetitions: int
    dropped_neuroids: int
    options: dict = field(default_factory=dict)
    missing_values: int = 0  # NaN / infinite single-trial values left out of the trial averages
    missing_trials: int = 0  # (repetition, stimulus) trials that held such a value
    constant_neuroids: int = 0  # kept neuroids with the same (trial-averaged) response to every stimulus
    bootstrap: B.ScoreSamples | None = None  # the resampled scores and ceilings (``neural_fit(bootstrap=N)``)

    @property
    def layers(self) -> list[str]:
        return list(dict.fromkeys(r["layer"] for r in self.rows))

    @property
    def metrics(self) -> list[str]:
        return list(dict.fromkeys(r["metric"] for r in self.rows))

    def value(self, layer: str, metric: str, key: str = "raw") -> float:
        for r in self.rows:
            if r["layer"] == layer and r["metric"] == metric:
                return r[key]
        raise KeyError((layer, metric))

    def best(self, metric: str) -> str:
        """The layer with the highest raw score under ``metric``."""
        rows = [r for r in self.rows if r["metric"] == metric and np.isfinite(r["raw"])]
        if not rows:
            raise KeyError(metric)
        return max(rows, key=lambda r: r["raw"])["layer"]

    def table(self) -> str:
        """The scores as aligned text, one line per layer and metric; a ``note`` column says why a value is --."""
        width = max(len("layer"), *(len(r["layer"]) for r in self.rows))
        mwidth = max(7, *(len(r["metric"]) for r in self.rows))  # 7: the longest built-in name, ridgecv
        notes = any(r.get("note") for r in self.rows)
        cis = any(np.isfinite(r.get("ci_low", np.nan)) for r in self.rows)  # with a bootstrap: the raw score's CI
        lines = [f"{'layer':<{width}}  {'metric':<{mwidth}}  {'raw':>7}  {'ceiling':>7}  {'score':>7}"
                 + (f"  {'95% CI of raw':>17}" if cis else "") + ("  note" if notes else "")]
        fmt = lambda v: "     --" if not np.isfinite(v) else f"{v:7.3f}"  # noqa: E731
        for r in self.rows:
            line = (f"{r['layer']:<{width}}  {r['metric']:<{mwidth}}  {fmt(r['raw'])}  {fmt(r['ceiling'])}  "
                    f"{fmt(r['score'])}")
            if cis:
                line += f"  [{fmt(r.get('ci_low', np.nan))}, {fmt(r.get('ci_high', np.nan))}]"
            lines.append(line + (f"  {r['note']}" if r.get("note") else ""))
        return "\n".join(lines)


# --------------------------------------------------------------------------- input checks


@dataclass
class _Checked:
    y: np.ndarray  # (N, K) trial average over the finite repetitions, finite
    reps: np.ndarray | None  # (R, N, K) when R >= 2; NaN where a trial was missing
    kept: np.ndarray  # original neuroid indices
    dropped: int
    groups: np.ndarray | None
    rows: np.ndarray
    metrics: tuple[str, ...]
    n_features: int  # stimuli in the feature arrays
    n_repetitions: int
    missing_values: int = 0  # NaN / infinite values left out of the averages (kept neuroids)
    missing_trials: int = 0  # (repetition, stimulus) trials holding one
    constant: np.ndarray | None = None  # (K,) bool: kept neuroid responds the same to every stimulus
    rsa_options: RSAOptions = field(default_factory=RSAOptions)  # the ``rdm`` metric's method and comparator
    subjects: np.ndarray | None = None  # (K,) subject label of each kept neuroid (None: one population)
    runs: np.ndarray | None = None  # (R,) run label of each repetition
    rsa: RSAContext | None = None  # the ``rdm`` metric's neural RDMs and ceiling (``neural_fit``)


def check_inputs(n_features: int, responses, metrics=("pls",), groups=None, splits: int = 10, ceiling=None,
                 strict: bool = False, rows=None, where: str = "responses", rsa_options: RSAOptions | None = None,
                 subjects=None, runs=None) -> _Checked:
    """Validate everything ``neural_fit`` needs before any work; one-line ``VentralkitError`` otherwise.

    ``where`` names the input in messages (the CLI passes the file name). The checks run in a fixed
    order, so the same input always gets the same (first) complaint.
    """
    metrics = resolve_metrics(metrics)
    if isinstance(splits, bool) or not isinstance(splits, (int, np.integer)) or splits < 1:
        raise ConfigError(f"splits must be a positive integer, got {splits!r}")
    arr, bad = _response_trials(responses, strict, where)
    r, n, k = arr.shape
    kept, dropped = _kept_neuroids(bad, where)
    arr, bad = arr[:, :, kept], bad[:, :, kept]
    missing_values, missing_trials = int(bad.sum()), int(bad.any(axis=2).sum())
    if missing_values:
        arr = np.where(bad, np.nan, arr)  # infinities too: every non-finite value is a missing trial
        _warn_missing_trials(missing_values, missing_trials, r * n, where)
    rows = _feature_rows(rows, n, n_features, where)
    if ceiling and r < 2:
        raise DataError(f"{where}: a ceiling needs repeated presentations (repetitions, stimuli, neuroids) "
                        "with at least 2 repetitions; this has 1 (drop --ceiling to report raw scores)")
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise DataError(f"groups: {len(groups)} labels for {n} stimuli; give one label per stimulus")
    if any(get_metric(m).per_split for m in metrics):
        _check_split_sizes(n, groups, where)
    if n < 4:
        raise DataError(f"{where}: {n} stimuli; the metrics need at least 4")
    y = _trial_mean(arr)
    constant = _constant_neuroids(y, where)
    rsa_options = rsa_options if rsa_options is not None and "rdm" in metrics else RSAOptions()
    subjects, runs = check_rsa_inputs(rsa_options, r, k, subjects, runs, ceiling, missing_values > 0, where)
    return _Checked(y=y, reps=arr if r >= 2 else None, kept=kept, dropped=dropped, groups=groups,
                    rows=rows, metrics=metrics, n_features=n_features, n_repetitions=r,
                    missing_values=missing_values, missing_trials=missing_trials, constant=constant,
                    rsa_options=rsa_options, subjects=None if subjects is None else subjects[kept], runs=runs)


# the warnings below are raised two calls deeper than check_inputs' own were: stacklevel 4 names the same caller


def _response_trials(responses, strict: bool, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The responses as (repetitions, stimuli, neuroids) float64 and where they are not finite.

    Empty responses, and with ``strict`` any non-finite value, are refused."""
    arr = response_array(responses, where)
    arr = arr.astype(np.float64)[None] if arr.ndim == 2 else arr.astype(np.float64)
    r, n, k = arr.shape
    if n == 0 or k == 0 or r == 0:
        raise DataError(f"{where}: responses are empty (shape {arr.shape})")
    bad = ~np.isfinite(arr)
    if strict and bad.any():
        raise DataError(f"{where}: {int(bad.any(axis=(0, 1)).sum())} of {k} neuroids have NaN or infinite "
                        "responses; clean them or drop --strict to "
                        + ("average over the finite repetitions" if r >= 2 else "skip them"))
    return arr, bad


def _kept_neuroids(bad: np.ndarray, where: str) -> tuple[np.ndarray, int]:
    """The neuroids that can be scored and how many were dropped (with a warning); none left is an error."""
    r, k = bad.shape[0], bad.shape[2]
    unusable = _unusable_neuroids(bad)
    dropped = int(unusable.sum())
    if dropped == k:
        raise DataError(_nothing_usable(where, bad))
    if dropped:
        why = "a stimulus that has no finite repetition" if r >= 2 else "NaN or infinite responses"
        warnings.warn(f"{where}: dropped {dropped} of {k} neuroids with {why}", stacklevel=4)
    return np.nonzero(~unusable)[0], dropped


def _warn_missing_trials(missing_values: int, missing_trials: int, trials: int, where: str) -> None:
    values = "value" if missing_values == 1 else "values"
    warnings.warn(f"{where}: left out {missing_values} NaN or infinite {values} in {missing_trials} of {trials} "
                  "trials (repetition x stimulus); each stimulus is averaged over its finite repetitions",
                  stacklevel=4)


def _feature_rows(rows, n: int, n_features: int, where: str) -> np.ndarray:
    """The feature row of each of the ``n`` response rows (the same order when ``rows`` is None)."""
    if rows is None:
        if n != n_features:
            raise DataError(f"{where}: {n} stimuli (rows) but the features have {n_features}; give --stimuli "
                            "to match them by name, or responses for every image in images.txt")
        return np.arange(n)
    rows = np.asarray(rows, dtype=np.int64)
    if rows.shape != (n,) or (rows < 0).any() or (rows >= n_features).any():
        raise DataError(f"{where}: {n} stimuli but {len(rows)} feature rows were given to match them")
    return rows


def _check_split_sizes(n: int, groups: np.ndarray | None, where: str) -> None:
    """Metrics fitted on splits need enough held-out stimuli, and every group label in both parts."""
    held = M.test_size(n)
    if held < M.MIN_TEST_STIMULI:
        need = math.ceil(M.MIN_TEST_STIMULI / (1 - M.TRAIN_SIZE))
        raise DataError(f"{where}: {n} stimuli leave {held} per held-out 10% split; regression metrics need "
                        f"at least {M.MIN_TEST_STIMULI} (about {need} stimuli); use --metrics "
                        + " ".join(metric_names("similarity")))
    if groups is not None:
        labels, counts = np.unique(groups, return_counts=True)
        if counts.min() < 2:
            raise DataError(f"groups: label {labels[counts.argmin()]!r} has one stimulus; stratified splits "
                            "need at least 2 per label")
        if len(labels) > held or len(labels) > n - held:
            raise DataError(f"groups: {len(labels)} labels do not fit in a held-out split of {held} stimuli; "
                            "use coarser labels or no --groups")


def _constant_neuroids(y: np.ndarray, where: str) -> np.ndarray:
    """(K,) True where a neuroid responds the same to every stimulus (warned: it has no r)."""
    constant = np.ptp(y, axis=0) == 0
    if constant.all():
        warnings.warn(f"{where}: every neuroid responds the same to every stimulus; no metric is defined "
                      "(the scores are left empty)", stacklevel=4)
    elif constant.any():
        warnings.warn(f"{where}: {int(constant.sum())} of {y.shape[1]} neuroids respond the same to every stimulus; "
                      "they have no r (empty in per_neuroid.csv) and are left out of the medians", stacklevel=4)
    return constant


def _unusable_neuroids(bad: np.ndarray) -> np.ndarray:
    """Neuroids (K,) that cannot be scored: a stimulus with no finite repetition (or, with one repetition, any NaN).

    A missing trial among several repetitions only removes that trial from the average; a stimulus
    a neuroid never responded to would leave a hole no metric can fill, so that neuroid is dropped.
    """
    return bad.all(axis=0).any(axis=0)


def _nothing_usable(where: str, bad: np.ndarray) -> str:
    """The one-line refusal when every neuroid misses some stimulus, naming those stimulus rows."""
    holes = np.nonzero(bad.all(axis=0).any(axis=1))[0]  # stimulus rows with a neuroid never recorded
    rows = ", ".join(str(i) for i in holes[:5]) + (f" ... ({len(holes)} rows)" if len(holes) > 5 else "")
    what = "no finite repetition" if bad.shape[0] >= 2 else "NaN or infinite responses"
    return (f"{where}: every neuroid has {what} for some stimulus (stimulus rows {rows}); fill them, or remove "
            "those rows from the responses and name the image of each remaining row with --stimuli (and drop "
            "them from --groups)")


def _trial_mean(arr: np.ndarray) -> np.ndarray:
    """The mean over repetitions (axis 0) of the finite trials (NaN marks a missing trial)."""
    if not np.isnan(arr).any():
        return arr.mean(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a half of the repetitions may miss a cell: NaN
        return np.nanmean(arr, axis=0)


def _feature_items(features) -> list[tuple[str, object]]:
    if isinstance(features, Mapping):
        items = list(features.items())
    else:
        items = [("features", features)]
    if not items:
        raise DataError("no features given")
    for name, arr in items:
        if len(getattr(arr, "shape", ())) != 2:
            raise DataError(f"features {name}: expected a (stimuli, features) array, got shape "
                            f"{getattr(arr, 'shape', None)}")
    n = int(items[0][1].shape[0])
    for name, arr in items:
        if int(arr.shape[0]) != n:
            raise DataError(f"features {name}: {arr.shape[0]} rows, but {items[0][0]} has {n}")
    return items


# --------------------------------------------------------------------------- ceilings


def split_half_ceilings(reps: np.ndarray, metrics: Sequence[str], seed: int = 0,
                        splits: int = CEILING_SPLITS, resamples: B.Resamples | None = None,
                        samples: dict | None = None) -> tuple[dict[str, float], np.ndarray]:
    """Spearman-Brown corrected split-half consistency per metric (its ``ceiling`` function, averaged over the
    draws), and per neuroid (Pearson).

    ``reps`` may hold NaN for missing trials. Each half is then averaged over its finite trials, as
    the responses scored against the model are; a stimulus whose trials of one half are all missing
    is left out of that draw (per neuroid for the Pearson r, as a whole row for ``rdm`` and ``cka``),
    so no half-average is made up.

    With ``resamples`` (bootstrap), ``samples[metric]`` receives each metric's ceiling under every resample (the
    mean over the same draws of its ``ceiling_resample``; NaN for a metric without one: its ceiling stays fixed).
    """
    from sklearn.model_selection import ShuffleSplit

    entries = [get_metric(m) for m in metrics]
    cv = ShuffleSplit(n_splits=splits, train_size=0.5, test_size=None, random_state=seed)
    per_split: dict[str, list[float]] = {m.name: [] for m in entries}
    resampled: dict[str, list[np.ndarray]] = {m.name: [] for m in entries}
    neuroid = []
    for a, b in cv.split(np.zeros(reps.shape[0])):
        h1, h2 = _trial_mean(reps[a]), _trial_mean(reps[b])
        r = M.spearman_brown(M.pearson_columns_complete(h1, h2))
        neuroid.append(r)
        halves = Halves(h1, h2, r)
        for m in entries:
            per_split[m.name].append(float(m.ceiling(halves)))
            if resamples is not None and m.ceiling_resample is not None:
                resampled[m.name].append(np.asarray(m.ceiling_resample(halves, resamples), dtype=np.float64))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if resamples is not None and samples is not None:
            samples.update({m: (np.nanmean(np.array(v), axis=0) if v else np.full(resamples.count, np.nan))
                            for m, v in resampled.items()})
        return ({m: float(np.nanmean(v)) for m, v in per_split.items()}, np.nanmean(np.array(neuroid), axis=0))


def ceiled(raw: float, ceiling: float, metric: str, convention: str = DEFAULT_CEILING_CONVENTION) -> float:
    """The ceiled score under ``metric``'s rule (``NeuralMetric.ceiled``: ``r |r| / ceiling`` for regressions, or
    ``(r / c) |r / c|`` with ``convention="r_over_c_squared"``)."""
    return get_metric(metric).ceiled(raw, ceiling, convention)


#: the note of a ceiled score above 1 (reported as it is, never clipped)
ABOVE_CEILING = "score above 1: the raw score exceeds the ceiling (a noisy ceiling estimate); not clipped"


# --------------------------------------------------------------------------- the fit


def score_layer(feat, checked: _Checked, split_list, seed: int = 0, name: str = "features",
                source: str | None = None, resamples: B.Resamples | None = None,
                samples: dict | None = None) -> dict[str, tuple[float, np.ndarray | None, str]]:
    """Raw score, per-neuroid r (regression metrics) and a note saying why the score is missing, per metric.

    Non-finite features are refused (``DataError`` naming ``source`` or the layer ``name``): a NaN
    would turn every number of the layer into NaN, or into an exception deep in the fit. With ``resamples``,
    ``samples[metric]`` receives the score under each bootstrap resample (``_score_gram``).
    """
    g, s, d = M.gram(feat)
    _check_finite_features(g, s, checked.rows, source or f"features {name}")
    with _small_blas(len(checked.rows)):
        return _score_gram(feat, g, s, d, checked, split_list, resamples, samples)


def _check_finite_features(g: np.ndarray, s: np.ndarray, rows: np.ndarray, where: str) -> None:
    """One line naming ``where`` when a used feature row holds NaN or inf (its Gram diagonal is then not finite)."""
    bad = ~(np.isfinite(np.diag(g)[rows]) & np.isfinite(s[rows]))
    if bad.any():
        first = int(rows[np.argmax(bad)])
        raise DataError(f"{where}: NaN or infinite features in {int(bad.sum())} of {len(rows)} stimuli (first in row "
                        f"{first}); extract them again from a model whose outputs are finite (a diverged "
                        "checkpoint gives NaN)")


def _small_blas(n: int):
    """One BLAS thread for the N x N stages when N is small.

    OpenBLAS threads on matrices of a few hundred rows cost more in synchronisation than they gain:
    measured on 2 busy cores, ``eigh`` of a 359 x 359 matrix took 0.05 s on one thread and 1.5 s on
    two. The Gram product (N x D, large) keeps every thread.
    """
    import contextlib

    if n >= SMALL_N:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


#: why a layer or the responses cannot be scored at all (``note`` of every metric)
CONSTANT_FEATURES = "features are the same for every stimulus"
CONSTANT_RESPONSES = "responses are the same for every stimulus"


def _constant_features(g: np.ndarray) -> bool:
    """True when no feature varies across the stimuli: the centred Gram matrix ``H G H`` has (near) zero trace."""
    total = float(np.trace(g))
    spread = total - float(g.sum()) / g.shape[0]  # trace(H G H): the features' summed variance times N
    return spread <= 1e-12 * max(total, 0.0)


def _score_gram(feat, g, s, d, checked: _Checked, split_list, resamples: B.Resamples | None = None,
                samples: dict | None = None) -> dict[str, tuple[float, np.ndarray | None, str]]:
    idx = checked.rows
    g, s = g[np.ix_(idx, idx)], s[idx]
    undefined = (CONSTANT_RESPONSES if checked.constant is not None and checked.constant.all()
                 else CONSTANT_FEATURES if _constant_features(g) else "")
    if undefined:  # every metric is 0 / 0 here (and PLS would divide by a zero score)
        return {m: (float("nan"), None, undefined) for m in checked.metrics}
    layer = LayerView(feat, idx, g, s, d, checked.y, split_list,  # its ``z`` is computed once, for every regression
                      rsa=checked.rsa)
    out: dict[str, tuple[float, np.ndarray | None, str]] = {}
    for m in checked.metrics:
        scored = get_metric(m).score(layer)
        out[m] = (scored.raw, scored.per_neuroid, scored.note)
        if resamples is not None and samples is not None and scored.resample is not None:
            samples[m] = np.asarray(scored.resample(resamples), dtype=np.float64)  # from what the fit kept
    return out


def _ceiling_notes(checked: _Checked, ceilings: dict[str, float], requested: bool | None) -> dict[str, str]:
    """Why a metric has no usable ceiling (and hence no ceiled score), "" where it has one."""
    if checked.constant is not None and checked.constant.all():
        return {m: "" for m in ceilings}  # the row note already says why nothing is defined
    if checked.reps is None:
        return {m: "no ceiling: the responses have 1 repetition" for m in ceilings}
    if requested is False:
        return {m: "ceiling skipped (no_ceiling)" for m in ceilings}
    notes = {}
    for m, c in ceilings.items():
        if not np.isfinite(c):
            notes[m] = "ceiling undefined: no finite split-half consistency"
        elif c <= 0:
            notes[m] = f"ceiling {c:.3f} <= 0 (the repetitions disagree): no ceiled score"
        else:
            notes[m] = ""
    return notes


def neural_fit(
    features,
    responses,
    metrics: Sequence[str] | str = ("pls",),
    groups=None,
    splits: int = 10,
    seed: int = 0,
    ceiling: bool | None = None,
    strict: bool = False,
    rows: Sequence[int] | None = None,
    progress: bool = False,
    sources: Mapping[str, str] | None = None,
    bootstrap: int = 0,
    ceiling_convention: str = DEFAULT_CEILING_CONVENTION,
    bootstrap_over: str = "auto",
    rdm_method: str = "correlation",
    comparator: str = "spearman",
    subjects: Sequence | None = None,
    runs: Sequence | None = None,
) -> NeuralResult:
    """Score features against neural responses with Brain-Score's metrics.

    features: an (N, D) array (memmaps and HDF5 datasets are streamed) or a mapping layer name -> array.
        NaN or infinite features are an error (``DataError`` naming the layer, or ``sources[layer]``).
    responses: (N, K), or (R, N, K) with R repetitions (averaged for the metrics; split in halves for the
        ceiling). A NaN or infinite trial is left out of its stimulus' average (counted in
        ``missing_values`` / ``missing_trials``, with a warning); a neuroid with no finite repetition
        for some stimulus, or with any NaN when there are no repetitions, is dropped with a warning.
        ``strict``: any NaN or infinite response is an error.
    metrics: registered metric names (``registry.metric_names()``: ``pls``, ``ridge``, ``ridgecv``, ``rdm``,
        ``cka`` and any added with ``register_metric``); an unknown name is a ``ConfigError``.
    groups: one label per stimulus (object / category) to stratify the regression splits.
    splits: train/test draws for the regression metrics (90 % / 10 %, Brain-Score's default 10).
    seed: the splits' random state (Brain-Score uses 1); the result is the same for the same seed.
    ceiling: None = when there are repetitions; True = required (an error without them); False = never.
    rows: the feature row of each response row (default: the same order).
    sources: optional layer name -> how to name it in an error (the CLI passes the file).
    bootstrap: resamples of the stimuli (0: none). Each row then gets ``ci_low, ci_high`` (percentile 95 %) and
        ``sem`` of its raw score, and ``result.bootstrap`` holds every resampled score and ceiling
        (``bootstrap.py``: what is resampled and why no refit is needed); the resamples are seeded by ``seed``.
    bootstrap_over: ``stimuli``, ``subjects`` or ``both`` (rsatoolbox's bootstrap of stimuli and subjects together);
        ``auto``: ``both`` with ``subjects``, else ``stimuli``.
    ceiling_convention: ``r2_over_c`` (``r |r| / c``, Brain-Score since 2.3.13) or ``r_over_c_squared``
        (``(r / c) |r / c|``, Brain-Score to 2.3.12) for the regressions' ceiled score; a ceiled score above 1 is
        kept and noted, never clipped.

    rdm_method, comparator: the ``rdm`` metric's RDM of the responses (``euclidean``, ``correlation``,
        ``mahalanobis``, ``crossnobis``, ``poisson``) and RDM comparator (``spearman``, ``rho-a``, ``tau-a``,
        ``pearson``, ``cosine``, ``corr_cov``, ``cosine_cov``), as rsatoolbox computes them (``rsa.py``,
        ``rsa_scoring.py``); the defaults are the built-in ``rdm``.
    subjects: the subject (or session) of each neuroid: the ``rdm`` metric is then the mean over subjects of
        each subject's comparison, ceiled by rsatoolbox's leave-one-subject-out noise ceiling (upper bound;
        both bounds in ``options["rsa"]``).
    runs: the run (session) of each repetition; ``crossnobis`` cross-validates over them (at least 2).

    A score that cannot be computed is NaN and its row's ``note`` says why (constant features or
    responses, no repetitions, a ceiling <= 0 ...).
    """
    items = _feature_items(features)
    check_convention(ceiling_convention)
    checked = check_inputs(int(items[0][1].shape[0]), responses, metrics, groups, splits, ceiling, strict, rows,
                           rsa_options=RSAOptions(rdm_method, comparator), subjects=subjects, runs=runs)
    per_split = any(get_metric(m).per_split for m in checked.metrics)
    split_list = M.regression_splits(len(checked.rows), checked.groups, splits, seed) if per_split else []
    resamples = _draw_bootstrap(bootstrap, len(checked.rows), seed, checked.subjects, bootstrap_over)
    samples = _empty_samples(resamples, checked)
    ceilings, neuroid_ceiling, ceiling_notes = _fit_ceilings(checked, ceiling, seed, resamples, samples)
    rows_out, per_neuroid = _score_layers(items, checked, split_list, seed, sources, resamples, samples, ceilings,
                                          ceiling_notes, ceiling_convention, progress)
    return NeuralResult(rows=rows_out, per_neuroid=per_neuroid, ceilings=ceilings, neuroid_ceiling=neuroid_ceiling,
                        neuroids=[int(i) for i in checked.kept], n_stimuli=len(checked.rows),
                        n_repetitions=checked.n_repetitions, dropped_neuroids=checked.dropped,
                        options=_options(checked, splits, seed, neuroid_ceiling, ceiling_convention, samples)
                        | ({"rsa": checked.rsa.record()} if checked.rsa is not None else {}),
                        missing_values=checked.missing_values, missing_trials=checked.missing_trials,
                        constant_neuroids=int(checked.constant.sum()), bootstrap=samples)


def _fit_ceilings(checked: _Checked, ceiling, seed: int, resamples, samples) -> tuple[dict, object, dict]:
    """Each metric's ceiling (split halves of the repetitions, when there are some and a ceiling is wanted), the
    neuroid ceiling, the notes, and the ``rdm`` metric's ceiling under the fit's RSA options."""
    if checked.reps is not None and ceiling is not False and not checked.constant.all():
        with _small_blas(len(checked.rows)):
            ceilings, neuroid_ceiling = split_half_ceilings(checked.reps, checked.metrics, seed, resamples=resamples,
                                                            samples=samples.ceilings if samples else None)
    else:
        ceilings, neuroid_ceiling = {m: float("nan") for m in checked.metrics}, None
    ceiling_notes = _ceiling_notes(checked, ceilings, ceiling)
    _prepare_rsa(checked, ceilings, ceiling_notes, ceiling, seed)
    if samples is not None and checked.rsa is not None and not checked.rsa.builtin:  # another ceiling: held fixed
        samples.ceilings["rdm"] = np.full(samples.resamples, np.nan)
    return ceilings, neuroid_ceiling, ceiling_notes


def _score_layers(items, checked: _Checked, split_list, seed: int, sources, resamples, samples, ceilings: dict,
                  ceiling_notes: dict, ceiling_convention: str, progress: bool) -> tuple[list[dict], dict]:
    """One row per layer x metric (raw, ceiled, interval, notes) and each metric's per-neuroid scores."""
    from ...engine.progress import progress_bar

    rows_out: list[dict] = []
    per_neuroid: dict[tuple[str, str], np.ndarray] = {}
    for name, feat in progress_bar(items, desc="neural fit", enabled=progress, unit="layer"):
        resampled: dict[str, np.ndarray] = {}
        scored = score_layer(feat, checked, split_list, seed, name=name, source=(sources or {}).get(name),
                             resamples=resamples, samples=resampled)
        for m, (raw, per, note) in scored.items():
            rows_out.append(_score_row(name, m, raw, ceilings[m], [note, ceiling_notes[m]], ceiling_convention,
                                       resampled.get(m), samples))
            if per is not None:
                per_neuroid[(name, m)] = per
    return rows_out, per_neuroid


def _prepare_rsa(checked: _Checked, ceilings: dict, notes: dict, ceiling, seed: int) -> None:
    """The ``rdm`` metric's neural RDMs and ceiling under the fit's RSA options, once (``rsa_scoring``); with other
    options than the built-in's, its ceiling (subject bounds, or the split-half one under those options) replaces
    the split-half one computed with the others."""
    if "rdm" not in checked.metrics or (checked.constant is not None and checked.constant.all()):
        return
    checked.rsa = prepare_rsa(checked.y, checked.reps, checked.rsa_options, checked.subjects, checked.runs,
                              ceiling, seed)
    if not checked.rsa.builtin:
        ceilings["rdm"], notes["rdm"] = checked.rsa.ceiling, checked.rsa.ceiling_note


#: what ``neural_fit(bootstrap_over=)`` resamples
BOOTSTRAP_OVER = ("auto", "stimuli", "subjects", "both")


def _draw_bootstrap(resamples: int, n: int, seed: int, subjects: np.ndarray | None = None,
                    over: str = "auto") -> B.Resamples | None:
    """The resamples of ``neural_fit(bootstrap=resamples)`` (None for 0): of the stimuli, and of the subjects
    (in order of first appearance, as the RSA's subject RDMs) when asked; a bad request is a ConfigError."""
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < 0 or resamples == 1:
        raise ConfigError(f"bootstrap must be 0 (none) or at least 2 resamples, got {resamples!r}")
    if over not in BOOTSTRAP_OVER:
        raise ConfigError(f"bootstrap_over {over!r}: choose {', '.join(BOOTSTRAP_OVER)}")
    if over in ("subjects", "both") and subjects is None:
        raise ConfigError(f"--bootstrap_over {over} needs --subjects FILE (the subject of each neuroid) or responses "
                          "with a subject axis; use --bootstrap_over stimuli")
    if not resamples:
        return None
    over = ("both" if subjects is not None else "stimuli") if over == "auto" else over
    if over == "stimuli":
        return B.draw_resamples(n, int(resamples), seed)
    labels = list(dict.fromkeys(np.asarray(subjects).tolist()))
    index = {label: i for i, label in enumerate(labels)}
    rs = B.draw_resamples(n, int(resamples), seed, n_subjects=len(labels))
    return dataclasses.replace(rs, neuroid_subject=np.array([index[s] for s in np.asarray(subjects).tolist()]),
                               stimuli=rs.stimuli if over == "both" else np.ones_like(rs.stimuli),
                               stimuli_resampled=over == "both")


def _empty_samples(resamples: B.Resamples | None, checked: _Checked) -> B.ScoreSamples | None:
    if resamples is None:
        return None
    return B.ScoreSamples(resamples=resamples.count, seed=resamples.seed, n_stimuli=resamples.n_stimuli,
                          over=resamples.over, fingerprint=resamples.fingerprint(),
                          responses_fingerprint=B.array_fingerprint(checked.y, checked.subjects),
                          ceilings={m: np.full(resamples.count, np.nan) for m in checked.metrics},
                          n_subjects=None if resamples.subjects is None else resamples.subjects.shape[1])


#: the note of a score the bootstrap could not resample (a registered metric without ``MetricScore.resample``)
NO_BOOTSTRAP = "no bootstrap interval for this metric or comparator"


def _score_row(layer: str, metric: str, raw: float, ceiling: float, notes: list[str], convention: str,
               resampled: np.ndarray | None, samples: B.ScoreSamples | None) -> dict:
    """One row of ``NeuralResult.rows``: raw, ceiling, ceiled score (noted above 1), the bootstrap interval."""
    score = ceiled(raw, ceiling, metric, convention)
    if np.isfinite(score) and score > 1:
        notes = [*notes, ABOVE_CEILING]
    ci = {}  # without a bootstrap the row is as it always was (scores.csv leaves the interval's cells empty)
    if samples is not None:
        if resampled is None or not np.isfinite(raw):
            notes = [*notes, NO_BOOTSTRAP] if np.isfinite(raw) else notes
            resampled = np.full(samples.resamples, np.nan)
        samples.scores[(layer, metric)] = resampled
        iv = B.interval(resampled, samples.n_effective)
        ci = {"ci_low": iv.ci_low, "ci_high": iv.ci_high, "sem": iv.sem}
    return {"layer": layer, "metric": metric, "raw": float(raw), "ceiling": float(ceiling), "score": float(score),
            **ci, "note": "; ".join(n for n in notes if n)}


def _options(checked: _Checked, splits: int, seed: int, neuroid_ceiling, convention: str,
             samples: B.ScoreSamples | None) -> dict:
    """``NeuralResult.options`` (run.json): the fit's settings, the ceiling convention and the bootstrap's."""
    formula, matches = CEILING_CONVENTIONS[convention]
    boot = None
    if samples is not None:
        boot = {"resamples": samples.resamples, "seed": samples.seed, "over": samples.over,
                "fingerprint": samples.fingerprint, "ci": f"percentile {B.CI_LEVEL:.0%}",
                "sem": "bootstrap standard deviation x sqrt(n / (n - 1))",
                "regressions": B.REGRESSION_NOTE,
                "rdm": "pairs between copies of a stimulus dropped"}
    return {"metrics": list(checked.metrics), "splits": splits, "seed": seed, "train_size": M.TRAIN_SIZE,
            "stratified": checked.groups is not None, "pls_components": M.PLS_COMPONENTS,
            "ridge_alpha": M.RIDGE_ALPHA, "ridgecv_alphas": [M.RIDGECV_ALPHAS[0], M.RIDGECV_ALPHAS[-1],
                                                             len(M.RIDGECV_ALPHAS)],
            "ceiling_splits": CEILING_SPLITS if neuroid_ceiling is not None else 0,
            "ceiling_convention": {"name": convention, "regression": formula, "similarity": "raw / ceiling",
                                   "matches": matches},
            "bootstrap": boot}
