"""The ``rdm`` metric of ``neural_fit`` with rsatoolbox's RDM methods, comparators and subject noise ceilings.

``neural_fit(..., rdm_method=, comparator=, subjects=, runs=)`` prepares the neural side once
(``prepare_rsa``): one RDM per subject (or one for the population), and its ceiling. Each layer then
only builds its model RDM and compares it (``rsa_score``). With the defaults (``correlation``,
``spearman``, one population) the built-in ``rdm`` computation runs unchanged, so its numbers stay.

* **Subjects** (a label per neuroid): each subject's RDM from its own neuroids; the score is the mean
  over subjects of the comparison (rsatoolbox's ``eval_fixed``); the ceiling is rsatoolbox's
  leave-one-subject-out lower and upper bound (``ceilings.subject_noise_ceiling``). The ``ceiling``
  column holds the upper bound, so a model at the noise ceiling scores at most about 1; both bounds are
  recorded in ``run.json`` (``options.rsa``).
* **One population**: the split-half ceiling of the built-in metric, with the chosen method and
  comparator (Spearman-Brown corrected, mean over 10 draws); for ``crossnobis`` the halves split the
  runs, so it needs 4 runs.
* **The model's RDM**: the same method, except that a model has no trial noise: ``mahalanobis`` and
  ``crossnobis`` (whose expectation is the squared distance of the noise-free patterns) compare the
  neural RDM with the model's ``euclidean`` one.
* **Noise precision** (``mahalanobis``, ``crossnobis``): estimated from the trials of each subject
  (``rsa.noise_precision``, rsatoolbox's ``shrinkage_diag``); needs repetitions without missing trials.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from ...errors import ConfigError, DataError
from . import metrics as M
from . import rsa
from .ceilings import subject_noise_ceiling
from .io import numeric_array

DEFAULT_METHOD, DEFAULT_COMPARATOR = "correlation", "spearman"
CEILING_SPLITS = 10


@dataclass(frozen=True)
class RSAOptions:
    """The RDM method of the responses and the comparator of the ``rdm`` metric."""

    method: str = DEFAULT_METHOD
    comparator: str = DEFAULT_COMPARATOR

    def __post_init__(self):
        rsa.check_method(self.method)
        rsa.check_comparator(self.comparator)

    @property
    def model_method(self) -> str:
        """The model's RDM method: ``euclidean`` for the noise-normalised methods (a model has no trial noise)."""
        return "euclidean" if self.method in rsa.NOISE_METHODS else self.method


@dataclass
class RSAContext:
    """The neural side of the ``rdm`` metric, computed once per fit.

    ``builtin``: the defaults on one population; the registry's own ``rdm`` computation then runs.
    ``data_rdms``: (subjects, P) condensed RDMs (one row for one population).
    """

    options: RSAOptions
    builtin: bool
    subjects: tuple[str, ...] = ()
    data_rdms: np.ndarray | None = None
    lower: float = math.nan
    upper: float = math.nan
    ceiling: float = math.nan
    ceiling_note: str = ""
    ceiling_kind: str = "split-half"
    extra: dict = field(default_factory=dict)

    def record(self) -> dict:
        """What run.json says about the RSA: methods, subjects, runs, the ceiling and its bounds."""
        clean = (lambda v: None if not math.isfinite(v) else float(v))  # noqa: E731
        return {"rdm_method": self.options.method, "model_rdm_method": self.options.model_method,
                "comparator": self.options.comparator, "subjects": list(self.subjects),
                "ceiling_kind": self.ceiling_kind, "ceiling_lower": clean(self.lower),
                "ceiling_upper": clean(self.upper), **self.extra}


# --------------------------------------------------------------------------- input checks


def check_rsa_inputs(options: RSAOptions, n_repetitions: int, n_neuroids: int, subjects=None, runs=None,
                     ceiling=None, missing: bool = False, where: str = "responses"):
    """``(subjects, runs)`` as arrays (or None), after every check the RSA options need; one line otherwise.

    subjects: one label per neuroid (column of the responses, before any is dropped).
    runs: one label per repetition (the first axis of (repetitions, stimuli, neuroids) responses).
    """
    if subjects is not None:
        subjects = np.asarray(subjects).astype(str)
        if subjects.shape != (n_neuroids,):
            raise DataError(f"--subjects: {subjects.size} labels for {n_neuroids} neuroids (columns of {where}); "
                            "give one subject label per neuroid, one per line")
        if len(np.unique(subjects)) < 2 and ceiling is not False:
            raise DataError(f"--subjects: every neuroid belongs to one subject ({subjects[0]}); a subject noise "
                            "ceiling needs at least 2 (drop --subjects for the split-half ceiling of one "
                            "population, or add --no_ceiling)")
    if runs is not None:
        runs = np.asarray(runs).astype(str)
        if runs.shape != (n_repetitions,):
            raise DataError(f"--runs: {runs.size} labels for {n_repetitions} repetitions (the first axis of "
                            f"{where}); give the run (session) of each repetition, one per line")
    if options.method in rsa.NOISE_METHODS:
        _check_noise_inputs(options.method, n_repetitions, runs, missing, where)
    return subjects, runs


def _check_noise_inputs(method: str, n_repetitions: int, runs, missing: bool, where: str) -> None:
    if n_repetitions < 2:
        raise DataError(f"{where}: --rdm_method {method} needs repeated trials (repetitions, stimuli, neuroids) "
                        "to estimate the noise; these responses have 1 repetition")
    if missing:
        raise DataError(f"{where}: --rdm_method {method} needs every trial; these responses hold NaN or infinite "
                        "values (fill them or use --rdm_method euclidean / correlation)")
    if method != "crossnobis":
        return
    if runs is None:
        raise ConfigError("--rdm_method crossnobis needs --runs FILE: the run (session) of each repetition, one "
                          f"label per line ({n_repetitions} lines; if every repetition is its own run, number "
                          "them 1 to R)")
    if len(np.unique(runs)) < 2:
        raise DataError(f"--runs: all {n_repetitions} repetitions are in one run; crossnobis cross-validates "
                        "over runs and needs at least 2")


# --------------------------------------------------------------------------- the neural side


def prepare_rsa(y: np.ndarray, reps: np.ndarray | None, options: RSAOptions, subjects=None, runs=None,
                ceiling=None, seed: int = 0) -> RSAContext:
    """The neural RDMs and the ceiling of the ``rdm`` metric (inputs already checked by ``check_rsa_inputs``).

    y: trial-averaged responses (stimuli, kept neuroids); reps: (repetitions, stimuli, kept neuroids) or
    None; subjects: the label of each kept neuroid, or None for one population.
    """
    if subjects is None and options == RSAOptions():
        return RSAContext(options, builtin=True)
    groups = _subject_columns(subjects, y.shape[1])
    data = np.array([data_rdm(y[:, cols], None if reps is None else reps[:, :, cols], options, runs)
                     for _, cols in groups])
    ctx = RSAContext(options, builtin=False, subjects=tuple(label for label, _ in groups), data_rdms=data)
    if runs is not None:
        ctx.extra["runs"] = sorted(set(runs.tolist()))
    if ceiling is False:
        ctx.ceiling_note, ctx.ceiling_kind = "ceiling skipped (no_ceiling)", "none"
    elif len(groups) >= 2:
        ctx.lower, ctx.upper = subject_noise_ceiling(data, options.comparator)
        ctx.ceiling, ctx.ceiling_kind = ctx.upper, "subjects (leave-one-subject-out; ceiling = upper bound)"
        if not ctx.upper > 0:
            ctx.ceiling_note = f"subject noise ceiling {ctx.upper:.3f} <= 0: no ceiled score"
    elif reps is not None:
        ctx.ceiling, ctx.ceiling_note = split_half_rdm_ceiling(reps, runs, options, seed)
    else:
        ctx.ceiling_note = "no ceiling: the responses have 1 repetition"
    return ctx


def _subject_columns(subjects, k: int) -> list[tuple[str, np.ndarray]]:
    """(label, neuroid columns) per subject in order of first appearance; one group without subjects."""
    if subjects is None:
        return [("all", np.arange(k))]
    labels = list(dict.fromkeys(subjects.tolist()))
    return [(label, np.nonzero(subjects == label)[0]) for label in labels]


def data_rdm(y: np.ndarray, reps: np.ndarray | None, options: RSAOptions, runs=None) -> np.ndarray:
    """One population's condensed RDM under ``options.method`` (its noise precision from its own trials)."""
    method = options.method
    if method == "crossnobis":
        return rsa.rdm(reps, "crossnobis", runs=runs, noise=rsa.noise_precision(reps))
    if method == "mahalanobis":
        return rsa.rdm(y, "mahalanobis", noise=rsa.noise_precision(reps))
    if method == "correlation":  # the built-in's arithmetic (from the Gram matrix), NaN for a flat stimulus
        return rsa.condensed(M.rdm(y))
    return rsa.rdm(y, method)


def split_half_rdm_ceiling(reps: np.ndarray, runs, options: RSAOptions, seed: int = 0,
                           splits: int = CEILING_SPLITS) -> tuple[float, str]:
    """The split-half RDM consistency under ``options``, Spearman-Brown corrected, mean over ``splits`` draws.

    The draws are the built-in ceiling's (``ShuffleSplit(train_size=0.5, random_state=seed)``) over the
    repetitions, or over the runs for ``crossnobis`` (each half cross-validated over its own runs).
    Returns ``(ceiling, note)``; the note says why it is NaN.
    """
    from sklearn.model_selection import ShuffleSplit

    units = np.asarray(runs) if options.method == "crossnobis" else np.arange(reps.shape[0]).astype(str)
    labels = np.unique(units)
    need = 4 if options.method == "crossnobis" else 2
    if len(labels) < need:
        return math.nan, f"no split-half ceiling: crossnobis halves need 2 runs each ({len(labels)} runs)"
    precision = rsa.noise_precision(reps) if options.method in rsa.NOISE_METHODS else None
    cv = ShuffleSplit(n_splits=splits, train_size=0.5, test_size=None, random_state=seed)
    values = []
    for a, b in cv.split(np.zeros(len(labels))):
        halves = [_half_rdm(reps[np.isin(units, labels[h])], units[np.isin(units, labels[h])], options, precision)
                  for h in (a, b)]
        values.append(float(M.spearman_brown(rsa.compare(halves[0], halves[1], options.comparator))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
    if not math.isfinite(value):
        return value, "ceiling undefined: no finite split-half consistency"
    return value, "" if value > 0 else f"ceiling {value:.3f} <= 0 (the repetitions disagree): no ceiled score"


def _half_rdm(trials: np.ndarray, units: np.ndarray, options: RSAOptions, precision) -> np.ndarray:
    if options.method == "crossnobis":
        return rsa.rdm(trials, "crossnobis", runs=units, noise=precision)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a stimulus without a finite trial in this half: NaN
        y = np.nanmean(trials, axis=0)
    rows_ok = np.isfinite(y).all(axis=1)
    if options.method == "mahalanobis":
        out = rsa.rdm(np.where(rows_ok[:, None], y, 0.0), "mahalanobis", noise=precision)
    elif options.method == "correlation":
        out = rsa.condensed(M.rdm(y))
    else:  # a missing stimulus gets zeros here and NaN distances below
        out = rsa.rdm(np.where(rows_ok[:, None], y, 0.0), options.method)
    bad = ~rows_ok
    if bad.any():  # entries of a stimulus missing from this half are left out of the comparison
        out = np.where(rsa.condensed(bad[:, None] | bad[None, :]), np.nan, out)
    return out


# --------------------------------------------------------------------------- the model side


def model_rdm(layer, method: str) -> np.ndarray:
    """The layer's condensed RDM under ``method`` (its Gram matrix, or its features for ``poisson``)."""
    if method == "poisson":
        return rsa.poisson_rdm_streamed(layer.feat, layer.rows)
    return rsa.rdm_from_gram(layer.g, layer.s, layer.d, method)


def rsa_score(layer) -> tuple[float, str, object]:
    """The ``rdm`` metric under the fit's RSA options: the mean over subjects of comparator(model RDM, subject RDM).

    Returns ``(raw, note, resample)`` for the registry's ``MetricScore``: why ``raw`` is NaN ("" if it is not),
    and the score under bootstrap resamples (or None)."""
    ctx = layer.rsa
    try:
        model = model_rdm(layer, ctx.options.model_method)
    except DataError as err:  # poisson on a layer with negative features: this layer only has no score
        return math.nan, str(err), None
    # one subject at a time: an entry undefined for one subject (a flat stimulus) is left out of its comparison only
    values = np.array([rsa.compare(model, d, ctx.options.comparator) for d in ctx.data_rdms])
    raw = float(np.mean(values))
    if math.isfinite(raw):
        return raw, "", _resampler(model, ctx)
    if not np.isfinite(model).any():
        return raw, "the model RDM is undefined (every stimulus has the same value on every feature)", None
    return raw, (f"{ctx.options.comparator} is undefined for a constant RDM (model or "
                 f"{int((~np.isfinite(values)).sum())} of {len(values)} subjects)"), None


def _resampler(model: np.ndarray, ctx: RSAContext):
    """The score under bootstrap resamples of the stimuli (``bootstrap.rdm_evaluations``: the mean over subjects,
    pairs between copies of a stimulus dropped), for the comparators the bootstrap has in closed form; None
    (no interval) for the others."""
    from .bootstrap import PAIR_COMPARATORS, rdm_evaluations

    if ctx.options.comparator not in PAIR_COMPARATORS:
        return None
    models, data = rsa.square(model)[None], rsa.square(ctx.data_rdms)
    return lambda rs: rdm_evaluations(models, data, ctx.options.comparator, rs)[:, 0]


def flatten_subject_axis(responses, where: str = "responses") -> tuple[np.ndarray, np.ndarray]:
    """Responses with a subject axis first, (subjects, stimuli, neuroids) or (subjects, repetitions, stimuli,
    neuroids), as ``neural_fit`` takes them: the subjects' neuroids side by side, and the subject of each column.

    Returns ``(responses, subjects)``: (stimuli, S x K) or (repetitions, stimuli, S x K), and S x K labels "0".."S-1".
    """
    arr = numeric_array(responses, where, (3, 4), "with a subject axis the responses must be (subjects, stimuli, "
                        "neuroids) or (subjects, repetitions, stimuli, neuroids)")
    arr = arr[:, None] if arr.ndim == 3 else arr
    s, r, n, k = arr.shape
    flat = arr.transpose(1, 2, 0, 3).reshape(r, n, s * k)
    return (flat if r > 1 else flat[0]), np.repeat(np.arange(s).astype(str), k)
