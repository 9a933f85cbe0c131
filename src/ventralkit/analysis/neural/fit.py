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

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ...errors import ConfigError, DataError
from . import metrics as M
from .io import response_array

CEILING_SPLITS = 10
#: below this many stimuli the N x N linear algebra runs on one BLAS thread (see ``_small_blas``)
SMALL_N = 3000


@dataclass
class NeuralResult:
    """Scores of every layer under every metric, with the ceiling and per-neuroid values.

    ``rows``: one dict per (layer, metric) with ``layer, metric, raw, ceiling, score`` (``ceiling`` and
    ``score`` NaN without repetitions). ``per_neuroid[(layer, metric)]``: regression metrics' held-out
    r per neuroid, mean over splits. ``neuroid_ceiling``: the split-half ceiling per neuroid (or None).
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
        """The scores as aligned text, one line per layer and metric."""
        width = max(len("layer"), *(len(r["layer"]) for r in self.rows))
        lines = [f"{'layer':<{width}}  {'metric':<7}  {'raw':>7}  {'ceiling':>7}  {'score':>7}"]
        fmt = lambda v: "     --" if not np.isfinite(v) else f"{v:7.3f}"  # noqa: E731
        for r in self.rows:
            lines.append(f"{r['layer']:<{width}}  {r['metric']:<7}  {fmt(r['raw'])}  {fmt(r['ceiling'])}  "
                         f"{fmt(r['score'])}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- input checks


@dataclass
class _Checked:
    y: np.ndarray  # (N, K) trial average, finite
    reps: np.ndarray | None  # (R, N, K) when R >= 2
    kept: np.ndarray  # original neuroid indices
    dropped: int
    groups: np.ndarray | None
    rows: np.ndarray
    metrics: tuple[str, ...]
    n_features: int  # stimuli in the feature arrays
    n_repetitions: int


def check_inputs(n_features: int, responses, metrics=("pls",), groups=None, splits: int = 10, ceiling=None,
                 strict: bool = False, rows=None, where: str = "responses") -> _Checked:
    """Validate everything ``neural_fit`` needs before any work; one-line ``VentralkitError`` otherwise.

    ``where`` names the input in messages (the CLI passes the file name).
    """
    metrics = tuple(metrics) if not isinstance(metrics, str) else (metrics,)
    if not metrics:
        raise ConfigError("no metric given; choose from " + ", ".join(M.METRICS))
    for m in metrics:
        if m not in M.METRICS:
            raise ConfigError(f"unknown metric {m!r}; choose from {', '.join(M.METRICS)}")
    metrics = tuple(dict.fromkeys(metrics))
    if isinstance(splits, bool) or not isinstance(splits, (int, np.integer)) or splits < 1:
        raise ConfigError(f"splits must be a positive integer, got {splits!r}")
    arr = response_array(responses, where)
    arr = arr.astype(np.float64)[None] if arr.ndim == 2 else arr.astype(np.float64)
    r, n, k = arr.shape
    if n == 0 or k == 0 or r == 0:
        raise DataError(f"{where}: responses are empty (shape {arr.shape})")
    finite = np.isfinite(arr).all(axis=(0, 1))
    dropped = int(k - finite.sum())
    if dropped:
        if strict:
            raise DataError(f"{where}: {dropped} of {k} neuroids have NaN or infinite responses; "
                            "clean them or drop --strict to skip them")
        if dropped == k:
            raise DataError(f"{where}: every neuroid has NaN or infinite responses")
        warnings.warn(f"{where}: dropped {dropped} of {k} neuroids with NaN or infinite responses", stacklevel=3)
    kept = np.nonzero(finite)[0]
    arr = arr[:, :, kept]
    if rows is None:
        if n != n_features:
            raise DataError(f"{where}: {n} stimuli (rows) but the features have {n_features}; give --stimuli "
                            "to match them by name, or responses for every image in images.txt")
        rows = np.arange(n)
    else:
        rows = np.asarray(rows, dtype=np.int64)
        if rows.shape != (n,) or (rows < 0).any() or (rows >= n_features).any():
            raise DataError(f"{where}: {n} stimuli but {len(rows)} feature rows were given to match them")
    if ceiling and r < 2:
        raise DataError(f"{where}: a ceiling needs repeated presentations (repetitions, stimuli, neuroids) "
                        "with at least 2 repetitions; this has 1 (drop --ceiling to report raw scores)")
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise DataError(f"groups: {len(groups)} labels for {n} stimuli; give one label per stimulus")
    if any(m in M.REGRESSION_METRICS for m in metrics):
        held = M.test_size(n)
        if held < M.MIN_TEST_STIMULI:
            need = math.ceil(M.MIN_TEST_STIMULI / (1 - M.TRAIN_SIZE))
            raise DataError(f"{where}: {n} stimuli leave {held} per held-out 10% split; regression metrics need "
                            f"at least {M.MIN_TEST_STIMULI} (about {need} stimuli); use --metrics rdm cka")
        if groups is not None:
            labels, counts = np.unique(groups, return_counts=True)
            if counts.min() < 2:
                raise DataError(f"groups: label {labels[counts.argmin()]!r} has one stimulus; stratified splits "
                                "need at least 2 per label")
            if len(labels) > held or len(labels) > n - held:
                raise DataError(f"groups: {len(labels)} labels do not fit in a held-out split of {held} stimuli; "
                                "use coarser labels or no --groups")
    if n < 4:
        raise DataError(f"{where}: {n} stimuli; the metrics need at least 4")
    return _Checked(y=arr.mean(axis=0), reps=arr if r >= 2 else None, kept=kept, dropped=dropped, groups=groups,
                    rows=rows, metrics=metrics, n_features=n_features, n_repetitions=r)


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
                        splits: int = CEILING_SPLITS) -> tuple[dict[str, float], np.ndarray]:
    """Spearman-Brown corrected split-half consistency per metric, and per neuroid (Pearson)."""
    from sklearn.model_selection import ShuffleSplit

    cv = ShuffleSplit(n_splits=splits, train_size=0.5, test_size=None, random_state=seed)
    per_split: dict[str, list[float]] = {m: [] for m in metrics}
    neuroid = []
    for a, b in cv.split(np.zeros(reps.shape[0])):
        h1, h2 = reps[a].mean(axis=0), reps[b].mean(axis=0)
        r = M.spearman_brown(M.pearson_columns(h1, h2))
        neuroid.append(r)
        for m in metrics:
            if m in M.REGRESSION_METRICS:
                v = np.nanmedian(r) if np.isfinite(r).any() else np.nan
            elif m == "rdm":
                v = M.spearman_brown(M.compare_rdms(M.rdm(h1), M.rdm(h2)))
            else:
                v = M.spearman_brown(M.cka_from_grams(h1 @ h1.T, h2 @ h2.T))
            per_split[m].append(float(v))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return ({m: float(np.nanmean(v)) for m, v in per_split.items()}, np.nanmean(np.array(neuroid), axis=0))


def ceiled(raw: float, ceiling: float, metric: str) -> float:
    """The ceiled score: explained variance ``r |r| / ceiling`` for regressions, ``raw / ceiling`` otherwise.

    The split-half ceiling is a reliability, which bounds r^2, not r; Brain-Score 2's
    ``NeuralBenchmark`` ceils regression scores as ``r^2 / ceiling`` (``explained_variance`` in
    ``benchmark_helpers/neural_common.py``). ``r |r|`` keeps the sign of a negative r, which r^2 would hide.
    RDM and CKA scores are ceiled by division, as ``ceil_score`` does.
    """
    if not (np.isfinite(ceiling) and ceiling > 0 and np.isfinite(raw)):
        return float("nan")
    if metric in M.REGRESSION_METRICS:
        return float(raw * abs(raw) / ceiling)
    return float(raw / ceiling)


# --------------------------------------------------------------------------- the fit


def score_layer(feat, checked: _Checked, split_list, seed: int = 0) -> dict[str, tuple[float, np.ndarray | None]]:
    """Raw score (and per-neuroid r for regression metrics) of one layer under each metric."""
    g, s, d = M.gram(feat)
    with _small_blas(len(checked.rows)):
        return _score_gram(feat, g, s, d, checked, split_list)


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


def _score_gram(feat, g, s, d, checked: _Checked, split_list) -> dict[str, tuple[float, np.ndarray | None]]:
    idx = checked.rows
    g, s = g[np.ix_(idx, idx)], s[idx]
    out: dict[str, tuple[float, np.ndarray | None]] = {}
    y = checked.y
    z = None
    for m in checked.metrics:
        if m in M.REGRESSION_METRICS:
            if z is None:  # D <= N: the features themselves; else an N x N factor of their Gram matrix
                z = np.asarray(feat[:], dtype=np.float64)[idx] if d <= len(idx) else M.gram_factor(g)
            per = M.regression_scores(z, y, m, split_list)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                out[m] = (M.aggregate_splits(per), np.nanmean(per, axis=0))
        elif m == "rdm":
            out[m] = (M.compare_rdms(M.rdm_from_gram(g, s, d), M.rdm(y)), None)
        else:
            out[m] = (M.cka_from_grams(g, y @ y.T), None)
    return out


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
) -> NeuralResult:
    """Score features against neural responses with Brain-Score's metrics.

    features: an (N, D) array (memmaps and HDF5 datasets are streamed) or a mapping layer name -> array.
    responses: (N, K), or (R, N, K) with R repetitions (averaged for the metrics; split in halves for the
        ceiling). Neuroids with NaN or infinite values are dropped with a warning (``strict``: an error).
    metrics: any of ``pls``, ``ridge``, ``ridgecv``, ``rdm``, ``cka``.
    groups: one label per stimulus (object / category) to stratify the regression splits.
    splits: train/test draws for the regression metrics (90 % / 10 %, Brain-Score's default 10).
    seed: the splits' random state (Brain-Score uses 1); the result is the same for the same seed.
    ceiling: None = when there are repetitions; True = required (an error without them); False = never.
    rows: the feature row of each response row (default: the same order).
    """
    items = _feature_items(features)
    checked = check_inputs(int(items[0][1].shape[0]), responses, metrics, groups, splits, ceiling, strict, rows)
    regression = [m for m in checked.metrics if m in M.REGRESSION_METRICS]
    split_list = M.regression_splits(len(checked.rows), checked.groups, splits, seed) if regression else []
    if checked.reps is not None and ceiling is not False:
        with _small_blas(len(checked.rows)):
            ceilings, neuroid_ceiling = split_half_ceilings(checked.reps, checked.metrics, seed)
    else:
        ceilings, neuroid_ceiling = {m: float("nan") for m in checked.metrics}, None

    from ...engine.progress import progress_bar

    rows_out: list[dict] = []
    per_neuroid: dict[tuple[str, str], np.ndarray] = {}
    for name, feat in progress_bar(items, desc="neural fit", enabled=progress, unit="layer"):
        for m, (raw, per) in score_layer(feat, checked, split_list, seed).items():
            score = ceiled(raw, ceilings[m], m)
            rows_out.append({"layer": name, "metric": m, "raw": float(raw), "ceiling": float(ceilings[m]),
                             "score": float(score)})
            if per is not None:
                per_neuroid[(name, m)] = per
    options = {"metrics": list(checked.metrics), "splits": splits, "seed": seed, "train_size": M.TRAIN_SIZE,
               "stratified": checked.groups is not None, "pls_components": M.PLS_COMPONENTS,
               "ridge_alpha": M.RIDGE_ALPHA, "ridgecv_alphas": [M.RIDGECV_ALPHAS[0], M.RIDGECV_ALPHAS[-1],
                                                                len(M.RIDGECV_ALPHAS)],
               "ceiling_splits": CEILING_SPLITS if neuroid_ceiling is not None else 0}
    return NeuralResult(rows=rows_out, per_neuroid=per_neuroid, ceilings=ceilings, neuroid_ceiling=neuroid_ceiling,
                        neuroids=[int(i) for i in checked.kept], n_stimuli=len(checked.rows),
                        n_repetitions=checked.n_repetitions,
                        dropped_neuroids=checked.dropped, options=options)
