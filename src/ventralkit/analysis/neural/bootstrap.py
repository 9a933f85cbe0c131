"""Bootstrap over stimuli (and subjects) for every neural score, from what the fit already computed.

A resample is a vector of multiplicities: how often each stimulus (or subject) is drawn when N stimuli
are drawn with replacement. Every score here is written as a function of those multiplicities, so a
resample costs weighted sums, not a new fit:

* **Regressions** (``pls``, ``ridge``, ``ridgecv``): the fitted mappings stay as they are. Each split's
  held-out predictions and responses are kept, and a resample weights the held-out stimuli of every split
  by their multiplicity; the weighted Pearson r per neuroid is then summarised as the score is (median over
  neuroids per split, mean over splits). This is valid because the prediction of a held-out stimulus does
  not depend on how often it is counted in the test: resampling the test side measures how much the score
  depends on which stimuli it was tested on. It leaves out how much the fitted weights would change with
  other training stimuli (refitting per resample would measure that, at one fit per split per resample,
  and would have to keep a drawn stimulus out of the training set it is tested against).
* **RDM comparisons**: the pairs of a resample are the pairs of distinct stimuli, pair (i, j) counted
  ``w_i w_j`` times; the pairs a resample creates between two copies of one stimulus are dropped (their
  dissimilarity is 0 by construction, which any model would "predict"), as rsatoolbox's
  ``subsample_pattern`` does. Ranks of a multiset are computed from one sort of the original vector.
* **CKA** (unbiased HSIC): the resampled Gram matrices, centred on the scored stimuli, with the entries between
  copies of one stimulus zeroed, as the diagonal is (centred, a zeroed entry is an average similarity; uncentred,
  it stood for a similarity of minus the squared feature mean and pulled every resample down).

Dual bootstrap (rsatoolbox's): stimuli and subjects are resampled together; a per-subject evaluation is
averaged over the drawn subjects with their multiplicities.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

#: resamples of ``ventralkit neural --bootstrap`` when not given
RESAMPLES = 1000
#: the percentile confidence interval reported (ci_low, ci_high)
CI_LEVEL = 0.95
#: streams of the seeded generator: the resamples do not share random numbers with the splits
_STIMULUS_STREAM, _SUBJECT_STREAM = 0xB0075, 0x5B1EC7
#: what a regression row's interval means (run.json): measured in docs/neural.md, "Where a regression score sits"
REGRESSION_NOTE = ("fitted mappings kept; each split's held-out stimuli resampled (no refit). A regression score (median "
                   "over neuroids of r on small held-out sets) sits low in its percentile interval: the resamples run "
                   "about 1 standard error above it (+0.010 for pls with 36 held-out stimuli per split on the digits "
                   "example); the interval shows how the score moves with the stimuli tested, not a confidence interval "
                   "for the mappings' predictivity on new stimuli, which the score overstates (+0.02 there); "
                   "differences between layers or models on the same stimuli are centred")
#: comparators with a closed form under multiplicities (rsatoolbox's names; ``pearson`` is ``corr``)
PAIR_COMPARATORS = ("spearman", "rho-a", "corr", "pearson", "cosine")


# --------------------------------------------------------------------------- resamples


@dataclass(frozen=True)
class Resamples:
    """Multiplicities of the stimuli (``stimuli``, B x N) and, for a dual bootstrap, of the subjects (B x S).

    ``neuroid_subject``: the subject (column of ``subjects``) of each neuroid, for scores that pool neuroids
    (their medians weight a neuroid by its subject's multiplicity). ``stimuli_resampled`` is False for a
    bootstrap over subjects only (every stimulus then counts once)."""

    stimuli: np.ndarray
    subjects: np.ndarray | None = None
    seed: int = 0
    neuroid_subject: np.ndarray | None = None
    stimuli_resampled: bool = True

    @property
    def count(self) -> int:
        return int(self.stimuli.shape[0])

    @property
    def n_stimuli(self) -> int:
        return int(self.stimuli.shape[1])

    @property
    def over(self) -> str:
        if self.subjects is None:
            return "stimuli"
        return "stimuli and subjects" if self.stimuli_resampled else "subjects"

    def neuroid_weights(self) -> np.ndarray | None:
        """(B, K) multiplicity of each neuroid's subject, or None without a subject resample."""
        if self.subjects is None or self.neuroid_subject is None:
            return None
        return self.subjects[:, self.neuroid_subject]

    def fingerprint(self) -> str:
        """A short hash of the multiplicities: two outputs with the same one were resampled identically."""
        h = hashlib.sha256(np.ascontiguousarray(self.stimuli, dtype=np.int32).tobytes())
        if self.subjects is not None:
            h.update(np.ascontiguousarray(self.subjects, dtype=np.int32).tobytes())
        return h.hexdigest()[:16]


def array_fingerprint(*arrays) -> str:
    """A short hash of arrays (None skipped): two outputs scored on the same responses share it."""
    h = hashlib.sha256()
    for a in arrays:
        if a is not None:
            a = np.asarray(a)
            a = np.ascontiguousarray(a, dtype=np.float64) if a.dtype.kind in "biuf" else a.astype(str)
            h.update(str(a.shape).encode())
            h.update(a.tobytes() if a.dtype.kind == "f" else "\n".join(a.ravel().tolist()).encode())
    return h.hexdigest()[:16]


def multiplicities(indices: np.ndarray, n: int) -> np.ndarray:
    """(B, n) counts of each of ``n`` items in each row of drawn ``indices`` (B x draws)."""
    b = indices.shape[0]
    flat = (indices + n * np.arange(b)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def draw_resamples(n_stimuli: int, resamples: int = RESAMPLES, seed: int = 0,
                   n_subjects: int | None = None) -> Resamples:
    """``resamples`` draws of ``n_stimuli`` stimuli with replacement (and of ``n_subjects`` subjects, when given).

    The same (n, resamples, seed) always give the same draws, so two models scored on the same stimuli with
    the same seed are resampled identically: their bootstrap distributions are paired."""
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < 2:
        raise ValueError(f"resamples must be an integer of at least 2, got {resamples!r}")
    rng = np.random.default_rng([int(seed), _STIMULUS_STREAM])
    stimuli = multiplicities(rng.integers(0, n_stimuli, size=(resamples, n_stimuli)), n_stimuli)
    subjects = None
    if n_subjects is not None:
        rng = np.random.default_rng([int(seed), _SUBJECT_STREAM])
        subjects = multiplicities(rng.integers(0, n_subjects, size=(resamples, n_subjects)), n_subjects)
    return Resamples(stimuli, subjects, int(seed))


# --------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class Interval:
    """Percentile confidence interval and standard error of one score from its bootstrap samples."""

    ci_low: float
    ci_high: float
    sem: float
    valid: int  # resamples with a finite score


def interval(samples: np.ndarray, n: int, level: float = CI_LEVEL) -> Interval:
    """Percentile ``level`` interval and standard error of ``samples`` (NaN: a resample with no score).

    The standard error is the samples' standard deviation times ``sqrt(n / (n - 1))`` (``n``: stimuli, or
    the smaller of stimuli and subjects in a dual bootstrap), rsatoolbox's correction: the bootstrap
    variance of a mean of n values is (n - 1) / n times the usual estimate. Fewer than 2 finite samples
    give NaN."""
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size < 2:
        return Interval(float("nan"), float("nan"), float("nan"), int(s.size))
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(s, [tail, 1.0 - tail])
    sem = float(np.std(s, ddof=1) * np.sqrt(n / (n - 1))) if n > 1 else float("nan")
    return Interval(float(lo), float(hi), sem, int(s.size))


def interval_columns(samples: np.ndarray | None, n: int, level: float = CI_LEVEL) -> dict:
    """``ci_low, ci_high, sem`` of one score from its resamples, as scores.csv, mapping.csv and time_scores.csv
    write them (NaN, an empty cell, where the score has no resamples)."""
    if samples is None:
        return {"ci_low": float("nan"), "ci_high": float("nan"), "sem": float("nan")}
    iv = interval(samples, n, level)
    return {"ci_low": iv.ci_low, "ci_high": iv.ci_high, "sem": iv.sem}


# --------------------------------------------------------------------------- weighted correlations


def weighted_pearson(w: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r between matching columns of ``a`` and ``b`` (n x K) with the rows counted ``w`` times (B x n).

    Equals ``pearson_columns`` on the rows repeated by their counts; NaN where a column has no spread
    among the rows drawn. The columns are centred on their plain means first (less cancellation)."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    total = w.sum(axis=1)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        ma, mb = (w @ a) / total, (w @ b) / total
        cov = (w @ (a * b)) / total - ma * mb
        va = (w @ (a * a)) / total - ma * ma
        vb = (w @ (b * b)) / total - mb * mb
        r = cov / np.sqrt(va * vb)
    tiny = 1e-12
    scale_a, scale_b = (a * a).mean(axis=0) + tiny, (b * b).mean(axis=0) + tiny
    r[(va <= tiny * scale_a) | (vb <= tiny * scale_b)] = np.nan
    return np.clip(r, -1.0, 1.0)


def _nanmedian_rows(x: np.ndarray) -> np.ndarray:
    """Median over the last axis of the finite values; NaN where a row has none (no warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(x, axis=-1)


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


# --------------------------------------------------------------------------- regressions


@dataclass
class HeldOut:
    """One split's held-out stimuli (indices into the scored rows) and the predictions for them (n_test x K)."""

    test: np.ndarray
    predictions: np.ndarray


def regression_resampler(held_out: Sequence[HeldOut], y: np.ndarray) -> Callable:
    """The score of a fitted regression under resamples, from each split's kept predictions (no refit).

    Per resample: weighted Pearson r per neuroid on each split's held-out stimuli, median over neuroids
    (each counted as often as its subject was drawn, when subjects are resampled), mean over splits: the
    score's own summary (``metrics.aggregate_splits``)."""
    held = [(h.test, np.asarray(h.predictions, dtype=np.float64).reshape(len(h.test), -1), y[h.test])
            for h in held_out]

    def resample(rs: Resamples) -> np.ndarray:
        w = rs.stimuli
        per_split = np.stack([weighted_pearson(w[:, test], pred, target) for test, pred, target in held], axis=1)
        return _nanmean(neuroid_median(per_split, rs), axis=1)

    return resample


def neuroid_median(values: np.ndarray, rs: Resamples) -> np.ndarray:
    """The median over neuroids (last axis) of (B, ..., K) values: plain, or with each neuroid counted as often as
    its subject was drawn."""
    weights = rs.neuroid_weights()
    if weights is None:
        return _nanmedian_rows(values)
    return weighted_median(values, weights.reshape(weights.shape[0], *([1] * (values.ndim - 2)), -1))


def weighted_median(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Median over the last axis of ``x`` with the values counted ``w`` times (integer counts; NaN ignored).

    For counts, this is the plain median of the values repeated by their counts (the mean of the two middle
    values when the total is even)."""
    w = np.broadcast_to(w, x.shape).astype(np.float64)
    w = np.where(np.isfinite(x), w, 0.0)
    order = np.argsort(np.where(np.isfinite(x), x, np.inf), axis=-1)
    xs = np.take_along_axis(x, order, axis=-1)
    cw = np.cumsum(np.take_along_axis(w, order, axis=-1), axis=-1)
    total = cw[..., -1:]
    lo_pos = np.floor((total - 1) / 2)  # 0-based positions of the middle values in the repeated list
    hi_pos = np.floor(total / 2)
    lo = np.take_along_axis(xs, _first_above(cw, lo_pos), axis=-1)
    hi = np.take_along_axis(xs, _first_above(cw, hi_pos), axis=-1)
    out = (0.5 * (lo + hi))[..., 0]
    out[total[..., 0] <= 0] = np.nan
    return out


def _first_above(cw: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Index of the first cumulative count above ``pos`` (the value at that position of the repeated list)."""
    idx = (cw <= pos).sum(axis=-1, keepdims=True)
    return np.minimum(idx, cw.shape[-1] - 1)


# --------------------------------------------------------------------------- RDM comparisons


def upper(rdm: np.ndarray) -> np.ndarray:
    """The upper triangle (diagonal excluded) of a square matrix, row by row (``squareform`` order)."""
    return rdm[np.triu_indices(rdm.shape[0], k=1)]


@dataclass
class PairResampler:
    """A comparison of two RDM vectors (upper triangles over n stimuli) under stimulus multiplicities.

    ``comparator``: ``spearman`` (Pearson r of ranks), ``rho-a`` (rsatoolbox's: covariance of ranks times
    12 / (n^3 - n)), ``corr`` / ``pearson``, ``cosine``. Pair (i, j) counts ``w_i w_j`` times; ranks with
    ties are average ranks of the multiset. A pair that is NaN in either vector is left out.

    ``corr`` and ``cosine`` need only sums ``sum_{i<j} w_i w_j f_ij``, quadratic forms in w: one matrix
    product per sum for all resamples. The rank comparators keep the pairs in the order that sorts ``a`` (and
    a permutation that sorts ``b``), so the ranks of a multiset are cumulative sums of its counts: O(pairs)
    per resample, one sort in all (a loop over resamples: 1-D passes over the pairs run faster than 2-D ones).
    """

    a: np.ndarray
    b: np.ndarray
    n: int
    comparator: str = "spearman"

    def __post_init__(self):
        if self.comparator not in PAIR_COMPARATORS:
            raise ValueError(f"comparator {self.comparator!r}: the bootstrap knows {', '.join(PAIR_COMPARATORS)}")
        a, b = np.asarray(self.a, dtype=np.float64), np.asarray(self.b, dtype=np.float64)
        keep = np.isfinite(a) & np.isfinite(b)
        i, j = np.triu_indices(self.n, k=1)
        if self.comparator in ("spearman", "rho-a"):
            order = np.argsort(a[keep], kind="stable")
            self._i, self._j, self.a, self.b = i[keep][order], j[keep][order], a[keep][order], b[keep][order]
            self._order_b = np.argsort(self.b, kind="stable")
            self._ib, self._jb = self._i[self._order_b], self._j[self._order_b]
            self._ties_a, self._ties_b = _tie_runs(self.a), _tie_runs(self.b[self._order_b])
        else:
            if self.comparator != "cosine":  # Pearson r does not change; the sums lose fewer digits
                a, b = a - a[keep].mean(), b - b[keep].mean()
            self._forms = {name: _pair_matrix(v, keep, i, j, self.n)
                           for name, v in (("1", np.ones_like(a)), ("x", a), ("y", b), ("xy", a * b),
                                           ("xx", a * a), ("yy", b * b))}

    def __call__(self, rs: Resamples | np.ndarray) -> np.ndarray:
        w = rs.stimuli if isinstance(rs, Resamples) else np.asarray(rs, dtype=np.float64)
        if self.comparator in ("spearman", "rho-a"):  # measured: as fast as blocks of resamples at 780 pairs,
            return np.array([self._ranked(row) for row in w])  # 2.4x faster at 64,000
        sums = {name: 0.5 * np.einsum("bk,bk->b", w @ f, w) for name, f in self._forms.items()}
        return _compare_sums(sums, self.comparator)

    def _ranked(self, w: np.ndarray) -> float:
        """The rank comparator for one resample (multiplicities ``w`` of the stimuli)."""
        m = w[self._i] * w[self._j]  # how often each pair is drawn, pairs in the order of a
        mb = w[self._ib] * w[self._jb]  # the same, in the order of b
        ra, rb = _sorted_ranks(m, self._ties_a), _sorted_ranks(mb, self._ties_b)
        sums = {"1": m.sum(), "x": m @ ra, "y": mb @ rb, "xx": (m * ra) @ ra, "yy": (mb * rb) @ rb,
                "xy": (mb * ra[self._order_b]) @ rb}
        return float(_compare_sums(sums, self.comparator))


def _pair_matrix(values: np.ndarray, keep: np.ndarray, i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    """The symmetric n x n matrix with ``values`` on the kept pairs (both triangles), 0 elsewhere."""
    f = np.zeros((n, n))
    f[i[keep], j[keep]] = values[keep]
    return f + f.T


def _tie_runs(sorted_values: np.ndarray) -> np.ndarray | None:
    """Start of each run of equal values in a sorted vector; None when every value differs (the usual case)."""
    if len(sorted_values) < 2 or not (sorted_values[1:] == sorted_values[:-1]).any():
        return None
    new = np.empty(len(sorted_values), dtype=bool)
    new[0] = True
    new[1:] = sorted_values[1:] != sorted_values[:-1]
    return np.nonzero(new)[0]


def _sorted_ranks(ms: np.ndarray, starts: np.ndarray | None) -> np.ndarray:
    """Average 1-based ranks of the multiset whose values are in sorted order, each drawn ``ms`` times."""
    if starts is None:
        ranks = np.cumsum(ms, axis=-1)
        ranks -= (ms - 1.0) * 0.5
        return ranks
    per_run = np.add.reduceat(ms, starts, axis=-1)
    rank_run = np.cumsum(per_run, axis=-1) - (per_run - 1.0) * 0.5
    return np.repeat(rank_run, np.diff(np.append(starts, ms.shape[-1])), axis=-1)


def _compare_sums(s: dict, comparator: str):
    """The comparator from the multiset's sums (``1``: count, ``x``, ``y``, ``xy``, ``xx``, ``yy``: sums of the
    values and their products); NaN without spread. ``sum xy - sum x sum y / n`` is n times the covariance."""
    total = s["1"]
    with np.errstate(invalid="ignore", divide="ignore"):
        if comparator == "cosine":
            return s["xy"] / np.sqrt(s["xx"] * s["yy"])
        xy = s["xy"] - s["x"] * s["y"] / total
        xx, yy = s["xx"] - s["x"] ** 2 / total, s["yy"] - s["y"] ** 2 / total
        if comparator == "rho-a":
            return 12.0 * xy / (total ** 3 - total)
        r = xy / np.sqrt(xx * yy)
    flat = ~((xx > 1e-12 * s["xx"]) & (yy > 1e-12 * s["yy"]))
    return np.where(flat, np.nan, r)


def rdm_evaluations(model_rdms: np.ndarray, data_rdms: np.ndarray, comparator: str,
                    rs: Resamples) -> np.ndarray:
    """(B, models): each model RDM compared with each data RDM (subject) under the resamples, averaged over
    the subjects (weighted by their multiplicities in a dual bootstrap), as rsatoolbox's bootstrap evaluations."""
    model_rdms, data_rdms = np.asarray(model_rdms, dtype=np.float64), np.asarray(data_rdms, dtype=np.float64)
    n = data_rdms.shape[-1]
    out = np.empty((rs.count, len(model_rdms)))
    subject_w = rs.subjects if rs.subjects is not None else np.ones((rs.count, len(data_rdms)))
    for k, model in enumerate(model_rdms):
        per_subject = np.stack([PairResampler(upper(model), upper(d), n, comparator)(rs) for d in data_rdms], axis=1)
        ok = np.isfinite(per_subject)
        weights = np.where(ok, subject_w, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, k] = (np.where(ok, per_subject, 0.0) * weights).sum(1) / weights.sum(1)
    return out


# --------------------------------------------------------------------------- CKA


def gram_resampler(k: np.ndarray, l: np.ndarray) -> Callable:  # noqa: E741 (the paper's name)
    """Linear CKA with the unbiased HSIC estimator (as ``metrics.cka_from_grams``) under stimulus multiplicities.

    The resampled Gram matrices have the entries between two copies of one stimulus zeroed, as the diagonal is;
    the estimator's n is the number of stimuli drawn. Both Gram matrices are centred first (``H K H``, on all the
    scored stimuli): the unbiased HSIC, hence the score, is unchanged by it, but a zeroed entry then stands for
    an average similarity. Without it, features with a mean far from 0 (ReLU units) made each zeroed copy a large
    negative similarity: measured on the digits example (CORnet-Z V4, 359 stimuli), the score 0.809 fell above its
    whole interval [0.754, 0.794]; centred, [0.791, 0.828] around a resampled mean of 0.809.
    Subjects are not resampled: the CKA of a population in
    which a subject's neuroids appear twice is smaller than that of distinct neuroids (checked: a bootstrap
    over subjects put the point estimate at the top of its distribution), so only the stimuli are; a
    bootstrap over subjects alone gives NaN."""
    k0, l0 = _zero_diagonal(_double_centred(k)), _zero_diagonal(_double_centred(l))
    prods = {"kl": k0 * l0, "kk": k0 * k0, "ll": l0 * l0}

    def resample(rs: Resamples | np.ndarray) -> np.ndarray:
        if isinstance(rs, Resamples) and not rs.stimuli_resampled:
            return np.full(rs.count, np.nan)
        w = rs.stimuli if isinstance(rs, Resamples) else np.asarray(rs, dtype=np.float64)
        n = w.sum(axis=1)
        rows = {"k": w @ k0, "l": w @ l0}
        sums = {key: (w * r).sum(1) for key, r in rows.items()}

        def hsic(a: str, b: str) -> np.ndarray:
            term = (w * (w @ prods[a + b])).sum(1)
            cross = (w * rows[a] * rows[b]).sum(1)
            return (term + sums[a] * sums[b] / ((n - 1) * (n - 2)) - 2.0 * cross / (n - 2)) / (n * (n - 3))

        xy, xx, yy = hsic("k", "l"), hsic("k", "k"), hsic("l", "l")
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(xx * yy > 0, xy / (np.sqrt(np.abs(xx * yy)) + 1e-12), 0.0)

    return resample


def _double_centred(m: np.ndarray) -> np.ndarray:
    """``H M H`` (H = I - 11^T / n): a Gram matrix of the features centred on their means over the stimuli."""
    m = np.asarray(m, dtype=np.float64)
    row = m.mean(axis=1, keepdims=True)
    return m - row - row.T + m.mean()


def _zero_diagonal(m: np.ndarray) -> np.ndarray:
    out = np.array(m, dtype=np.float64)
    np.fill_diagonal(out, 0.0)
    return out


# --------------------------------------------------------------------------- the samples of a result


@dataclass
class ScoreSamples:
    """The bootstrap samples of a ``neural_fit`` result: one vector of B scores per (layer, metric), one per
    metric for its ceiling (None where the ceiling was not resampled), and how they were drawn."""

    resamples: int
    seed: int
    n_stimuli: int
    over: str
    fingerprint: str
    scores: dict = field(default_factory=dict)  # (layer, metric) -> (B,)
    ceilings: dict = field(default_factory=dict)  # metric -> (B,) or None
    n_subjects: int | None = None
    responses_fingerprint: str = ""  # the scored responses (trial averages) and subjects, hashed

    @property
    def n_effective(self) -> int:
        """The n of the standard error's correction and of the t-tests' degrees of freedom (+1): the stimuli, the
        subjects, or the smaller of the two when both are resampled (rsatoolbox's ``eval_bootstrap``)."""
        if self.n_subjects is None or self.over == "stimuli":
            return self.n_stimuli
        return self.n_subjects if self.over == "subjects" else min(self.n_stimuli, self.n_subjects)

    def interval(self, layer: str, metric: str) -> Interval:
        return interval(self.scores[(layer, metric)], self.n_effective)
