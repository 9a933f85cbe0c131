"""Brain-Score's model-to-brain metrics, computed from one N x N Gram matrix per layer.

Every metric here sees the features only through their Gram matrix ``G = X X^T`` (N stimuli x N
stimuli) and row sums, which is what keeps a layer of D = 200,000 features cheap:

* ``pls``, ``ridge``, ``ridgecv``: regression from features to each neuroid, cross-validated, Pearson r
  per neuroid on the held-out stimuli. PLS (NIPALS, ``scale=False``) and ridge are equivariant under
  an orthogonal change of basis of the feature space, and every weight vector they build lies in
  the row space of the training features, so their predictions are unchanged when X (N x D) is
  replaced by any Z (N x N) with ``Z Z^T = X X^T`` (here ``Z = U sqrt(L)`` from ``eigh(G)``).
  No N x D x K object (and no D x K coefficient matrix) is ever built.
* ``rdm``: 1 - Pearson r between stimuli over features (from the row-centred Gram), compared with the
  neural RDM by Spearman's rho over the upper triangle.
* ``cka``: linear CKA with the unbiased HSIC estimator on ``G`` and ``Y Y^T``.

Which metrics exist, and what each of them computes, is the registry's (``registry.py``); this module
holds the arithmetic. Definitions follow ``brainscore_vision.metrics`` (regression_correlation, rdm, cka,
internal_consistency) and ``brainscore_vision.metric_helpers.transformations`` (splits).
"""

from __future__ import annotations

import numpy as np
#: Brain-Score's pls_regression: PLSRegression(n_components=25, scale=False)
PLS_COMPONENTS = 25
#: Brain-Score's ridge_regression: Ridge(alpha=1)
RIDGE_ALPHA = 1.0
#: ridgecv: alphas 10^-2 .. 10^8, three per decade, chosen by efficient leave-one-out on the training stimuli
RIDGECV_ALPHAS = tuple(float(a) for a in np.logspace(-2, 8, 31))
#: Brain-Score's Split defaults: 10 splits, 90 % train
TRAIN_SIZE = 0.9
#: fewest held-out stimuli per split for a Pearson r worth reporting
MIN_TEST_STIMULI = 10
#: bytes of float64 per block when streaming features into the Gram matrix
_BLOCK_BYTES = 64 << 20


# --------------------------------------------------------------------------- Gram matrices


def gram(features) -> tuple[np.ndarray, np.ndarray, int]:
    """``(X X^T, row sums, D)`` in float64, streaming ``features`` (N x D array, memmap or HDF5 dataset).

    In-memory arrays and memmaps are read in column blocks; other array-likes (HDF5, chunked by rows)
    in row blocks, pairwise, so no block of more than ~64 MB is held.
    """
    n, d = int(features.shape[0]), int(features.shape[1])
    g = np.zeros((n, n))
    s = np.zeros(n)
    if isinstance(features, np.ndarray):
        step = max(1, _BLOCK_BYTES // (8 * max(n, 1)))
        for c0 in range(0, d, step):
            blk = np.asarray(features[:, c0:c0 + step], dtype=np.float64)
            g += blk @ blk.T
            s += blk.sum(axis=1)
        return g, s, d
    rows = max(1, _BLOCK_BYTES // (8 * max(d, 1)))
    starts = list(range(0, n, rows))
    for i, a in enumerate(starts):
        xa = np.asarray(features[a:a + rows], dtype=np.float64)
        s[a:a + len(xa)] = xa.sum(axis=1)
        for b in starts[i:]:
            xb = xa if b == a else np.asarray(features[b:b + rows], dtype=np.float64)
            blk = xa @ xb.T
            g[a:a + len(xa), b:b + len(xb)] = blk
            g[b:b + len(xb), a:a + len(xa)] = blk.T
    return g, s, d


def gram_factor(g: np.ndarray) -> np.ndarray:
    """Z (N x N) with ``Z Z^T = G``: the features in an orthonormal basis of their row space."""
    vals, vecs = np.linalg.eigh(g)
    return vecs * np.sqrt(np.clip(vals, 0.0, None))


# --------------------------------------------------------------------------- splits


def regression_splits(n: int, groups=None, splits: int = 10, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Brain-Score's splits: ``splits`` draws of 90 % train / 10 % test, stratified by ``groups`` if given.

    Brain-Score uses scikit-learn's (Stratified)ShuffleSplit with ``random_state=1``; ``seed=1`` here
    gives its exact splits for the same stimulus order.
    """
    from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

    dummy = np.zeros(n)
    if groups is not None:
        cv = StratifiedShuffleSplit(n_splits=splits, train_size=TRAIN_SIZE, test_size=None, random_state=seed)
        return list(cv.split(dummy, np.asarray(groups)))
    cv = ShuffleSplit(n_splits=splits, train_size=TRAIN_SIZE, test_size=None, random_state=seed)
    return list(cv.split(dummy))


def test_size(n: int) -> int:
    """Held-out stimuli per split for ``n`` stimuli (scikit-learn's arithmetic: n - floor(0.9 n))."""
    return n - int(np.floor(TRAIN_SIZE * n))


# --------------------------------------------------------------------------- correlations


def pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r between matching columns of ``a`` and ``b`` (NaN where a column is constant)."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    den = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=0) / den
    r[den <= 0] = np.nan
    return np.clip(r, -1.0, 1.0)


def pearson_columns_complete(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``pearson_columns`` over the rows where both columns are finite (NaN marks a missing value).

    Without NaN this is ``pearson_columns`` itself; a column with fewer than 3 complete rows is NaN.
    """
    both = np.isfinite(a) & np.isfinite(b)
    if both.all():
        return pearson_columns(a, b)
    w = both.astype(np.float64)
    count = w.sum(axis=0)
    a, b = np.where(both, a, 0.0), np.where(both, b, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        a = (a - a.sum(axis=0) / count) * w
        b = (b - b.sum(axis=0) / count) * w
        den = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
        r = (a * b).sum(axis=0) / den
    r[~(den > 0) | (count < 3)] = np.nan
    return np.clip(r, -1.0, 1.0)


def spearman_brown(r, n: float = 2.0):
    """Reliability of the average of ``n`` halves from the correlation ``r`` between two halves."""
    r = np.asarray(r, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return n * r / (1 + (n - 1) * r)


# --------------------------------------------------------------------------- regression metrics


class PLS:
    """PLS regression exactly as scikit-learn's ``PLSRegression(n_components, scale=False)`` computes it.

    scikit-learn finds each component's weight vector by NIPALS: a power iteration
    ``x_w <- X_k^T Y_k Y_k^T X_k x_w`` (normalised), started from ``X_k^T`` times the first non-zero
    column of ``Y_k``, stopped when ``|x_w - x_w_old|^2 < 1e-6`` or after 500 steps. Every step only
    needs the cross-covariance ``C_k = X_k^T Y_k`` (features x neuroids), which deflation changes by a
    rank-one term (``C_{k+1} = C_k - (t^T t) p q^T``, since ``X_{k+1}^T t = 0``), so the same iterates are
    computed here on C in O(features x neuroids) per step instead of O(stimuli x features x 2).
    Scores, loadings, deflation and the prediction ``(X - mean) W (P^T W)^+ Q^T + mean_y`` are
    ``PLSRegression``'s; predictions agree with it to rounding (``tests/test_neural.py``).
    """

    max_iter, tol = 500, 1e-6  # PLSRegression's defaults

    def __init__(self, n_components: int = PLS_COMPONENTS):
        self.n_components = n_components

    def _weights(self, c: np.ndarray, yk: np.ndarray, eps: float) -> np.ndarray | None:
        nonzero = np.nonzero(np.any(np.abs(yk) > eps, axis=0))[0]
        if nonzero.size == 0:
            return None  # "y residual is constant": scikit-learn stops adding components
        x_w = c[:, nonzero[0]].copy()
        old = None
        for _ in range(self.max_iter):
            if old is not None:
                x_w = c @ (c.T @ old)
            x_w /= np.sqrt(x_w @ x_w) + eps
            if yk.shape[1] == 1 or (old is not None and ((x_w - old) @ (x_w - old)) < self.tol):
                break
            old = x_w
        return x_w

    def fit(self, x: np.ndarray, y: np.ndarray) -> "PLS":
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        self.x_mean, self.y_mean = x.mean(axis=0), y.mean(axis=0)
        xk, yk = x - self.x_mean, y - self.y_mean
        eps = np.finfo(np.float64).eps
        c = xk.T @ yk
        ws, ps, qs = [], [], []
        for _ in range(self.n_components):
            small = np.all(np.abs(yk) < 10 * eps, axis=0)  # as scikit-learn: near-zero residual columns -> 0
            yk[:, small] = 0.0
            c[:, small] = 0.0
            w = self._weights(c, yk, eps)
            if w is None:
                break
            t = xk @ w
            tt = t @ t
            p = xk.T @ t / tt
            q = yk.T @ t / tt
            xk -= np.outer(t, p)
            yk -= np.outer(t, q)
            c -= tt * np.outer(p, q)
            ws.append(w), ps.append(p), qs.append(q)
        if not ws:
            self.coef = np.zeros((x.shape[1], y.shape[1]))
            return self
        w, p, q = np.array(ws).T, np.array(ps).T, np.array(qs).T
        from scipy.linalg import pinv

        self.coef = w @ pinv(p.T @ w, check_finite=False) @ q.T
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.x_mean) @ self.coef + self.y_mean


def make_pls(n_features: int) -> PLS:
    """Brain-Score's ``pls_regression``: 25 components (fewer when there are fewer features), no scaling."""
    return PLS(n_components=int(min(PLS_COMPONENTS, n_features)))


def make_ridge(n_features: int):
    """Brain-Score's ``ridge_regression``: ``Ridge(alpha=1)``."""
    from sklearn.linear_model import Ridge

    return Ridge(alpha=RIDGE_ALPHA)


def make_ridgecv(n_features: int):
    """``RidgeCV`` over ``RIDGECV_ALPHAS``, alpha chosen by efficient leave-one-out on the training stimuli."""
    from sklearn.linear_model import RidgeCV

    return RidgeCV(alphas=RIDGECV_ALPHAS)


def regression_scores(z: np.ndarray, y: np.ndarray, make_regressor, split_list,
                      keep: list | None = None) -> np.ndarray:
    """Held-out Pearson r per split and neuroid (splits x K) of features ``z`` regressed onto ``y``.

    ``make_regressor(n_features)`` gives a fresh estimator (``fit``/``predict``) for each split. ``keep``: a list
    that receives ``(test indices, predictions)`` of every split (the bootstrap resamples them, ``bootstrap.py``).
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    out = np.empty((len(split_list), y.shape[1]))
    for i, (train, test) in enumerate(split_list):
        reg = make_regressor(z.shape[1])
        with warnings.catch_warnings():  # NIPALS on late, tiny components; Brain-Score's PLS runs the same way
            warnings.simplefilter("ignore", ConvergenceWarning)
            reg.fit(z[train], y[train])
        pred = np.asarray(reg.predict(z[test])).reshape(len(test), -1)
        out[i] = pearson_columns(pred, y[test])
        if keep is not None:
            keep.append((np.asarray(test), pred))
    return out


def aggregate_splits(per_split: np.ndarray) -> float:
    """Brain-Score's aggregate: the median over neuroids in each split, then the mean over splits."""
    with np.errstate(all="ignore"):
        medians = [np.nanmedian(row) if np.isfinite(row).any() else np.nan for row in per_split]
    return float(np.nanmean(medians)) if np.isfinite(medians).any() else float("nan")


# --------------------------------------------------------------------------- RDM and CKA


def rdm_from_gram(g: np.ndarray, s: np.ndarray, d: int) -> np.ndarray:
    """1 - Pearson r between stimuli over features, from ``X X^T``, row sums and the feature count.

    NaN in the rows and columns of stimuli whose features are all equal (their r is undefined).
    """
    cov = g - np.outer(s, s) / d
    var = np.diag(cov)
    sd = np.sqrt(np.clip(var, 0.0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(sd, sd)
    # a stimulus with the same value on every feature has no correlation distance; its variance is
    # then rounding residue of two equal terms, which would divide into a finite but arbitrary r
    flat = var <= 1e-12 * np.abs(np.diag(g))
    corr[flat, :] = np.nan
    corr[:, flat] = np.nan
    return 1.0 - corr


def rdm(y: np.ndarray) -> np.ndarray:
    """1 - Pearson r between the rows (stimuli) of ``y`` (stimuli x neuroids)."""
    y = np.asarray(y, dtype=np.float64)
    return rdm_from_gram(y @ y.T, y.sum(axis=1), y.shape[1])


def compare_rdms(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho between the upper triangles (diagonal excluded) of two RDMs."""
    from scipy.stats import spearmanr  # here, not at the top: scipy.stats takes a second to import

    iu = np.triu_indices(a.shape[0], k=1)
    rho = spearmanr(a[iu], b[iu])[0]
    return float(rho)


def unbiased_hsic(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741 (the paper's name)
    """Song et al. (2012) unbiased HSIC of two Gram matrices (n >= 4), as Brain-Score's ``cka``."""
    n = k.shape[0]
    k = k.copy()
    l = l.copy()  # noqa: E741
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    k1, l1 = k.sum(axis=1), l.sum(axis=1)
    term = (k * l).sum() + k1.sum() * l1.sum() / ((n - 1) * (n - 2)) - 2.0 * (k1 @ l1) / (n - 2)
    return float(term / (n * (n - 3)))


def cka_from_grams(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741
    """Linear CKA with the unbiased HSIC estimator; 0 when either self-similarity is not positive."""
    xy, xx, yy = unbiased_hsic(k, l), unbiased_hsic(k, k), unbiased_hsic(l, l)
    if xx * yy <= 0:
        return 0.0
    return float(xy / (np.sqrt(xx * yy) + 1e-12))
