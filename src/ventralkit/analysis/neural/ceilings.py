"""Subject-level noise ceilings and fixed evaluation of model RDMs, as rsatoolbox 0.3.2 computes them.

With one RDM per subject (or session), how well could the true model do? rsatoolbox answers with two
bounds (``rsatoolbox/inference/noise_ceiling.py``, ``boot_noise_ceiling``, and the pooling of
``util/inference_util.py``, ``pool_rdm``):

* **upper**: the mean over subjects of the comparison between each subject's RDM and the pooled RDM of
  *all* subjects (that subject included, so it overestimates what an independent model could reach);
* **lower**: the same with the pooled RDM of the *other* subjects (leave one subject out; the pool is
  noisier than the truth, so it underestimates).

The pool is the RDM that does best under the comparator: for ``cosine`` / ``cosine_cov`` each RDM
divided by its root mean square, then averaged; for ``pearson`` / ``corr_cov`` each RDM z-scored
(standard deviation with ddof = 0), averaged and shifted to a minimum of 0; for the rank comparators
(``spearman``, ``rho-a``, ``tau-a``) the average of the ranks. A fixed evaluation (``eval_fixed``) is
the comparison of each model RDM with each subject's RDM; its score is the mean over subjects.
"""

from __future__ import annotations

import numpy as np

from ...errors import DataError
from .rsa import check_comparator, compare, ranks


def pool_rdms(rdms: np.ndarray, comparator: str) -> np.ndarray:
    """The condensed RDM that pools ``rdms`` (subjects, P) for ``comparator`` (rsatoolbox's ``pool_rdm``)."""
    check_comparator(comparator)
    v = np.asarray(rdms, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if comparator in ("cosine", "cosine_cov"):
            v = v / np.sqrt(np.nanmean(v**2, axis=1, keepdims=True))
        elif comparator in ("pearson", "corr_cov"):
            v = v - np.nanmean(v, axis=1, keepdims=True)
            v = v / np.nanstd(v, axis=1, keepdims=True)
            pooled = _nan_mean(v)
            return pooled - np.nanmin(pooled)
        else:
            v = _nan_ranks(v)
    return _nan_mean(v)


def _nan_mean(v: np.ndarray) -> np.ndarray:
    """The mean over rows, NaN where the first row is NaN (rsatoolbox's masked-entry convention)."""
    keep = ~np.isnan(v[0])
    out = np.full(v.shape[1], np.nan)
    out[keep] = v[:, keep].mean(axis=0)
    return out


def _nan_ranks(v: np.ndarray) -> np.ndarray:
    """Ranks of each row among its finite entries; NaN stays NaN."""
    out = np.full(v.shape, np.nan)
    for i, row in enumerate(v):
        ok = ~np.isnan(row)
        out[i, ok] = ranks(row[ok][None])[0]
    return out


def subject_noise_ceiling(rdms: np.ndarray, comparator: str) -> tuple[float, float]:
    """``(lower, upper)`` noise-ceiling bounds of subject RDMs (subjects, P) under ``comparator``.

    Needs at least 2 subjects (with one there is nobody to leave out): a ``DataError`` otherwise.
    """
    rdms = np.asarray(rdms, dtype=np.float64)
    if rdms.ndim != 2 or len(rdms) < 2:
        raise DataError(f"a subject noise ceiling needs the RDMs of at least 2 subjects; got {len(rdms)}")
    everyone = pool_rdms(rdms, comparator)
    upper = compare(rdms, everyone, comparator)
    lower = np.array([compare(pool_rdms(np.delete(rdms, s, axis=0), comparator), rdms[s], comparator)
                      for s in range(len(rdms))])
    return float(np.mean(lower)), float(np.mean(upper))


def evaluate_fixed(model_rdms: np.ndarray, subject_rdms: np.ndarray, comparator: str) -> np.ndarray:
    """Each model RDM (M, P) compared with each subject's RDM (S, P): an (M, S) array (``eval_fixed``).

    The score of a model is the mean of its row; its standard error over subjects is ``fixed_sem``.
    """
    return np.atleast_2d(compare(np.atleast_2d(model_rdms), np.atleast_2d(subject_rdms), comparator))


def fixed_sem(evaluations: np.ndarray) -> np.ndarray:
    """The standard error over subjects of each model's mean evaluation: ``sqrt(var(row, ddof=1) / S)``.

    rsatoolbox's ``eval_fixed`` stores ``var(ddof=0) / S`` and its ``Result`` rescales it by ``S / (S - 1)``
    (``extract_variances`` -> ``_correct_1d``), which is this; NaN with one subject."""
    evaluations = np.atleast_2d(evaluations)
    s = evaluations.shape[1]
    if s < 2:
        return np.full(len(evaluations), np.nan)
    return np.sqrt(np.var(evaluations, axis=1, ddof=1) / s)
