"""Bootstrap confidence intervals: resample images (and subjects, where there are several) and score again.

A draw picks the images with replacement and, with two or more subjects, the subjects with replacement; every
trial of a picked image by a picked subject is kept once per (image copy, subject copy). The copies are new
images and subjects in the draw, so every metric is computed exactly as on the data. Two guards keep copies
from agreeing with themselves: split halves keep the copies of one trial together (``Coded.origin``), and
subject pairs skip two copies of one subject (``Coded.subj_origin``). The interval is the 2.5th and 97.5th
percentile of the draws' finite values (percentile bootstrap, Efron & Tibshirani 1993).

Which units each metric resamples:

- per-subject metrics (error consistency, the subjects' shape bias): images and subjects, recomputed on the draw;
- i1n and i2n: images only, as a correlation over images: each split's model and half signatures are computed
  once on the data and the draw picks their rows. Recomputing d' on a draw re-estimates the object means it is
  normalised by from fewer distinct images and biases the score down (synthetic 10-way data, 200 images x 12
  trials: i1n 0.237 on the data, mean 0.218 over 40 split seeds, but draws recomputed on resampled images
  averaged 0.154 and their interval [0.02, 0.26] barely held the score; picked rows: mean 0.243, [0.14, 0.34]);
- the confusion correlation and the model's shape bias: images only, recomputed on the draw. Resampling
  subjects for the metrics that pool every subject's trials (as Brain-Score does) leaves fewer distinct trials
  per image, makes each half noisier and drops the score in every draw (on the data above the confusion score
  0.984 got an interval of [0.906, 0.976] that misses it); trial noise is what their split-half ceiling measures.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .metrics import Coded

#: percentiles of the interval
CI_PERCENTILES = (2.5, 97.5)


def resample(c: Coded, image_copies: np.ndarray, subject_copies: np.ndarray | None = None) -> Coded:
    """``c`` with image i copied ``image_copies[i]`` times and subject s ``subject_copies[s]`` times (None: once)."""
    n_subj, n = c.n_subj, len(c.img)
    m = np.asarray(image_copies, dtype=np.int64)
    w = np.ones(n_subj, dtype=np.int64) if subject_copies is None else np.asarray(subject_copies, dtype=np.int64)
    counts = m[c.img] * w[c.subj]
    idx = np.repeat(np.arange(n), counts)
    rank = np.arange(len(idx)) - np.repeat(np.cumsum(counts) - counts, counts)  # which (image, subject) copy
    per_subject = w[c.subj][idx]
    img_copy, subj_copy = rank // per_subject, rank % per_subject
    new_img = (np.cumsum(m) - m)[c.img[idx]] + img_copy
    new_subj = (np.cumsum(w) - w)[c.subj[idx]] + subj_copy
    pick_img = np.repeat(np.arange(c.n_img), m)
    return Coded(
        img=new_img, subj=new_subj, truth=c.truth[idx], choice=c.choice[idx], option=c.option[idx],
        cond=c.cond[idx], image_truth=c.image_truth[pick_img], probs=c.probs[pick_img], n_labels=c.n_labels,
        n_cond=c.n_cond, shape=None if c.shape is None else c.shape[pick_img],
        texture=None if c.texture is None else c.texture[pick_img], origin=c.origin[idx],
        subj_origin=np.repeat(c.subj_origin, w), image_origin=c.image_origin[pick_img])


def bootstrap(c: Coded, compute: Callable[[np.ndarray, np.ndarray | None], dict[str, tuple[float, float]]],
              draws: int, seed: int = 0, progress=None) -> dict[str, np.ndarray]:
    """``{name: (draws, 2) array}`` of ``compute(image_copies, subject_copies)``'s ``(score, ceiled)`` per draw.

    Each draw picks the images with replacement (``image_copies[i]``: how often image i was picked) and, with
    two or more subjects, the subjects (``subject_copies``, else None); ``resample`` turns them into trials.
    ``progress``: a progress bar advanced once per draw."""
    rng = np.random.default_rng(seed)
    found: dict[str, list] = {}
    for _ in range(draws):
        m = np.bincount(rng.integers(0, c.n_img, c.n_img), minlength=c.n_img)
        w = (np.bincount(rng.integers(0, c.n_subj, c.n_subj), minlength=c.n_subj) if c.n_subj >= 2 else None)
        for name, values in compute(m, w).items():
            found.setdefault(name, []).append(values)
        if progress is not None:
            progress.update(1)
    return {name: np.asarray(v, dtype=float).reshape(len(v), -1) for name, v in found.items()}


def interval(values: np.ndarray) -> tuple[float, float]:
    """The percentile interval of the finite values (NaN, NaN when fewer than 10 are finite)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < 10:
        return float("nan"), float("nan")
    lo, hi = np.percentile(values, CI_PERCENTILES)
    return float(lo), float(hi)
