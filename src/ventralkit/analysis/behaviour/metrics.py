"""Behavioural metrics: i1n, i2n, error consistency, shape bias and the confusion-matrix correlation.

Everything works on ``Coded`` trials (integer arrays) and the model's choice probabilities per image, in numpy,
so a bootstrap draw (``bootstrap.py``) is the same computation on resampled arrays.

Definitions (sources in docs/behaviour.md):

- **i2n / i1n** (Rajalingham et al. 2018, as Brain-Score's ``metrics/i1i2`` computes them): per image and
  distractor, a false-alarm rate F (humans: the fraction of trials offering that distractor in which it was
  chosen; the model: ``p_d / (p_d + p_truth)`` in a two-way task, ``p_d`` when every label was an option);
  d' = z(1 - F) - z(FA of the object pair), the second term the mean false-alarm rate of the distractor's
  images towards this image's object; d' clipped to +-5; normalised by subtracting the mean over the images
  of the same object and distractor. i2n correlates these (image x distractor) values between model and
  humans, i1n their mean over distractors (one value per image). Brain-Score's split halves: the trials are
  shuffled with ``RandomState(seed)`` (seed 0) ``splits`` times (2); each time the model is correlated with
  the first half and the halves with each other. score = mean model-half r, ceiling = mean half-half r,
  ceiled = mean of r / sqrt(half-half r) (Brain-Score's Rajalingham2018 benchmark).
- **error consistency** (Geirhos et al. 2020): Cohen's kappa of trial-wise correctness, ``(c_obs - c_exp) /
  (1 - c_exp)`` with ``c_exp = a1 a2 + (1 - a1)(1 - a2)``, per subject (and condition, then averaged over
  conditions); the score is the mean over subjects (Brain-Score reports its absolute value); ceiling: the
  same between every pair of subjects, over the trials they share (same image, distractor and condition);
  ceiled = score / ceiling.
- **shape bias** (Geirhos et al. 2019): among cue-conflict decisions that chose the shape or the texture
  category, the fraction that chose the shape (images whose two cues agree are left out).
- **confusion**: Pearson r of the off-diagonal cells of the (truth x choice) confusion matrices, rows
  normalised; split halves and ceiling as for i2n.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

#: d' is clipped to +-DPRIME_CAP (Brain-Score's ``dprimes(cap=5)``)
DPRIME_CAP = 5.0
#: the metrics, in the order of the scores table
METRICS = ("i1n", "i2n", "error_consistency", "shape_bias", "confusion")


@dataclass
class Coded:
    """Trials as integer arrays, and the model's choice probabilities per image.

    ``origin`` (per trial), ``subj_origin`` (per subject) and ``image_origin`` (per image) name what each entry
    was copied from: themselves in the data, the original in a bootstrap draw. Split halves follow the trial
    origins and subject pairs skip copies of one subject, so a draw's copies never agree with themselves."""

    img: np.ndarray
    subj: np.ndarray
    truth: np.ndarray
    choice: np.ndarray
    option: np.ndarray  #: the distractor of a two-way trial, -1 when every label was an option
    cond: np.ndarray
    image_truth: np.ndarray
    probs: np.ndarray  #: (images, labels), each row sums to 1
    n_labels: int
    n_cond: int
    shape: np.ndarray | None = None  #: cue-conflict cues per image (-1: none)
    texture: np.ndarray | None = None
    origin: np.ndarray | None = None
    subj_origin: np.ndarray | None = None
    image_origin: np.ndarray | None = None
    cache: dict = field(default_factory=dict, repr=False)  #: values computed once per Coded (subject pairs)

    def __post_init__(self):
        if self.origin is None:
            self.origin = np.arange(len(self.img))
        if self.subj_origin is None:
            self.subj_origin = np.arange(int(self.subj.max()) + 1 if len(self.subj) else 0)
        if self.image_origin is None:
            self.image_origin = np.arange(len(self.image_truth))

    @property
    def n_img(self) -> int:
        return len(self.image_truth)

    @property
    def n_subj(self) -> int:
        return len(self.subj_origin)

    @property
    def two_way(self) -> bool:
        return bool(len(self.option)) and bool((self.option >= 0).all())


@dataclass
class MetricValue:
    """One metric's numbers: ``score`` (model vs humans), ``ceiling`` (humans vs humans), ``ceiled``; NaN: not
    computable, ``note`` says why. ``splits`` holds each split half's numbers where there are split halves."""

    score: float
    ceiling: float = float("nan")
    ceiled: float = float("nan")
    note: str = ""
    splits: list = field(default_factory=list)


# --------------------------------------------------------------------------- shared pieces


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r over the entries finite in both (NaN with fewer than 3, or without variance)."""
    a, b = np.ravel(a), np.ravel(b)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    a, b = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def group_nanmean(x: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """(n_groups, columns): the mean of the rows of ``x`` in each group, NaN left out (NaN: no value)."""
    ok = ~np.isnan(x)
    onehot = np.zeros((n_groups, len(groups)))
    onehot[groups, np.arange(len(groups))] = 1.0
    total, count = onehot @ np.where(ok, x, 0.0), onehot @ ok
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def split_halves(origin: np.ndarray, splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``splits`` pairs of trial masks: Brain-Score's halves (``RandomState(seed)``, one shuffle of the trial list
    per split, the first ``n // 2`` the first half). Trials that are copies of one trial (a bootstrap draw) stay
    in one half."""
    if np.array_equal(origin, np.arange(len(origin))):
        n_units, unit_of = len(origin), slice(None)  # every trial its own unit (the data, not a draw)
    else:
        units, unit_of = np.unique(origin, return_inverse=True)
        n_units = len(units)
    rs = np.random.RandomState(seed)
    halves = []
    for _ in range(splits):
        # Brain-Score shuffles a list of indices; RandomState.shuffle gives an array the same permutation
        order = np.arange(n_units)
        rs.shuffle(order)
        first = np.zeros(n_units, dtype=bool)
        first[order[:n_units // 2]] = True
        halves.append((first[unit_of], ~first[unit_of]))
    return halves


def model_choices(c: Coded) -> np.ndarray:
    """The model's choice on each trial: the most probable task label, or in a two-way trial the more probable
    of the truth and the distractor (a tie goes to the lower label)."""
    if not c.two_way:
        return c.probs.argmax(1)[c.img]
    pt, pd = c.probs[c.img, c.truth], c.probs[c.img, c.option]
    return np.where(pt > pd, c.truth, np.where(pd > pt, c.option, np.minimum(c.truth, c.option)))


# --------------------------------------------------------------------------- i1n / i2n


def far_humans(c: Coded, rows: np.ndarray | None = None) -> np.ndarray:
    """(images, labels): how often each wrong label was chosen when it was an option; NaN on the truth and
    where it never was one (images absent from ``rows`` are all NaN)."""
    sel = slice(None) if rows is None else rows
    img, choice, truth, option = c.img[sel], c.choice[sel], c.truth[sel], c.option[sel]
    n, k = c.n_img, c.n_labels
    wrong = choice != truth
    chosen = np.bincount(img[wrong] * k + choice[wrong], minlength=n * k).reshape(n, k).astype(float)
    if c.two_way:
        offered = np.bincount(img * k + option, minlength=n * k).reshape(n, k)
    else:
        offered = np.repeat(np.bincount(img, minlength=n)[:, None], k, axis=1)
    far = np.full((n, k), np.nan)
    np.divide(chosen, offered, out=far, where=offered > 0)
    far[np.arange(n), c.image_truth] = np.nan
    return far


def far_model(c: Coded) -> np.ndarray:
    """The model's false-alarm rates: ``p_d / (p_d + p_truth)`` (two-way), else ``p_d``; NaN on the truth."""
    p = c.probs.astype(float)
    rows = np.arange(c.n_img)
    if c.two_way:
        with np.errstate(invalid="ignore", divide="ignore"):
            far = p / (p + p[rows, c.image_truth][:, None])
    else:
        far = p.copy()
    far[rows, c.image_truth] = np.nan
    return far


def dprimes(far: np.ndarray, image_truth: np.ndarray, n_labels: int, normalize: bool = True) -> np.ndarray:
    """d' per image and distractor from false-alarm rates (Rajalingham et al. 2018; Brain-Score ``_I.dprime``):
    z(hit rate) - z(mean false-alarm rate of the distractor's images towards this object), clipped, and with
    ``normalize`` the mean over the images of the same object and distractor subtracted."""
    from scipy.special import ndtri  # the normal quantile, what scipy.stats.norm.ppf computes (a lighter import)

    pair_far = group_nanmean(far, image_truth, n_labels)  # [object o, label t]: o's images choosing t
    fa_object = pair_far[:, image_truth].T  # [image i, label c]: c's images choosing i's object
    with np.errstate(invalid="ignore"):
        d = np.clip(ndtri(1.0 - far) - ndtri(fa_object), -DPRIME_CAP, DPRIME_CAP)
    if normalize:
        d = d - group_nanmean(d, image_truth, n_labels)[image_truth]
    return d


def _collapse(d: np.ndarray) -> np.ndarray:
    """i1n from i2n: each image's mean over its distractors (NaN when it has none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an image without any value: NaN, as intended
        return np.nanmean(d, axis=1)


def human_signature(c: Coded, rows=None, collapse: bool = False) -> np.ndarray:
    """The humans' normalised d' (i2n: images x labels; i1n: per image) from the trials ``rows``."""
    d = dprimes(far_humans(c, rows), c.image_truth, c.n_labels)
    return _collapse(d) if collapse else d


def model_signature(c: Coded, collapse: bool = False) -> np.ndarray:
    d = dprimes(far_model(c), c.image_truth, c.n_labels)
    return _collapse(d) if collapse else d


@dataclass
class Signatures:
    """A split-half metric's per-image values: the model's, and each split's two human halves (rows: images)."""

    model: np.ndarray
    halves: list[tuple[np.ndarray, np.ndarray]]

    def value(self, rows: np.ndarray | None = None) -> MetricValue:
        """The metric over the images ``rows`` (an index array, repeats allowed: a bootstrap draw of images;
        None: every image once)."""
        pick = (lambda a: a) if rows is None else (lambda a: a[rows])  # noqa: E731
        return _from_splits([(pearson(pick(self.model), pick(h0)), pearson(pick(h0), pick(h1)))
                             for h0, h1 in self.halves])


def image_signatures(c: Coded, collapse: bool, splits: int = 2, seed: int = 0) -> Signatures:
    """i1n (``collapse``) or i2n values of the model and of each split's halves (see the module docstring)."""
    halves = [(human_signature(c, first, collapse), human_signature(c, second, collapse))
              for first, second in split_halves(c.origin, splits, seed)]
    return Signatures(model_signature(c, collapse), halves)


def image_level(c: Coded, collapse: bool, splits: int = 2, seed: int = 0) -> MetricValue:
    """i1n (``collapse``) or i2n: model vs the first half, half vs half, per split (see the module docstring)."""
    return image_signatures(c, collapse, splits, seed).value()


def _split_metric(c: Coded, humans, model: np.ndarray, splits: int, seed: int) -> MetricValue:
    """Brain-Score's split-half scheme for a signature ``humans(rows)`` compared with ``model``."""
    pairs = []
    for first, second in split_halves(c.origin, splits, seed):
        h0 = humans(first)
        pairs.append((pearson(model, h0), pearson(h0, humans(second))))
    return _from_splits(pairs)


def _from_splits(pairs: list[tuple[float, float]]) -> MetricValue:
    """score = mean model-half r, ceiling = mean half-half r, ceiled = mean of r / sqrt(half-half r)."""
    per = [{"score": s, "ceiling": k, "ceiled": s / np.sqrt(k) if k > 0 else float("nan")} for s, k in pairs]
    mean = lambda key: float(np.mean([p[key] for p in per]))  # noqa: E731  (NaN if any split is NaN)
    note = "" if np.isfinite(mean("score")) else "too few values shared by model and humans"
    if not note and not np.isfinite(mean("ceiled")):
        note = "the split halves do not correlate positively: no ceiling"
    return MetricValue(mean("score"), mean("ceiling"), mean("ceiled"), note, per)


# --------------------------------------------------------------------------- confusion matrices


def confusion_humans(c: Coded, rows=None) -> np.ndarray:
    """(truth, choice) choice frequencies of the trials ``rows``, each row divided by its trials."""
    sel = slice(None) if rows is None else rows
    k = c.n_labels
    counts = np.bincount(c.truth[sel] * k + c.choice[sel], minlength=k * k).reshape(k, k).astype(float)
    return _row_normalised(counts)


def confusion_model(c: Coded) -> np.ndarray:
    """The model's expected (truth, choice) frequencies over the same trials: its probabilities over each
    trial's options (the truth and the distractor in a two-way trial, else every label)."""
    k = c.n_labels
    if c.two_way:
        pt, pd = c.probs[c.img, c.truth], c.probs[c.img, c.option]
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(pt + pd > 0, pt / (pt + pd), 0.5)
        counts = (np.bincount(c.truth * k + c.truth, weights=share, minlength=k * k)
                  + np.bincount(c.truth * k + c.option, weights=1.0 - share, minlength=k * k)).reshape(k, k)
    else:  # every trial of an image has the same probabilities: weight each image by its trials
        per_image = np.bincount(c.img, minlength=c.n_img)[:, None] * c.probs
        counts = np.stack([np.bincount(c.image_truth, weights=per_image[:, j], minlength=k) for j in range(k)], 1)
    return _row_normalised(counts)


def _row_normalised(counts: np.ndarray) -> np.ndarray:
    total = counts.sum(1, keepdims=True)
    out = np.full_like(counts, np.nan)
    np.divide(counts, total, out=out, where=total > 0)
    return out


def _off_diagonal(m: np.ndarray) -> np.ndarray:
    return m[~np.eye(len(m), dtype=bool)]


def confusion_metric(c: Coded, splits: int = 2, seed: int = 0) -> MetricValue:
    """Pearson r of the off-diagonal confusion cells, model vs the first half; ceiling half vs half."""
    model = _off_diagonal(confusion_model(c))
    return _split_metric(c, lambda rows: _off_diagonal(confusion_humans(c, rows)), model, splits, seed)


# --------------------------------------------------------------------------- error consistency


def kappa(n, correct1, correct2, agree) -> np.ndarray:
    """Cohen's kappa from counts: trials, correct of each side, trials where both were right or both wrong.

    Undefined (NaN) where the expected agreement is 1 (both sides always right, or always wrong) or n = 0."""
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        a1, a2 = np.asarray(correct1) / n, np.asarray(correct2) / n
        expected = a1 * a2 + (1 - a1) * (1 - a2)
        observed = np.asarray(agree) / n
        k = (observed - expected) / (1.0 - expected)
    return np.where((n > 0) & (expected < 1.0), k, np.nan)


def _mean_over(values: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row without a defined value stays NaN
        return np.nanmean(values, axis=axis)


def model_subject_kappas(c: Coded, choices: np.ndarray | None = None) -> np.ndarray:
    """(subjects, conditions): the model's kappa with each subject over that subject's trials."""
    model_ok = (model_choices(c) if choices is None else choices) == c.truth
    human_ok = c.choice == c.truth
    cells = c.n_subj * c.n_cond
    key = c.subj * c.n_cond + c.cond
    count = lambda w=None: np.bincount(key, weights=w, minlength=cells).reshape(c.n_subj, c.n_cond)  # noqa: E731
    return kappa(count(), count(model_ok.astype(float)), count(human_ok.astype(float)),
                 count((model_ok == human_ok).astype(float)))


def subject_pair_kappas(c: Coded) -> np.ndarray:
    """(subjects, subjects): each pair's kappa over the trials both answered (matched on image, distractor and
    condition; repeated trials in order), averaged over conditions; NaN on the diagonal, for copies of one
    subject and for pairs that share no trial."""
    from scipy import sparse

    if "pairs" in c.cache:
        return c.cache["pairs"]
    ok = (c.choice == c.truth).astype(float)
    key = ((c.img * (c.n_labels + 1) + c.option + 1) * c.n_cond + c.cond).astype(np.int64)
    # the k-th trial of a subject with a key pairs with the k-th trial of another subject with that key
    order = np.lexsort((np.arange(len(key)), key, c.subj))
    sk = np.stack([c.subj[order], key[order]])
    new = np.r_[True, (sk[:, 1:] != sk[:, :-1]).any(0)]
    starts = np.flatnonzero(new)
    occurrence = np.empty(len(key), dtype=np.int64)
    occurrence[order] = np.arange(len(key)) - np.repeat(starts, np.diff(np.r_[starts, len(key)]))
    column = np.unique(key * (int(occurrence.max()) + 1) + occurrence, return_inverse=True)[1].ravel()
    per_cond = []
    for q in range(c.n_cond):
        m = c.cond == q
        shape = (c.n_subj, int(column.max()) + 1)
        present = sparse.csr_matrix((np.ones(m.sum()), (c.subj[m], column[m])), shape=shape)
        right = sparse.csr_matrix((ok[m], (c.subj[m], column[m])), shape=shape)
        wrong = present - right
        n = (present @ present.T).toarray()
        r1 = (right @ present.T).toarray()
        agree = (right @ right.T + wrong @ wrong.T).toarray()
        per_cond.append(kappa(n, r1, r1.T, agree))
    pairs = _mean_over(np.stack(per_cond), axis=0)
    pairs[c.subj_origin[:, None] == c.subj_origin[None, :]] = np.nan  # itself, or a copy of itself
    c.cache["pairs"] = pairs
    return pairs


def error_consistency(c: Coded, ceiling: bool = True, choices: np.ndarray | None = None) -> MetricValue:
    """The model's kappa per subject (averaged over conditions), averaged over subjects; the ceiling is the
    mean over subject pairs of their kappa (Brain-Score: the same means, reported as absolute values)."""
    per_subject = _mean_over(model_subject_kappas(c, choices), axis=1)
    score = float(_mean_over(per_subject, axis=0)) if np.isfinite(per_subject).any() else float("nan")
    note = "" if np.isfinite(score) else "kappa is undefined for every subject (no errors on either side)"
    if not ceiling:
        return MetricValue(score, note=note)
    pairs = subject_pair_kappas(c)
    upper = pairs[np.triu_indices(c.n_subj, 1)]
    ceil = float(np.nanmean(upper)) if np.isfinite(upper).any() else float("nan")
    if not np.isfinite(ceil):
        note = note or "no pair of subjects shares a trial with a defined kappa: no ceiling"
    ceiled = score / ceil if np.isfinite(ceil) and ceil > 0 else float("nan")
    if np.isfinite(ceil) and ceil <= 0 and not note:
        note = "the subjects' errors agree no more than chance (ceiling <= 0): no ceiled score"
    return MetricValue(score, ceil, ceiled, note)


# --------------------------------------------------------------------------- shape bias


def shape_fraction(choice: np.ndarray, shape: np.ndarray, texture: np.ndarray) -> tuple[float, int]:
    """(fraction of shape decisions, decisions counted): among cue-conflict trials (two different cues) whose
    choice was the shape or the texture category (Geirhos et al. 2019)."""
    conflict = (shape >= 0) & (texture >= 0) & (shape != texture)
    by_shape = int(((choice == shape) & conflict).sum())
    by_texture = int(((choice == texture) & conflict).sum())
    decided = by_shape + by_texture
    return (by_shape / decided if decided else float("nan")), decided


def model_shape_choices(c: Coded) -> tuple[np.ndarray, np.ndarray]:
    """(choices, images) the model's shape bias counts: one decision per image (as Geirhos et al. count a
    model), or per trial in a two-way task (whose options differ between trials)."""
    if c.two_way:
        return model_choices(c), c.img
    images = np.arange(c.n_img)
    return c.probs.argmax(1), images


def shape_bias(c: Coded, humans: bool = False) -> MetricValue:
    """The model's (or with ``humans`` the pooled subjects') shape bias; no ceiling (not a similarity)."""
    if humans:
        frac, decided = shape_fraction(c.choice, c.shape[c.img], c.texture[c.img])
    else:
        choices, images = model_shape_choices(c)
        frac, decided = shape_fraction(choices, c.shape[images], c.texture[images])
    note = "" if decided else "no cue-conflict decision chose the shape or the texture category"
    return MetricValue(frac, note=note)


def shape_bias_by_category(choice: np.ndarray, shape: np.ndarray, texture: np.ndarray, n_labels: int) -> np.ndarray:
    """The shape bias within each shape category (NaN where none was decided by shape or texture)."""
    out = np.full(n_labels, np.nan)
    for k in range(n_labels):
        m = shape == k
        if m.any():
            out[k] = shape_fraction(choice[m], shape[m], texture[m])[0]
    return out


# --------------------------------------------------------------------------- from trials


def encode(trials, probs: np.ndarray) -> Coded:
    """``Coded`` trials from ``Trials`` and the model's probabilities: one row per stimulus of
    ``trials.stimuli``, one column per label of ``trials.labels`` (rows are renormalised to sum to 1)."""
    labels = {label: i for i, label in enumerate(trials.labels)}
    code = lambda col: np.array([labels[v] for v in col.tolist()], dtype=np.int64)  # noqa: E731
    img = trials.image_index()
    n_img = int(img.max()) + 1
    first = np.full(n_img, -1)
    first[img[::-1]] = np.arange(len(img))[::-1]  # each image's first trial
    truth = code(trials.truth)
    subjects = {s: i for i, s in enumerate(trials.subjects)}
    conditions = sorted(set(trials.condition.tolist())) if trials.condition is not None else [""]
    cond_of = {q: i for i, q in enumerate(conditions)}
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != (n_img, len(labels)):
        raise ValueError(f"probabilities must be (stimuli, labels) = {(n_img, len(labels))}, got {probs.shape}")
    probs = probs / probs.sum(1, keepdims=True)
    return Coded(
        img=img, subj=np.array([subjects[s] for s in trials.subject.tolist()], dtype=np.int64), truth=truth,
        choice=code(trials.choice), option=code(trials.distractor) if trials.two_way else np.full(len(img), -1),
        cond=(np.array([cond_of[q] for q in trials.condition.tolist()], dtype=np.int64)
              if trials.condition is not None else np.zeros(len(img), dtype=np.int64)),
        image_truth=truth[first], probs=probs, n_labels=len(labels), n_cond=len(conditions),
        shape=code(trials.cue_shape)[first] if trials.has_cues else None,
        texture=code(trials.cue_texture)[first] if trials.has_cues else None)
