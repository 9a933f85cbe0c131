"""The bootstrap of neural scores (issue 24 items 1 and 6): what a resample computes, calibration in simulation,
agreement with rsatoolbox 0.3.2, and the ceiling convention.

The resampled scores are checked against the metric recomputed on the drawn stimuli themselves (rows repeated,
the pairs between copies of a stimulus dropped as rsatoolbox's ``subsample_pattern`` does), so the closed forms
cannot drift from the definitions. Calibration is measured on simulated populations with a known answer.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import rankdata, spearmanr

from ventralkit.analysis.neural import bootstrap as B
from ventralkit.analysis.neural import metrics as M
from ventralkit.analysis.neural import neural_fit
from ventralkit.analysis.neural.compare_stats import Candidate, compare_candidates, paired_difference

PEER = Path(__file__).resolve().parents[1] / ".peers" / "rsatoolbox"


def _drawn(w_row: np.ndarray) -> np.ndarray:
    """The stimulus indices of one resample: stimulus i repeated w_i times."""
    return np.repeat(np.arange(len(w_row)), w_row.astype(int))


def _pairs_of_resample(rdm: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """rsatoolbox's resampled RDM vector: the drawn rows and columns, pairs of the same stimulus left out."""
    sub = rdm[np.ix_(idx, idx)].copy()
    sub[idx[:, None] == idx[None, :]] = np.nan
    v = sub[np.triu_indices(len(idx), 1)]
    return v[np.isfinite(v)]


def _comparator(a: np.ndarray, b: np.ndarray, name: str) -> float:
    if name == "spearman":
        return spearmanr(a, b)[0]
    if name == "rho-a":
        ra, rb = rankdata(a) - rankdata(a).mean(), rankdata(b) - rankdata(b).mean()
        return 12 * (ra @ rb) / (len(a) ** 3 - len(a))
    if name == "corr":
        return np.corrcoef(a, b)[0, 1]
    return a @ b / np.sqrt((a @ a) * (b @ b))


@pytest.mark.parametrize("comparator", B.PAIR_COMPARATORS)
def test_rdm_resample_is_the_comparison_of_the_drawn_stimuli(comparator):
    rng = np.random.default_rng(0)
    n = 25
    x = rng.normal(size=(n, 6))
    y = x + rng.normal(size=(n, 6))
    model, data = M.rdm(x), M.rdm(y)
    model[2, 9] = model[9, 2] = model[4, 5]  # a tie: average ranks of the multiset
    rs = B.draw_resamples(n, 8, seed=1)
    got = B.PairResampler(B.upper(model), B.upper(data), n, comparator)(rs)
    for b in range(8):
        idx = _drawn(rs.stimuli[b])
        want = _comparator(_pairs_of_resample(model, idx), _pairs_of_resample(data, idx),
                           "corr" if comparator == "pearson" else comparator)
        assert got[b] == pytest.approx(want, abs=1e-10)


def test_regression_and_cka_resamples_are_the_metrics_on_the_drawn_stimuli():
    rng = np.random.default_rng(1)
    n, k = 40, 5
    x = rng.normal(size=(n, 8))
    y = x[:, :3] @ rng.normal(size=(3, k)) + rng.normal(size=(n, k))
    splits = M.regression_splits(n, None, 4, seed=0)
    held: list = []
    M.regression_scores(x, y, M.make_ridge, splits, keep=held)
    rs = B.draw_resamples(n, 6, seed=2)
    got = B.regression_resampler([B.HeldOut(t, p) for t, p in held], y)(rs)
    cka = B.gram_resampler(x @ x.T, y @ y.T)(rs)
    h = np.eye(n) - 1.0 / n
    xc, yc = h @ x, h @ y  # the features centred on the scored stimuli (the score does not change)
    for b in range(6):
        w = rs.stimuli[b]
        per_split = []
        for test, pred in held:
            rows = np.repeat(np.arange(len(test)), w[test].astype(int))  # each held-out stimulus as often as drawn
            per_split.append(M.pearson_columns(pred[rows], y[test][rows]) if len(rows) else np.full(k, np.nan))
        assert got[b] == pytest.approx(M.aggregate_splits(np.array(per_split)), abs=1e-10)
        idx = _drawn(w)
        kk, ll = xc[idx] @ xc[idx].T, yc[idx] @ yc[idx].T
        same = idx[:, None] == idx[None, :]
        kk[same], ll[same] = 0.0, 0.0  # copies of a stimulus are left out, as the diagonal is
        assert cka[b] == pytest.approx(M.cka_from_grams(kk, ll), abs=1e-10)


def test_cka_resamples_do_not_move_with_the_features_mean():
    """The unbiased HSIC, hence the CKA score, is the same for features and features + a constant; its resamples must
    be too. Before the Gram matrices were centred, an entry zeroed between two copies of a stimulus stood for a
    similarity of minus the squared feature mean: with ReLU-like features (mean 3) every resample fell below the
    score (measured: 0.81 above its whole interval on the digits example)."""
    rng = np.random.default_rng(8)
    n = 60
    x = rng.normal(size=(n, 20))
    y = x[:, :5] @ rng.normal(size=(5, 8)) + rng.normal(size=(n, 8))
    rs = B.draw_resamples(n, 300, seed=0)
    score = M.cka_from_grams(x @ x.T, y @ y.T)
    plain = B.gram_resampler(x @ x.T, y @ y.T)(rs)
    for shift in (3.0, 30.0):
        xs, ys = x + shift, y + shift
        assert M.cka_from_grams(xs @ xs.T, ys @ ys.T) == pytest.approx(score, abs=1e-9)
        np.testing.assert_allclose(B.gram_resampler(xs @ xs.T, ys @ ys.T)(rs), plain, atol=1e-8)
    lo, hi = np.quantile(plain, [0.025, 0.975])
    assert lo < score < hi and abs(np.median(plain) - score) < np.std(plain)


def test_weighted_median_is_the_median_of_the_repeated_values():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 9))
    x[3, 4] = np.nan
    w = rng.integers(0, 3, size=x.shape).astype(float)
    got = B.weighted_median(x, w)
    for i in range(len(x)):
        v = np.repeat(x[i], w[i].astype(int))
        v = v[np.isfinite(v)]
        assert (np.isnan(got[i]) and v.size == 0) or got[i] == pytest.approx(np.median(v), abs=1e-12)


def test_resamples_are_seeded_and_the_same_for_every_model():
    a, b, c = B.draw_resamples(30, 50, seed=4), B.draw_resamples(30, 50, seed=4), B.draw_resamples(30, 50, seed=5)
    assert np.array_equal(a.stimuli, b.stimuli) and a.fingerprint() == b.fingerprint()
    assert not np.array_equal(a.stimuli, c.stimuli) and a.fingerprint() != c.fingerprint()
    assert (a.stimuli.sum(axis=1) == 30).all()
    with pytest.raises(ValueError):
        B.draw_resamples(30, 1)


def _population(rng, n=120, k=16, noise=0.5):
    layers = {"early": rng.normal(size=(n, 30)), "middle": rng.normal(size=(n, 80))}
    w = rng.normal(size=(80, k)) / np.sqrt(80)
    return layers, (layers["middle"] @ w)[None] + noise * rng.normal(size=(4, n, k))


def test_bootstrap_adds_intervals_and_leaves_every_number_of_the_fit_unchanged():
    rng = np.random.default_rng(3)
    layers, reps = _population(rng)
    plain = neural_fit(layers, reps, metrics=("pls", "rdm", "cka"))
    boot = neural_fit(layers, reps, metrics=("pls", "rdm", "cka"), bootstrap=200)
    for p, b in zip(plain.rows, boot.rows):
        assert (p["raw"], p["ceiling"], p["score"]) == (b["raw"], b["ceiling"], b["score"])
        assert "ci_low" not in p and b["ci_low"] < b["ci_high"] and b["sem"] > 0
    for b in boot.rows:
        if b["layer"] == "middle":  # a clear score: inside its own interval, far from 0
            assert b["ci_low"] <= b["raw"] <= b["ci_high"] and b["ci_low"] > 0.2
        samples = boot.bootstrap.scores[(b["layer"], b["metric"])]
        assert samples.shape == (200,) and b["sem"] == pytest.approx(np.std(samples, ddof=1) * np.sqrt(120 / 119))
    assert boot.options["bootstrap"]["resamples"] == 200 and plain.options["bootstrap"] is None
    assert all(np.isfinite(boot.bootstrap.ceilings[m]).all() for m in ("pls", "rdm", "cka"))
    again = neural_fit(layers, reps, metrics=("pls", "rdm", "cka"), bootstrap=200)
    assert again.bootstrap.fingerprint == boot.bootstrap.fingerprint
    assert all(np.array_equal(again.bootstrap.scores[k], v) for k, v in boot.bootstrap.scores.items())


def test_a_bootstrap_over_subjects_resamples_their_neuroids():
    rng = np.random.default_rng(4)
    layers, reps = _population(rng, k=24)
    subjects = np.repeat(["a", "b", "c", "d"], 6)
    both = neural_fit(layers, reps, metrics=("pls",), bootstrap=200, subjects=subjects)
    only = neural_fit(layers, reps, metrics=("pls",), bootstrap=200, subjects=subjects, bootstrap_over="subjects")
    stim = neural_fit(layers, reps, metrics=("pls",), bootstrap=200, subjects=subjects, bootstrap_over="stimuli")
    assert both.options["bootstrap"]["over"] == "stimuli and subjects" and both.bootstrap.n_effective == 4
    assert only.bootstrap.n_effective == 4 and stim.bootstrap.n_effective == 120
    width = {name: r.value("middle", "pls", "ci_high") - r.value("middle", "pls", "ci_low")
             for name, r in (("both", both), ("subjects", only), ("stimuli", stim))}
    assert width["both"] > max(width["subjects"], width["stimuli"]) > 0  # two sources of variance, each counted
    from ventralkit.errors import ConfigError

    with pytest.raises(ConfigError, match="--subjects"):
        neural_fit(layers, reps, metrics=("pls",), bootstrap=20, bootstrap_over="both")


# --------------------------------------------------------------------------- calibration in simulation


class _Ridge:
    """Ridge with an intercept (alpha 1), in numpy: the simulations below fit thousands of them."""

    def fit(self, x, y):
        self.mx, self.my = x.mean(0), y.mean(0)
        xc = x - self.mx
        self.coef = np.linalg.solve(xc.T @ xc + np.eye(x.shape[1]), xc.T @ (y - self.my))
        return self

    def predict(self, x):
        return (x - self.mx) @ self.coef + self.my


def _regression_trial(rng, seed, n=300, d=8, k=20, noise_y=2.0, resamples=1000):
    """Two 'layers' with the same expected predictivity (features = signal + equal noise), scored on the same
    stimuli; the planted value of layer a is its fitted mappings' correlation on the whole population
    (analytic for Gaussian signal), which is what a bootstrap over the held-out stimuli estimates.

    Every neuroid is equally predictable: with unequal ones, the median over neuroids of noisy r's is itself a
    biased estimate of the median of the true r's (the noise moves a skewed median; measured 1 standard error
    with one draw of unequal neuroids), a property of the score, not of its interval."""
    beta = np.random.default_rng(99).normal(size=(d, k))
    beta *= 2.0 / np.linalg.norm(beta, axis=0)  # every neuroid equally predictable: the median of r is not skewed
    signal = rng.normal(size=(n, d))
    y = signal @ beta + noise_y * rng.normal(size=(n, k))
    xa, xb = signal + rng.normal(size=(n, d)), signal + rng.normal(size=(n, d))
    splits = M.regression_splits(n, None, 10, seed=seed)
    rs = B.draw_resamples(n, resamples, seed=seed)
    out = {}
    for name, x in (("a", xa), ("b", xb)):
        held: list = []
        point = M.aggregate_splits(M.regression_scores(x, y, lambda _: _Ridge(), splits, keep=held))
        out[name] = (point, B.regression_resampler([B.HeldOut(t, p) for t, p in held], y)(rs))
    planted = []
    for train, _ in splits:  # population r of each split's mapping: x = s + e, y = s beta + noise
        coef = _Ridge().fit(xa[train], y[train]).coef
        r = (coef * beta).sum(0) / np.sqrt(2 * (coef ** 2).sum(0) * ((beta ** 2).sum(0) + noise_y ** 2))
        planted.append(np.median(r))
    return out, float(np.mean(planted))


def test_calibration_in_simulation_regression_ci_coverage_and_paired_false_positives():
    """200 seeded simulations: the 95 % interval covers the planted value in 92-98 %, and the paired t-test of two
    equally good layers rejects at alpha 0.05 in at most 7 % (measured: 93.0 %; 4.5 %, and 2.5 % for the bootstrap
    test)."""
    rng = np.random.default_rng(2024)
    covered = rejected = rejected_boot = 0
    for seed in range(200):
        scores, planted = _regression_trial(rng, seed)
        (pa, sa), (pb, sb) = scores["a"], scores["b"]
        iv = B.interval(sa, 300)
        covered += iv.ci_low <= planted <= iv.ci_high
        rejected += paired_difference(pa - pb, sa - sb, 300, "t-test").p < 0.05
        rejected_boot += paired_difference(pa - pb, sa - sb, 300, "bootstrap").p < 0.05
    assert 0.92 <= covered / 200 <= 0.98, covered
    assert rejected / 200 <= 0.07 and rejected_boot / 200 <= 0.07, (rejected, rejected_boot)


def test_calibration_in_simulation_rdm_paired_false_positives():
    """The same for the rdm metric (Spearman): two models, equally noisy copies of the signal, against the same
    responses. A bootstrap over stimuli is conservative for RDM comparisons (it counts each pair's own noise about
    three times; rsatoolbox's pattern bootstrap does the same), so the rate is well under alpha (measured: 0.5 %)."""
    rng = np.random.default_rng(7)
    n, rejected = 30, 0
    for seed in range(200):
        signal = rng.normal(size=(n, 20))
        data = B.upper(M.rdm(signal + rng.normal(size=(n, 20))))
        models = [B.upper(M.rdm(signal + 1.5 * rng.normal(size=(n, 20)))) for _ in range(2)]
        rs = B.draw_resamples(n, 300, seed=seed)
        (sa, sb) = [B.PairResampler(m, data, n)(rs) for m in models]
        pa, pb = [spearmanr(m, data)[0] for m in models]
        rejected += paired_difference(pa - pb, sa - sb, n, "t-test").p < 0.05
    assert rejected / 200 <= 0.07, rejected


# --------------------------------------------------------------------------- agreement with rsatoolbox 0.3.2

_PEER_SCRIPT = r"""
import json, sys
import numpy as np
from rsatoolbox.inference import eval_bootstrap, eval_bootstrap_pattern
from rsatoolbox.model import ModelFixed
from rsatoolbox.rdm import RDMs
from rsatoolbox.util.rdm_utils import batch_to_vectors
d = np.load(sys.argv[1])
np.random.seed(1)
data = RDMs(d["data"])
models = [ModelFixed(f"m{i}", RDMs(r[None])) for i, r in enumerate(d["models"])]
out = {}
for method in sys.argv[2].split(","):
    res = eval_bootstrap_pattern(models, data, method=method, N=2000, boot_noise_ceil=False)
    p = res.test_pairwise(test_type="t-test")
    ps = np.sort(batch_to_vectors(np.array([p]))[0][0])  # rsatoolbox's FDR (vis.model_plot, q = 0.05)
    crit = 0.05 * np.arange(1, len(ps) + 1) / len(ps)
    cut = crit[np.max(np.where(ps < crit)[0])] if (ps < crit).any() else 0
    both = eval_bootstrap(models, data, method=method, N=2000, boot_noise_ceil=False)
    out[method] = {"sem": res.get_sem().tolist(), "significant": (p < cut).tolist(), "sem_both": both.get_sem().tolist()}
print(json.dumps(out))
"""


def _squared_distances(x: np.ndarray) -> np.ndarray:
    return ((x[:, None] - x[None]) ** 2).sum(-1)


@pytest.mark.slow
def test_bootstrap_agrees_with_rsatoolbox(tmp_path):
    """40 stimuli x 8 subjects x 3 model RDMs: standard errors within 10 % of rsatoolbox's ``eval_bootstrap_pattern``
    (and of ``eval_bootstrap`` over subjects and stimuli) at 2,000 resamples, and the same significant pairs under
    its t-test with FDR."""
    if not (PEER / "rsatoolbox").is_dir():
        pytest.skip(f"rsatoolbox 0.3.2 is not installed in {PEER} (make peer-rsatoolbox)")
    rng = np.random.default_rng(7)
    n, subjects = 40, 8
    truth = rng.normal(size=(n, 30))
    data = np.stack([_squared_distances(truth + 0.5 * rng.normal(size=truth.shape)) for _ in range(subjects)])
    models = np.stack([_squared_distances(truth + 0.6 * rng.normal(size=truth.shape)),  # two about as good
                       _squared_distances(truth + 0.62 * rng.normal(size=truth.shape)),
                       _squared_distances(rng.normal(size=(n, 30)))])  # one unrelated
    np.savez(tmp_path / "rdms.npz", data=data, models=models)
    script = tmp_path / "peer.py"
    script.write_text(_PEER_SCRIPT)
    methods = ["spearman", "corr", "cosine"]
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "rdms.npz"), ",".join(methods)],
                          env={**os.environ, "PYTHONPATH": str(PEER)}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    peer = json.loads(done.stdout.strip().splitlines()[-1])
    pattern = B.draw_resamples(n, 2000, seed=0)
    both = dataclasses.replace(B.draw_resamples(n, 2000, seed=0, n_subjects=subjects))
    point = B.rdm_evaluations(models, data, "spearman", B.Resamples(np.ones((1, n))))
    for method in methods:
        ev = B.rdm_evaluations(models, data, method, pattern)
        sem = np.array([B.interval(ev[:, k], n).sem for k in range(3)])
        assert np.allclose(sem, peer[method]["sem"], rtol=0.10), (method, sem, peer[method]["sem"])
        ev_both = B.rdm_evaluations(models, data, method, both)
        sem_both = np.array([B.interval(ev_both[:, k], min(n, subjects)).sem for k in range(3)])
        assert np.allclose(sem_both, peer[method]["sem_both"], rtol=0.10), (method, sem_both, peer[method]["sem_both"])
        point = B.rdm_evaluations(models, data, method, B.Resamples(np.ones((1, n))))[0]
        rows = compare_candidates([Candidate(f"m{k}", point[k], ev[:, k]) for k in range(3)], n, method)
        ours = {(r["a"], r["b"]) for r in rows if r["kind"] == "pair" and r["significant"]}
        theirs = {(f"m{i}", f"m{j}") for i in range(3) for j in range(i + 1, 3) if peer[method]["significant"][i][j]}
        assert ours == theirs and ("m0", "m2") in ours and ("m0", "m1") not in ours, (method, ours, theirs)


# --------------------------------------------------------------------------- the ceiling convention


def test_both_ceiling_conventions_recorded_and_a_score_above_one_kept_and_noted():
    from ventralkit.analysis.neural.fit import ABOVE_CEILING

    rng = np.random.default_rng(5)
    layers, reps = _population(rng, noise=0.5)
    now = neural_fit(layers, reps, metrics=("pls", "cka"))
    before = neural_fit(layers, reps, metrics=("pls", "cka"), ceiling_convention="r_over_c_squared")
    r, c = now.value("middle", "pls"), now.ceilings["pls"]
    assert now.value("middle", "pls", "score") == pytest.approx(r * r / c)
    assert before.value("middle", "pls", "score") == pytest.approx((r / c) ** 2)
    assert before.value("middle", "cka", "score") == now.value("middle", "cka", "score")  # RDM / CKA: raw / c
    assert now.value("middle", "cka", "score") == pytest.approx(now.value("middle", "cka") / now.ceilings["cka"])
    assert now.options["ceiling_convention"]["matches"].startswith("brainscore-vision >= 2.3.13")
    assert "2.3.12" in before.options["ceiling_convention"]["matches"]
    # responses whose repetitions are noisier than the features' fit: r^2 exceeds the split-half reliability
    x = rng.normal(size=(200, 5))
    clean = x @ rng.normal(size=(5, 12))
    reps = clean[None] + 2.0 * rng.normal(size=(2, 200, 12))
    res = neural_fit({"x": x}, reps, metrics=("ridge",))
    score = res.value("x", "ridge", "score")
    assert score > 1 and ABOVE_CEILING in res.rows[0]["note"]  # reported as it is, never clipped
