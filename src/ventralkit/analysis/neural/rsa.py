"""Representational similarity analysis as rsatoolbox 0.3.2 computes it: RDMs and RDM comparators.

Pure functions of arrays, so the bootstrap, the noise ceilings and the metric registry share them:

    d = rdm(data, "crossnobis", runs=runs, noise=precision)   # condensed vector, length N (N - 1) / 2
    s = compare(model_rdms, d, "rho-a")                        # one value per model RDM

An RDM is kept *condensed*: the upper triangle (i < j) in row-major order, the order of
``scipy.spatial.distance.squareform`` and of rsatoolbox's ``RDMs.get_vectors()``.

Definitions (facts from rsatoolbox 0.3.2, ``rsatoolbox/rdm/calc.py`` and ``rdm/compare.py``; the
numbers agree to 1e-10, ``tests/test_rsa_agreement.py``). K is the number of channels (neuroids):

* ``euclidean``: squared Euclidean distance divided by K, ``|x_i - x_j|^2 / K``.
* ``correlation``: ``1 - r`` with r Pearson's correlation of the two patterns across channels.
* ``mahalanobis``: ``(x_i - x_j)^T P (x_i - x_j) / K`` for a noise precision P (K x K); without P it is
  ``euclidean``, as in rsatoolbox.
* ``crossnobis``: cross-validated Mahalanobis distance. For each run r, the patterns averaged over
  the other runs' trials (``a``) against those of run r (``b``):
  ``(a_i - a_j)^T P (b_i - b_j) / K``, averaged over the runs (leave-one-run-out, rsatoolbox's
  ``calc_rdm_crossnobis`` with one precision). Noise independent between runs cancels in
  expectation, so the estimate is unbiased (it can be negative), unlike ``euclidean``, which adds
  twice the noise variance to every distance.
* ``poisson``: symmetrised Kullback-Leibler divergence of Poisson rates, per channel:
  ``sum_k (l_ik - l_jk)(log l_ik - log l_jk) / K`` with rates shrunk toward a prior,
  ``l = (x + lambda w) / (1 + w)`` (rsatoolbox's defaults lambda = 1, w = 0.1). Needs ``x > -lambda w``.

Comparators (two RDM vectors u, v):

* ``cosine``: ``u.v / (|u| |v|)``.
* ``pearson``: cosine of the mean-centred vectors (rsatoolbox's ``corr``).
* ``spearman``: Pearson's r of the ranks (ties get their average rank).
* ``rho-a``: ``12 sum (ru - mean)(rv - mean) / (n^3 - n)`` over the ranks: Spearman's rho without the
  tie correction of the denominator (a model predicting ties is not rewarded for them).
* ``tau-a``: Kendall's tau-a, ``(concordant - discordant) / (n (n - 1) / 2)``; a pair tied in either
  vector counts as neither.
* ``cosine_cov`` / ``corr_cov``: the cosine (for ``corr_cov`` of the mean-centred vectors) after
  whitening by the covariance of RDM entries under i.i.d. pattern noise (rsatoolbox's default
  ``sigma_k``). rsatoolbox computes it as the Frobenius cosine of the double-centred second-moment
  matrices ``H (-D / 2) H`` (``_cov_weighting``), which is what is done here.

Where rsatoolbox returns 0 for a comparison that is undefined (a constant or all-zero RDM under
``cosine``, ``pearson``, ``spearman``, ``*_cov``), NaN is returned here: a 0 would read as "no
similarity". ``rho-a`` and ``tau-a`` are defined (0) for a constant vector, as there.
"""

from __future__ import annotations

import numpy as np

from ...errors import ConfigError, DataError

RDM_METHODS = ("euclidean", "correlation", "mahalanobis", "crossnobis", "poisson")
COMPARATORS = ("spearman", "rho-a", "tau-a", "pearson", "cosine", "corr_cov", "cosine_cov")
#: rsatoolbox's ``calc_rdm`` defaults for ``poisson``: prior rate and its weight
POISSON_PRIOR_LAMBDA, POISSON_PRIOR_WEIGHT = 1.0, 0.1
#: methods that need a noise precision (estimated from the trials when none is given, see ``noise_precision``)
NOISE_METHODS = ("mahalanobis", "crossnobis")


def check_method(method: str) -> str:
    """``method`` if it is an RDM method, else a ``ConfigError`` listing them."""
    if method not in RDM_METHODS:
        raise ConfigError(f"unknown RDM method {method!r}; choose from {', '.join(RDM_METHODS)}")
    return method


def check_comparator(method: str) -> str:
    """``method`` if it is a comparator, else a ``ConfigError`` listing them."""
    if method not in COMPARATORS:
        raise ConfigError(f"unknown RDM comparator {method!r}; choose from {', '.join(COMPARATORS)}")
    return method


# --------------------------------------------------------------------------- shapes


def n_conditions(length: int) -> int:
    """The number of conditions of a condensed RDM of ``length`` entries (a ``DataError`` if none fits)."""
    n = int(round((1 + np.sqrt(1 + 8 * length)) / 2))
    if n * (n - 1) // 2 != length:
        raise DataError(f"an RDM vector of {length} entries is not the upper triangle of a square matrix")
    return n


def condensed(matrix: np.ndarray) -> np.ndarray:
    """The upper triangle (i < j, row-major) of a square matrix, or of each of a stack (..., N, N)."""
    n = matrix.shape[-1]
    iu = np.triu_indices(n, k=1)
    return matrix[..., iu[0], iu[1]]


def square(vectors: np.ndarray) -> np.ndarray:
    """Symmetric matrices with a zero diagonal from condensed vectors ((P,) -> (N, N), (M, P) -> (M, N, N))."""
    vectors = np.asarray(vectors, dtype=np.float64)
    n = n_conditions(vectors.shape[-1])
    out = np.zeros(vectors.shape[:-1] + (n, n))
    iu = np.triu_indices(n, k=1)
    out[..., iu[0], iu[1]] = vectors
    out[..., iu[1], iu[0]] = vectors
    return out


def _kernel_distances(kernel: np.ndarray, n_channels: int) -> np.ndarray:
    """Condensed ``(k_ii + k_jj - k_ij - k_ji) / K``: squared distances from an inner-product (kernel) matrix."""
    diag = np.diag(kernel)
    full = diag[None, :] + diag[:, None] - kernel - kernel.T
    return condensed(full) / n_channels


# --------------------------------------------------------------------------- RDMs


def rdm(data, method: str = "euclidean", runs=None, noise=None) -> np.ndarray:
    """The condensed RDM of ``data`` under ``method`` (see the module docstring for each definition).

    data: (conditions, channels), or (trials, conditions, channels) averaged over trials first
        (for ``crossnobis``: the trials are grouped into runs by ``runs``).
    runs: for ``crossnobis``, the run of each trial (default: each trial its own run); at least 2 runs.
    noise: a (channels x channels) noise precision for ``mahalanobis`` / ``crossnobis`` (default: identity).
    """
    check_method(method)
    data = np.asarray(data, dtype=np.float64)
    if data.ndim not in (2, 3):
        raise DataError(f"rdm: data must be (conditions, channels) or (trials, conditions, channels), "
                        f"got shape {data.shape}")
    if method == "crossnobis":
        trials = data if data.ndim == 3 else data[None]
        return crossnobis_rdm(trials, runs, noise)
    x = data.mean(axis=0) if data.ndim == 3 else data
    if method == "euclidean":
        return _kernel_distances(x @ x.T, x.shape[1])
    if method == "correlation":
        return correlation_rdm(x)
    if method == "mahalanobis":
        if noise is None:
            return _kernel_distances(x @ x.T, x.shape[1])
        return _kernel_distances(x @ _check_precision(noise, x.shape[1]) @ x.T, x.shape[1])
    return poisson_rdm(x)


def correlation_rdm(x: np.ndarray) -> np.ndarray:
    """Condensed ``1 - r`` between the rows of ``x``; NaN where a row is constant (its r is undefined)."""
    xc = x - x.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.einsum("ij,ij->i", xc, xc))
    flat = np.ptp(x, axis=1) == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        xc = xc / np.where(flat, np.nan, norm)[:, None]
    return condensed(1.0 - xc @ xc.T)


def poisson_rdm(x: np.ndarray, prior_lambda: float = POISSON_PRIOR_LAMBDA,
                prior_weight: float = POISSON_PRIOR_WEIGHT) -> np.ndarray:
    """Condensed symmetrised KL divergence of Poisson rates (shrunk toward ``prior_lambda``), per channel."""
    rates = (x + prior_lambda * prior_weight) / (1 + prior_weight)
    if not (rates > 0).all():
        raise DataError(f"poisson RDM: responses must be rates above {-prior_lambda * prior_weight:g} "
                        f"(the lowest is {float(np.min(x)):.4g}); use --rdm_method euclidean or correlation "
                        "for signed responses")
    return _kernel_distances(rates @ np.log(rates).T, x.shape[1])


def crossnobis_rdm(trials: np.ndarray, runs=None, noise=None) -> np.ndarray:
    """Leave-one-run-out crossnobis RDM of ``trials`` (trials, conditions, channels), see the module docstring.

    Each fold averages the held-out run's trials (``b``) and all other trials (``a``) per condition,
    as rsatoolbox does (trials, not run means, are averaged, so unequal runs weigh as there).
    """
    t, n, k = trials.shape
    runs = np.arange(t) if runs is None else np.asarray(runs)
    if runs.shape != (t,):
        raise DataError(f"crossnobis: {len(runs)} run labels for {t} trials; give one run label per trial")
    labels = np.unique(runs)
    if len(labels) < 2:
        raise DataError(f"crossnobis needs at least 2 runs (sessions) to cross-validate; these trials have "
                        f"{len(labels)}")
    if not np.isfinite(trials).all():
        raise DataError("crossnobis: the trials hold NaN or infinite values; every trial must be complete")
    precision = np.eye(k) if noise is None else _check_precision(noise, k)
    folds = []
    for label in labels:
        held = runs == label
        a, b = trials[~held].mean(axis=0), trials[held].mean(axis=0)
        folds.append(_kernel_distances(a @ precision @ b.T, k))
    return np.mean(folds, axis=0)


def _check_precision(noise, k: int) -> np.ndarray:
    noise = np.asarray(noise, dtype=np.float64)
    if noise.shape != (k, k):
        raise DataError(f"noise precision: expected a {k} x {k} matrix (one row per channel), got {noise.shape}")
    return noise


def noise_precision(trials: np.ndarray) -> np.ndarray:
    """The noise precision (channels x channels) of ``trials`` (trials, conditions, channels).

    rsatoolbox's ``prec_from_unbalanced(dataset, conditions)`` default: residuals about each condition's
    mean, degrees of freedom = observations - conditions, covariance shrunk toward its diagonal by
    Schaefer & Strimmer's (2005) optimal weight (``shrinkage_diag``), inverted.
    """
    t, n, k = trials.shape
    if t < 2:
        raise DataError("a noise precision needs repeated trials of each condition (at least 2)")
    if not np.isfinite(trials).all():
        raise DataError("noise precision: the trials hold NaN or infinite values; every trial must be complete")
    resid = (trials - trials.mean(axis=0, keepdims=True)).reshape(t * n, k)
    resid = resid - resid.mean(axis=0, keepdims=True)
    return np.linalg.inv(_shrinkage_diag(resid, t * n - n))


def _shrinkage_diag(resid: np.ndarray, dof: int) -> np.ndarray:
    """Schaefer-Strimmer covariance shrunk toward the diagonal (rsatoolbox's ``_covariance_diag`` arithmetic)."""
    m = resid.shape[0]
    s_sum = resid.T @ resid
    s2_sum = (resid**2).T @ (resid**2)
    s = s_sum / dof
    var = np.diag(s)
    std = np.sqrt(var)
    if not (var > 0).all():
        raise DataError("noise precision: a channel has no trial-to-trial variance; drop it or use "
                        "--rdm_method euclidean")
    s_mean = s_sum / np.outer(std, std) / (m - 1)
    s2_mean = s2_sum / np.outer(var, var) / (m - 1)
    var_hat = m / dof**2 * (s2_mean - s_mean**2)
    off = ~np.eye(len(var), dtype=bool)
    weight = float(np.clip(var_hat[off].sum() / (s_mean[off] ** 2).sum(), 0.0, 1.0)) if off.any() else 1.0
    return s * np.where(off, 1.0 - weight, 1.0)


# --------------------------------------------------------------------------- model RDMs from a Gram matrix


def rdm_from_gram(g: np.ndarray, s: np.ndarray, d: int, method: str) -> np.ndarray:
    """A model's condensed RDM from its features' Gram matrix ``X X^T``, row sums and feature count.

    A model has no trial noise, so ``mahalanobis`` and ``crossnobis`` (whose expectation is the squared
    distance of the noise-free patterns) are its ``euclidean`` RDM; ``poisson`` needs the features
    themselves (``poisson_rdm_streamed``).
    """
    check_method(method)
    if method == "correlation":
        from .metrics import rdm_from_gram as corr_from_gram

        return condensed(corr_from_gram(g, s, d))
    if method == "poisson":
        raise ConfigError("rdm_from_gram: the poisson RDM needs the features; use poisson_rdm_streamed")
    return _kernel_distances(g, d)


def poisson_rdm_streamed(features, rows: np.ndarray, block_bytes: int = 64 << 20) -> np.ndarray:
    """``poisson_rdm`` of ``features[rows]`` (an (N, D) array, memmap or HDF5 dataset), read in column blocks."""
    n, d = len(rows), int(features.shape[1])
    kernel = np.zeros((n, n))
    step = max(1, block_bytes // (8 * max(int(features.shape[0]), 1)))
    low = np.inf
    for c0 in range(0, d, step):
        blk = np.asarray(features[:, c0:c0 + step], dtype=np.float64)[rows]
        low = min(low, float(blk.min()))
        rates = (blk + POISSON_PRIOR_LAMBDA * POISSON_PRIOR_WEIGHT) / (1 + POISSON_PRIOR_WEIGHT)
        if not (rates > 0).all():
            raise DataError(f"poisson RDM: the features go down to {low:.4g}, below "
                            f"{-POISSON_PRIOR_LAMBDA * POISSON_PRIOR_WEIGHT:g}; use a layer after a ReLU or "
                            "--rdm_method euclidean / correlation")
        kernel += rates @ np.log(rates).T
    return _kernel_distances(kernel, d)


# --------------------------------------------------------------------------- comparators


def compare(a, b, method: str = "spearman"):
    """Similarity of RDM vectors ``a`` and ``b`` under ``method`` (see the module docstring).

    ``a`` (P,) or (M, P) and ``b`` (P,) or (S, P): the result has shape ``a.shape[:-1] + b.shape[:-1]``
    (a float for two vectors). Entries that are NaN in any of the vectors are left out of every
    comparison (``*_cov`` then gives NaN: its whitening needs the whole matrix).
    """
    check_comparator(method)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape[-1] != b.shape[-1]:
        raise DataError(f"compare: RDM vectors of {a.shape[-1]} and {b.shape[-1]} entries; the RDMs must "
                        "describe the same conditions")
    va, vb = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    keep = ~(np.isnan(va).any(axis=0) | np.isnan(vb).any(axis=0))
    if method in ("corr_cov", "cosine_cov") and not keep.all():
        out = np.full((len(va), len(vb)), np.nan)
    else:
        out = _COMPARE[method](va[:, keep], vb[:, keep])
    out = out.reshape(a.shape[:-1] + b.shape[:-1])
    return float(out) if out.ndim == 0 else out


def _cosine(va: np.ndarray, vb: np.ndarray) -> np.ndarray:
    """All cosines between the rows of ``va`` and ``vb`` (NaN where a row has zero length)."""
    na, nb = np.sqrt(np.einsum("ij,ij->i", va, va)), np.sqrt(np.einsum("ij,ij->i", vb, vb))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (va @ vb.T) / na[:, None] / nb[None, :]
    out[~(na > 0), :] = np.nan
    out[:, ~(nb > 0)] = np.nan
    return out


def _centred(v: np.ndarray) -> np.ndarray:
    centred = v - v.mean(axis=1, keepdims=True)
    # a constant vector centres to rounding residue, whose direction is arbitrary: make it exactly 0
    centred[np.ptp(v, axis=1) == 0] = 0.0
    return centred


def ranks(v: np.ndarray) -> np.ndarray:
    """Ranks of each row (1..P, ties get their average rank: ``scipy.stats.rankdata``)."""
    from scipy.stats import rankdata

    return rankdata(v, axis=1)


def _pearson(va, vb):
    return _cosine(_centred(va), _centred(vb))


def _spearman(va, vb):
    return _pearson(ranks(va), ranks(vb))


def _rho_a(va, vb):
    n = va.shape[1]
    ra, rb = ranks(va), ranks(vb)
    ra, rb = ra - ra.mean(axis=1, keepdims=True), rb - rb.mean(axis=1, keepdims=True)
    return (ra @ rb.T) * 12.0 / (n**3 - n)


def _tau_a(va, vb):
    out = np.empty((len(va), len(vb)))
    for i, x in enumerate(va):
        for j, y in enumerate(vb):
            out[i, j] = tau_a(x, y)
    return out


def tau_a(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-a of two vectors: (concordant - discordant pairs) / all pairs, in O(P log P).

    scipy's tau-b is ``(C - D) / sqrt((n0 - tx)(n0 - ty))`` with ``tx``, ``ty`` the pairs tied in x, y; its
    denominator is rebuilt from the tie counts to recover ``C - D``. A constant vector gives 0.
    """
    from scipy.stats import kendalltau

    n0 = len(x) * (len(x) - 1) // 2
    tx, ty = _tied_pairs(x), _tied_pairs(y)
    if n0 == 0 or tx == n0 or ty == n0:
        return 0.0
    tau_b = kendalltau(x, y, variant="b").statistic
    return float(np.clip(tau_b * np.sqrt(float(n0 - tx) * float(n0 - ty)) / n0, -1.0, 1.0))


def _tied_pairs(x: np.ndarray) -> int:
    _, counts = np.unique(x, return_counts=True)
    return int((counts * (counts - 1) // 2).sum())


def _double_centred(v: np.ndarray) -> np.ndarray:
    """``H (-D / 2) H`` of each condensed RDM, flattened (M, N*N): the whitened form of ``*_cov``."""
    g = -0.5 * square(v)
    g = g - g.mean(axis=1, keepdims=True) - g.mean(axis=2, keepdims=True) + g.mean(axis=(1, 2), keepdims=True)
    return g.reshape(len(v), -1)


def _cosine_cov(va, vb):
    return _cosine(_double_centred(va), _double_centred(vb))


def _corr_cov(va, vb):
    return _cosine_cov(_centred(va), _centred(vb))


_COMPARE = {"cosine": _cosine, "pearson": _pearson, "spearman": _spearman, "rho-a": _rho_a, "tau-a": _tau_a,
            "cosine_cov": _cosine_cov, "corr_cov": _corr_cov}
