"""The neural metrics, one entry each: what ``neural_fit``, ``ventralkit neural --metrics``, the table, the
result files and the figure know about a metric comes from its entry here.

Adding a metric is one ``register_metric(NeuralMetric(...))`` call; nothing else names it. A name that is
not registered is an error everywhere (``get_metric``), so no metric is ever computed as another one.

    register_metric(NeuralMetric("ridge10", kind="regression", score=regression_score(lambda n: Ridge(alpha=10)),
                                 ceiling=neuroid_median_ceiling, label="ridge a=10 (Pearson r)"))
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError
from . import bootstrap as B
from . import metrics as M

#: ``regression``: fitted on each train split and scored per neuroid on the held-out stimuli (Pearson r);
#: ``similarity``: one comparison of the whole population, no fit
KINDS = ("regression", "similarity")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
#: how a regression's raw r is ceiled (``NeuralMetric.ceiled``), and the Brain-Score releases that do the same:
#: brain-score/vision PR #2169 (merged 2026-01-13, first in brainscore-vision 2.3.13) changed ``explained_variance``
#: from (r / c)^2 (PR #151, 2019-07-25, to 2.3.12) to r^2 / c
CEILING_CONVENTIONS = {
    "r2_over_c": ("r |r| / ceiling", "brainscore-vision >= 2.3.13 (brain-score/vision PR #2169)"),
    "r_over_c_squared": ("(r / ceiling) |r / ceiling|", "brainscore-vision 2.3.12 and earlier, back to "
                                                         "brain-score PR #151 (2019)"),
}
DEFAULT_CEILING_CONVENTION = "r2_over_c"


@dataclass(frozen=True)
class MetricScore:
    """One metric on one layer: the raw score, the per-neuroid values (or None) and why ``raw`` is NaN ("" if not)."""

    raw: float
    per_neuroid: np.ndarray | None = None
    note: str = ""
    #: the score under bootstrap resamples, ``resample(bootstrap.Resamples) -> (B,)``, from what the score kept
    #: (held-out predictions, the two RDMs, the two Gram matrices); None: this score has no bootstrap
    resample: Callable | None = None


class LayerView:
    """What a score function sees of one layer, restricted to the stimuli that have responses.

    ``g`` (N x N Gram matrix ``X X^T``), ``s`` (row sums) and ``d`` (feature count) describe the features;
    ``y`` is the trial-averaged responses (N x K); ``splits`` the train/test index pairs (empty unless a
    regression metric was asked for). ``z`` is computed on first use and shared by the metrics of the layer.
    """

    def __init__(self, feat, rows: np.ndarray, g: np.ndarray, s: np.ndarray, d: int, y: np.ndarray, splits,
                 rsa=None):
        self.feat, self.rows, self.g, self.s, self.d, self.y, self.splits = feat, rows, g, s, d, y, splits
        self.rsa = rsa  # the ``rdm`` metric's RSA options and neural RDMs (``rsa_scoring.RSAContext``) or None

    @functools.cached_property
    def z(self) -> np.ndarray:
        """Features with the same Gram matrix: the features themselves when D <= N, else an N x N factor."""
        if self.d <= len(self.rows):
            return np.asarray(self.feat[:], dtype=np.float64)[self.rows]
        return M.gram_factor(self.g)


@dataclass(frozen=True)
class Halves:
    """One split-half draw of the repetitions, for a ceiling: each half averaged over its finite trials
    (NaN where a half has none), and the Spearman-Brown corrected r per neuroid between the halves."""

    first: np.ndarray
    second: np.ndarray
    neuroid_r: np.ndarray


@dataclass(frozen=True)
class NeuralMetric:
    """A metric of ``neural_fit``.

    name: the word after ``--metrics`` and in the ``metric`` column of scores.csv.
    kind: ``regression`` (needs held-out splits: enough stimuli, honours ``groups``/``splits``; ceiled as
        explained variance ``r |r| / ceiling``) or ``similarity`` (ceiled as ``raw / ceiling``).
    score: ``score(LayerView) -> MetricScore``.
    ceiling: ``ceiling(Halves) -> float``, the responses' consistency with themselves under this metric for
        one split-half draw, Spearman-Brown corrected; ``neural_fit`` averages it over the draws.
    label: the metric's name in the figure's legend.
    ceiling_resample: optional ``ceiling_resample(Halves, bootstrap.Resamples) -> (B,)``, the ceiling of one draw
        under the bootstrap's resamples (None: the ceiling is held fixed in the bootstrap).
    """

    name: str
    kind: str
    score: Callable[[LayerView], MetricScore]
    ceiling: Callable[[Halves], float]
    label: str
    ceiling_resample: Callable | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ConfigError(f"metric name {self.name!r}: use a letter followed by letters, digits, _ or -")
        if self.kind not in KINDS:
            raise ConfigError(f"metric {self.name}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        for field in ("score", "ceiling"):
            if not callable(getattr(self, field)):
                raise ConfigError(f"metric {self.name}: {field} must be a function")
        if not isinstance(self.label, str) or not self.label:
            raise ConfigError(f"metric {self.name}: give a label for the figure")

    @property
    def per_split(self) -> bool:
        """Fitted on train/test splits (the stimuli must leave enough held out; ``groups`` stratify them)."""
        return self.kind == "regression"

    def ceiled(self, raw: float, ceiling: float, convention: str = DEFAULT_CEILING_CONVENTION) -> float:
        """The ceiled score: explained variance ``r |r| / ceiling`` for regressions, ``raw / ceiling`` otherwise.

        ``convention="r_over_c_squared"``: the regressions' earlier Brain-Score rule ``(r / c) |r / c|``
        (``CEILING_CONVENTIONS``). Never clipped: a score above 1 is reported as it is.

        The split-half ceiling is a reliability, which bounds r^2, not r; Brain-Score 2's
        ``NeuralBenchmark`` ceils regression scores as ``r^2 / ceiling`` (``explained_variance`` in
        ``benchmark_helpers/neural_common.py``). ``r |r|`` keeps the sign of a negative r, which r^2 would
        hide. RDM and CKA scores are ceiled by division, as ``ceil_score`` does. NaN without a positive ceiling.
        """
        if not (np.isfinite(ceiling) and ceiling > 0 and np.isfinite(raw)):
            return float("nan")
        if self.kind == "regression":
            if check_convention(convention) == "r_over_c_squared":
                return float((raw / ceiling) * abs(raw / ceiling))
            return float(raw * abs(raw) / ceiling)
        return float(raw / ceiling)

    def raw_ceiling(self, ceiling: float, convention: str = DEFAULT_CEILING_CONVENTION) -> float:
        """The raw score whose ceiled score is 1: ``sqrt(ceiling)`` for a regression under ``r2_over_c`` (the
        reliability bounds r^2), the ceiling itself otherwise; where a model's raw score meets the noise ceiling."""
        if self.kind == "regression" and check_convention(convention) == "r2_over_c":
            return float(np.sqrt(ceiling)) if np.isfinite(ceiling) and ceiling > 0 else float("nan")
        return float(ceiling)


def check_convention(convention: str) -> str:
    """``convention`` if it is a name of ``CEILING_CONVENTIONS``; a ``ConfigError`` listing them otherwise."""
    if convention not in CEILING_CONVENTIONS:
        raise ConfigError(f"ceiling convention {convention!r}: choose {' or '.join(CEILING_CONVENTIONS)}")
    return convention


# --------------------------------------------------------------------------- the registry

_REGISTRY: dict[str, NeuralMetric] = {}


def register_metric(metric: NeuralMetric, *, replace: bool = False) -> NeuralMetric:
    """Add ``metric`` (after the ones registered before it: the order of ``--metrics`` choices)."""
    if not isinstance(metric, NeuralMetric):
        raise ConfigError(f"register_metric takes a NeuralMetric, got {type(metric).__name__}")
    if metric.name in _REGISTRY and not replace:
        raise ConfigError(f"metric {metric.name!r} is already registered; pass replace=True to redefine it")
    _REGISTRY[metric.name] = metric
    return metric


def unregister_metric(name: str) -> NeuralMetric:
    """Remove a registered metric (tests, or a plug-in that redefines one); returns its entry."""
    entry = get_metric(name)
    del _REGISTRY[name]
    return entry


def metric_names(kind: str | None = None) -> tuple[str, ...]:
    """The registered names in registration order, all or those of one ``kind``."""
    return tuple(m.name for m in _REGISTRY.values() if kind is None or m.kind == kind)


def get_metric(name: str) -> NeuralMetric:
    """The entry of ``name``; an unknown name is a ``ConfigError`` listing the registered ones."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown metric {name!r}; choose from {', '.join(metric_names())}") from None


def resolve_metrics(metrics: Iterable[str] | str) -> tuple[str, ...]:
    """The requested names, each checked and each once (in the order given)."""
    metrics = tuple(metrics) if not isinstance(metrics, str) else (metrics,)
    if not metrics:
        raise ConfigError("no metric given; choose from " + ", ".join(metric_names()))
    for m in metrics:
        get_metric(m)
    return tuple(dict.fromkeys(metrics))


# --------------------------------------------------------------------------- score and ceiling functions

NO_FINITE_R = "no finite held-out r: the predictions are constant in every split"


def regression_score(make_regressor: Callable[[int], object]) -> Callable[[LayerView], MetricScore]:
    """The score of a regression: ``make_regressor(n_features)`` (any ``fit``/``predict`` estimator) fitted on each
    train split, Pearson r per neuroid on the held-out stimuli, summarised as Brain-Score does (median over
    neuroids per split, mean over splits); the per-neuroid values are the mean r over splits."""

    def score(layer: LayerView) -> MetricScore:
        held: list = []  # each split's held-out predictions, kept for the bootstrap (no refit per resample)
        per = M.regression_scores(layer.z, layer.y, make_regressor, layer.splits, keep=held)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            raw = M.aggregate_splits(per)
            per_neuroid = np.nanmean(per, axis=0)
        resample = B.regression_resampler([B.HeldOut(t, p) for t, p in held], layer.y) if np.isfinite(raw) else None
        return MetricScore(raw, per_neuroid, "" if np.isfinite(raw) else NO_FINITE_R, resample)

    return score


def rdm_score(layer: LayerView) -> MetricScore:
    """Spearman's rho between the model's and the responses' RDMs (1 - Pearson r between stimuli); under other RSA
    options (RDM method, comparator, subjects: ``layer.rsa``) rsatoolbox's definitions (``rsa_scoring.rsa_score``)."""
    if layer.rsa is not None and not layer.rsa.builtin:
        from .rsa_scoring import rsa_score

        raw, note, resample = rsa_score(layer)
        return MetricScore(raw, None, note, resample)
    model_rdm, neural_rdm = M.rdm_from_gram(layer.g, layer.s, layer.d), M.rdm(layer.y)
    raw = M.compare_rdms(model_rdm, neural_rdm)
    if not np.isfinite(raw):
        return MetricScore(raw, None, _rdm_note(model_rdm, neural_rdm))
    return MetricScore(raw, None, "", B.PairResampler(B.upper(model_rdm), B.upper(neural_rdm), len(model_rdm)))


def cka_score(layer: LayerView) -> MetricScore:
    """Linear CKA (unbiased HSIC) between the features' and the responses' Gram matrices."""
    k, l = layer.g, layer.y @ layer.y.T  # noqa: E741
    return MetricScore(M.cka_from_grams(k, l), resample=B.gram_resampler(k, l))


def _rdm_note(model_rdm: np.ndarray, neural_rdm: np.ndarray) -> str:
    """Why an RDM comparison is NaN: stimuli whose correlation distance is undefined (no spread to correlate)."""
    flat_model = int((~np.isfinite(model_rdm)).all(axis=1).sum())
    flat_neural = int((~np.isfinite(neural_rdm)).all(axis=1).sum())
    if neural_rdm.shape[0] and flat_neural == neural_rdm.shape[0]:
        return "rdm needs responses that differ between neuroids (a single neuroid has no correlation distance)"
    parts = []
    if flat_model:
        parts.append(f"{flat_model} stimuli have the same value on every feature")
    if flat_neural:
        parts.append(f"{flat_neural} stimuli have the same response on every neuroid")
    if parts:
        return "; ".join(parts) + ": their correlation distance is undefined"
    return "the RDMs cannot be compared (one of them is constant)"


def neuroid_median_ceiling(halves: Halves) -> float:
    """The median over neuroids of the per-neuroid split-half r (Brain-Score's ``internal_consistency``)."""
    r = halves.neuroid_r
    return np.nanmedian(r) if np.isfinite(r).any() else np.nan


def rdm_ceiling(halves: Halves) -> float:
    """The RDMs of the two halves compared as the model's is, Spearman-Brown corrected."""
    return on_complete_rows(halves, lambda a, b: M.spearman_brown(M.compare_rdms(M.rdm(a), M.rdm(b))))


def cka_ceiling(halves: Halves) -> float:
    """The CKA of the two halves, Spearman-Brown corrected."""
    return on_complete_rows(halves, lambda a, b: M.spearman_brown(M.cka_from_grams(a @ a.T, b @ b.T)))


def neuroid_median_ceiling_resample(halves: Halves, rs: B.Resamples) -> np.ndarray:
    """``neuroid_median_ceiling`` under the resamples (NaN when a half misses trials: the ceiling is then held fixed)."""
    if not (np.isfinite(halves.first).all() and np.isfinite(halves.second).all()):
        return np.full(rs.count, np.nan)
    r = M.spearman_brown(B.weighted_pearson(rs.stimuli, halves.first, halves.second))
    with np.errstate(all="ignore"):
        return B.neuroid_median(r, rs)


def rdm_ceiling_resample(halves: Halves, rs: B.Resamples) -> np.ndarray:
    """``rdm_ceiling`` under the resamples (the pairs between copies of a stimulus dropped)."""
    def compare(a, b, w):
        return M.spearman_brown(B.PairResampler(B.upper(M.rdm(a)), B.upper(M.rdm(b)), len(a))(w))
    return _resampled_on_complete_rows(halves, rs, compare)


def cka_ceiling_resample(halves: Halves, rs: B.Resamples) -> np.ndarray:
    """``cka_ceiling`` under the resamples."""
    return _resampled_on_complete_rows(halves, rs, lambda a, b, w: M.spearman_brown(B.gram_resampler(a @ a.T,
                                                                                                       b @ b.T)(w)))


def _resampled_on_complete_rows(halves: Halves, rs: B.Resamples, compare) -> np.ndarray:
    """``compare(first, second, weights)`` on the rows finite in both halves, as ``on_complete_rows``."""
    h1, h2 = halves.first, halves.second
    keep = np.isfinite(h1).all(axis=1) & np.isfinite(h2).all(axis=1)
    if keep.sum() < 4:
        return np.full(rs.count, np.nan)
    return compare(h1[keep], h2[keep], rs.stimuli[:, keep])


def on_complete_rows(halves: Halves, compare) -> float:
    """``compare(first, second)`` on the stimuli (rows) finite in both halves; NaN when fewer than 4 are."""
    h1, h2 = halves.first, halves.second
    keep = np.isfinite(h1).all(axis=1) & np.isfinite(h2).all(axis=1)
    if keep.all():
        return compare(h1, h2)
    if keep.sum() < 4:
        return float("nan")
    return compare(h1[keep], h2[keep])


for _entry in (
    NeuralMetric("pls", "regression", regression_score(M.make_pls), neuroid_median_ceiling, "PLS (Pearson r)",
                 neuroid_median_ceiling_resample),
    NeuralMetric("ridge", "regression", regression_score(M.make_ridge), neuroid_median_ceiling, "ridge (Pearson r)",
                 neuroid_median_ceiling_resample),
    NeuralMetric("ridgecv", "regression", regression_score(M.make_ridgecv), neuroid_median_ceiling,
                 "ridge CV (Pearson r)", neuroid_median_ceiling_resample),
    NeuralMetric("rdm", "similarity", rdm_score, rdm_ceiling, "RDM (Spearman rho)", rdm_ceiling_resample),
    NeuralMetric("cka", "similarity", cka_score, cka_ceiling, "CKA (unbiased)", cka_ceiling_resample),
):
    register_metric(_entry)
del _entry
