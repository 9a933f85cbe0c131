"""RSA as rsatoolbox computes it (``analysis/neural/rsa.py``, ``ceilings.py``, ``rsa_scoring.py``), without
rsatoolbox: hand-checkable cases of every RDM method and comparator, properties the definitions imply
(crossnobis is unbiased on pure noise while euclidean is not; cosine_cov of Euclidean RDMs is linear CKA),
the noise-ceiling bounds, ``neural_fit``'s options, and bad input on the command line (one line, exit 2).
tests/test_rsa_agreement.py compares the same functions with rsatoolbox itself.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ventralkit.analysis.neural import ceilings as C
from ventralkit.analysis.neural import neural_fit
from ventralkit.analysis.neural import rsa
from ventralkit.cli import main as cli_main
from ventralkit.errors import ConfigError, DataError

# --------------------------------------------------------------------------- RDMs by hand


def test_rdm_methods_on_hand_checkable_patterns():
    x = np.array([[0.0, 0.0], [3.0, 4.0]])
    assert rsa.rdm(x, "euclidean") == pytest.approx([25.0 / 2])  # squared distance / channels
    assert rsa.rdm(x, "mahalanobis", noise=np.diag([1.0, 4.0])) == pytest.approx([(9 + 4 * 16) / 2])
    assert rsa.rdm(x, "mahalanobis") == pytest.approx([12.5])  # no precision: euclidean, as rsatoolbox
    c = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [2.0, 4.0, 6.0]])
    assert rsa.rdm(c, "correlation") == pytest.approx([2.0, 0.0, 2.0])  # 1 - r over (0,1), (0,2), (1,2)
    # poisson: rates (x + 0.1) / 1.1; (l0 - l1)(log l0 - log l1), one channel
    l0, l1 = 0.1 / 1.1, 1.0
    assert rsa.rdm(np.array([[0.0], [1.0]]), "poisson") == pytest.approx([(l0 - l1) * (np.log(l0) - np.log(l1))])


def test_crossnobis_by_hand_and_its_difference_from_euclidean():
    # 2 runs x 2 conditions x 1 channel; the condition difference is -2 in run a, -4 in run b
    trials = np.array([[[0.0], [2.0]], [[0.0], [4.0]]])
    assert rsa.rdm(trials, "crossnobis", runs=["a", "b"]) == pytest.approx([8.0])  # (-2)(-4), both folds
    assert rsa.rdm(trials, "euclidean") == pytest.approx([9.0])  # the mean difference squared: 3^2
    # unequal runs: run x has 2 trials (differences 1 and 3), y and z one each (2 and 4). rsatoolbox averages
    # the other *trials* in each fold: fold x 3 * 2, fold y (1 + 3 + 4) / 3 * 2, fold z 2 * 4 -> 58 / 9
    # (averaging run means instead would give (6 + 6 + 8) / 3)
    diffs, runs = [1.0, 3.0, 2.0, 4.0], ["x", "x", "y", "z"]
    trials = np.array([[[0.0], [d]] for d in diffs])
    assert rsa.rdm(trials, "crossnobis", runs=runs) == pytest.approx([58 / 9])


def test_crossnobis_on_pure_noise_averages_zero_while_euclidean_stays_above():
    """Noise independent between runs cancels in crossnobis (unbiased), not in euclidean (2 sigma^2 / runs)."""
    rng = np.random.default_rng(0)
    n_cond, n_runs, n_chan, sims = 20, 4, 60, 40
    cross, euclid = [], []
    for _ in range(sims):
        trials = rng.normal(size=(n_runs, n_cond, n_chan))
        cross.append(rsa.rdm(trials, "crossnobis", runs=np.arange(n_runs)).mean())
        euclid.append(rsa.rdm(trials, "euclidean").mean())
    cross, euclid = np.array(cross), np.array(euclid)
    sem = cross.std(ddof=1) / np.sqrt(sims)
    assert abs(cross.mean()) < 3 * sem, (cross.mean(), sem)
    assert (cross < 0).any() and (cross > 0).any()  # an unbiased estimate of 0 takes both signs
    assert euclid.min() > 0
    assert euclid.mean() == pytest.approx(2 / n_runs, rel=0.05)  # 2 sigma^2 / runs per channel
    assert euclid.mean() > cross.mean() + 100 * sem


def test_noise_precision_whitens_correlated_noise():
    """The shrinkage estimate from residuals inverts a strongly correlated noise covariance well enough that
    the Mahalanobis distance of two noise draws is about that of white noise (2 per channel)."""
    rng = np.random.default_rng(1)
    k = 8
    mix = np.eye(k) + 0.9 * rng.normal(size=(k, k))
    trials = rng.normal(size=(200, 30, k)) @ mix
    prec = rsa.noise_precision(trials)
    assert prec.shape == (k, k) and np.allclose(prec, prec.T)
    fresh = rng.normal(size=(2000, 2, k)) @ mix
    d = np.mean([rsa.rdm(t, "mahalanobis", noise=prec)[0] for t in fresh])
    assert d == pytest.approx(2.0, rel=0.1)
    assert rsa.rdm(fresh[0], "euclidean")[0] != pytest.approx(rsa.rdm(fresh[0], "mahalanobis", noise=prec)[0])


def test_rdm_refuses_what_it_cannot_compute():
    with pytest.raises(DataError, match="at least 2 runs"):
        rsa.rdm(np.ones((3, 4, 5)), "crossnobis", runs=["a", "a", "a"])
    with pytest.raises(DataError, match="3 run labels for 2 trials"):
        rsa.rdm(np.ones((2, 4, 5)), "crossnobis", runs=[0, 1, 2])
    with pytest.raises(DataError, match="rates above -0.1"):
        rsa.rdm(-np.ones((4, 5)), "poisson")
    with pytest.raises(ConfigError, match="choose from euclidean"):
        rsa.rdm(np.ones((4, 5)), "cityblock")
    assert np.isnan(rsa.rdm(np.array([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0]]), "correlation")).all()  # flat pattern


# --------------------------------------------------------------------------- comparators by hand


def test_comparators_on_hand_checkable_vectors():
    u, v = np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0])
    assert rsa.compare(u, v, "pearson") == pytest.approx(0.5)
    assert rsa.compare(u, v, "spearman") == pytest.approx(0.5)
    assert rsa.compare(u, v, "rho-a") == pytest.approx(12 * 1.0 / 24)
    assert rsa.compare(u, v, "tau-a") == pytest.approx(1 / 3)  # 2 concordant, 1 discordant of 3 pairs
    assert rsa.compare(u, v, "cosine") == pytest.approx(13 / 14)
    # ties: tau-a counts a tied pair as neither (tau-b would give 2 / sqrt(6)); rho-a keeps n^3 - n
    t = np.array([1.0, 1.0, 2.0])
    assert rsa.compare(t, u, "tau-a") == pytest.approx(2 / 3)
    assert rsa.compare(t, u, "rho-a") == pytest.approx(12 * 1.5 / 24)
    assert rsa.compare(t, u, "spearman") == pytest.approx(1.5 / np.sqrt(1.5 * 2))


def test_cosine_cov_of_euclidean_rdms_is_linear_cka():
    """-H D H / 2 of squared Euclidean distances is the centred Gram matrix, so cosine_cov is (biased) linear CKA."""
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(15, 7)), rng.normal(size=(15, 9))
    x[:, 0] += 3 * y[:, 0]
    xc, yc = x - x.mean(0), y - y.mean(0)
    cka = np.linalg.norm(xc.T @ yc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert rsa.compare(rsa.rdm(x, "euclidean"), rsa.rdm(y, "euclidean"), "cosine_cov") == pytest.approx(cka, rel=1e-9)
    # corr_cov ignores a constant added to every distance; cosine_cov does not
    dx, dy = rsa.rdm(x, "euclidean"), rsa.rdm(y, "euclidean")
    assert rsa.compare(dx + 5.0, dy, "corr_cov") == pytest.approx(rsa.compare(dx, dy, "corr_cov"))
    assert rsa.compare(dx + 5.0, dy, "cosine_cov") != pytest.approx(rsa.compare(dx, dy, "cosine_cov"))


@pytest.mark.parametrize("comparator", rsa.COMPARATORS)
def test_every_comparator_is_one_for_an_rdm_with_itself_and_vectorises(comparator):
    rng = np.random.default_rng(3)
    rdms = np.array([rsa.rdm(rng.normal(size=(10, 6)), "euclidean") for _ in range(4)])
    assert rsa.compare(rdms[0], rdms[0], comparator) == pytest.approx(1.0)
    grid = rsa.compare(rdms[:3], rdms, comparator)
    assert grid.shape == (3, 4)
    assert grid[1, 2] == pytest.approx(rsa.compare(rdms[1], rdms[2], comparator))
    assert rsa.compare(rdms, rdms[0], comparator).shape == (4,)


def test_undefined_comparisons_are_nan_not_zero():
    flat, u = np.ones(6), np.arange(6.0)
    for method in ("pearson", "spearman", "corr_cov"):
        assert np.isnan(rsa.compare(flat, u, method)), method
    assert np.isnan(rsa.compare(np.zeros(6), u, "cosine"))
    assert rsa.compare(flat, u, "tau-a") == 0.0 and rsa.compare(flat, u, "rho-a") == 0.0  # defined: no order
    with pytest.raises(DataError, match="same conditions"):
        rsa.compare(np.ones(6), np.ones(10), "pearson")
    # NaN entries are left out of the comparison
    v = u.copy()
    v[2] = np.nan
    assert rsa.compare(u, v, "pearson") == pytest.approx(rsa.compare(np.delete(u, 2), np.delete(u, 2), "pearson"))


# --------------------------------------------------------------------------- noise ceilings


def _subjects(rng, n_subj=6, noise=1.0, n=25, k=20):
    truth = rng.normal(size=(n, k))
    return truth, np.array([rsa.rdm(truth + noise * rng.normal(size=truth.shape), "correlation")
                            for _ in range(n_subj)])


@pytest.mark.parametrize("comparator", [c for c in rsa.COMPARATORS if c != "cosine"])
def test_noise_ceiling_bounds_bracket_the_true_model(comparator):
    """Left out: ``cosine``, which is not blind to an offset: noise raises every correlation distance, so the
    noise-free RDM is not what the subjects measure on average and may fall below the lower bound."""
    rng = np.random.default_rng(4)
    truth, subj = _subjects(rng)
    lower, upper = C.subject_noise_ceiling(subj, comparator)
    true_score = C.evaluate_fixed(rsa.rdm(truth, "correlation"), subj, comparator).mean()
    assert lower < true_score < upper


def test_noise_ceiling_of_identical_subjects_is_one_and_of_independent_ones_about_zero():
    rng = np.random.default_rng(5)
    same = np.tile(rsa.rdm(rng.normal(size=(12, 5)), "euclidean"), (3, 1))
    assert C.subject_noise_ceiling(same, "pearson") == pytest.approx((1.0, 1.0))
    indep = np.array([rsa.rdm(rng.normal(size=(60, 10)), "correlation") for _ in range(10)])
    lower, upper = C.subject_noise_ceiling(indep, "pearson")
    assert abs(lower) < 0.05  # nothing shared: the others' pool predicts nothing
    assert upper == pytest.approx(1 / np.sqrt(10), abs=0.03)  # a subject's share of a pool that includes it
    with pytest.raises(DataError, match="at least 2 subjects"):
        C.subject_noise_ceiling(indep[:1], "pearson")


def test_fixed_evaluation_sem_is_the_standard_error_over_subjects():
    evals = np.array([[0.1, 0.3, 0.2, 0.6]])
    assert C.fixed_sem(evals)[0] == pytest.approx(np.std(evals, ddof=1) / 2)


# --------------------------------------------------------------------------- neural_fit options


def _population(rng, n=40, k=24, reps=4, noise=0.7):
    layers = {"good": rng.normal(size=(n, 30)), "bad": rng.normal(size=(n, 30))}
    clean = layers["good"] @ rng.normal(size=(30, k)) / np.sqrt(30)
    return layers, clean[None] + noise * rng.normal(size=(reps, n, k))


def test_default_options_keep_the_builtin_rdm_numbers():
    rng = np.random.default_rng(6)
    layers, resp = _population(rng)
    base = neural_fit(layers, resp, metrics=("rdm",))
    same = neural_fit(layers, resp, metrics=("rdm",), rdm_method="correlation", comparator="spearman")
    assert [r["raw"] for r in base.rows] == [r["raw"] for r in same.rows]
    assert base.ceilings == same.ceilings
    from scipy.stats import spearmanr

    model = rsa.rdm(layers["good"], "correlation")
    assert base.value("good", "rdm") == pytest.approx(spearmanr(model, rsa.rdm(resp.mean(0), "correlation"))[0])


@pytest.mark.parametrize("method", rsa.RDM_METHODS)
def test_every_method_finds_the_generating_layer(method):
    rng = np.random.default_rng(7)
    layers, resp = _population(rng)
    if method == "poisson":  # rates: positive features and responses
        layers = {k: np.abs(v) for k, v in layers.items()}
        resp = np.exp(0.3 * resp)
    res = neural_fit(layers, resp, metrics=("rdm",), rdm_method=method, comparator="pearson",
                     runs=np.arange(4) if method == "crossnobis" else None)
    assert res.value("good", "rdm") > res.value("bad", "rdm") + 0.2, res.table()
    assert res.options["rsa"]["rdm_method"] == method and np.isfinite(res.ceilings["rdm"])


def test_subjects_score_is_the_mean_over_subjects_with_rsatoolbox_bounds():
    rng = np.random.default_rng(8)
    layers, resp = _population(rng, k=24)
    subjects = np.repeat(["s1", "s2", "s3"], 8)
    res = neural_fit(layers, resp, metrics=("rdm",), subjects=subjects, comparator="rho-a")
    y = resp.mean(0)
    subject_rdms = np.array([rsa.rdm(y[:, subjects == s], "correlation") for s in ("s1", "s2", "s3")])
    model = rsa.rdm(layers["good"], "correlation")
    assert res.value("good", "rdm") == pytest.approx(rsa.compare(model, subject_rdms, "rho-a").mean(), abs=1e-12)
    lower, upper = C.subject_noise_ceiling(subject_rdms, "rho-a")
    info = res.options["rsa"]
    assert info["ceiling_lower"] == pytest.approx(lower) and info["ceiling_upper"] == pytest.approx(upper)
    assert res.ceilings["rdm"] == pytest.approx(upper) and info["subjects"] == ["s1", "s2", "s3"]
    assert res.value("good", "rdm", "score") == pytest.approx(res.value("good", "rdm") / upper)


def test_subject_ceiling_needs_no_repetitions():
    rng = np.random.default_rng(9)
    layers, resp = _population(rng, reps=1)
    res = neural_fit(layers, resp[0], metrics=("rdm",), subjects=np.repeat([0, 1, 2], 8))
    assert np.isfinite(res.ceilings["rdm"]) and not res.rows[0]["note"]


def test_fit_refuses_rsa_inputs_that_do_not_match():
    rng = np.random.default_rng(10)
    layers, resp = _population(rng)
    cases = [
        (dict(subjects=np.zeros(5)), DataError, "5 labels for 24 neuroids"),
        (dict(subjects=np.zeros(24)), DataError, "one subject"),
        (dict(rdm_method="crossnobis"), ConfigError, "needs --runs"),
        (dict(rdm_method="crossnobis", runs=[0, 0, 0, 0]), DataError, "at least 2"),
        (dict(rdm_method="crossnobis", runs=[0, 1]), DataError, "2 labels for 4 repetitions"),
        (dict(comparator="kendall"), ConfigError, "choose from spearman"),
    ]
    for kwargs, err, match in cases:
        with pytest.raises(err, match=match):
            neural_fit(layers, resp, metrics=("rdm",), **kwargs)
    with pytest.raises(DataError, match="needs repeated trials"):
        neural_fit(layers, resp[0], metrics=("rdm",), rdm_method="mahalanobis")
    # one subject is fine when no ceiling is asked
    res = neural_fit(layers, resp, metrics=("rdm",), subjects=np.zeros(24), ceiling=False)
    assert np.isfinite(res.value("good", "rdm"))


# --------------------------------------------------------------------------- the command line


def _write(tmp_path, rng):
    layers, resp = _population(rng)
    feats = tmp_path / "feats"
    feats.mkdir()
    for name, arr in layers.items():
        np.save(feats / f"{name}-t0.npy", arr.astype(np.float32))
    (feats / "images.txt").write_text("".join(f"img{i}.png\n" for i in range(resp.shape[1])))
    np.save(tmp_path / "resp.npy", resp)
    return feats, resp


def _lines(path, values):
    path.write_text("".join(f"{v}\n" for v in values))
    return str(path)


def test_cli_rsa_options_reach_the_files(tmp_path, capsys):
    rng = np.random.default_rng(11)
    feats, resp = _write(tmp_path, rng)
    out = tmp_path / "out"
    rc = cli_main(["neural", "--features", str(feats), "--responses", str(tmp_path / "resp.npy"), "--metrics", "rdm",
                   "--rdm_method", "crossnobis", "--runs", _lines(tmp_path / "runs.txt", "abcd"),
                   "--comparator", "corr_cov", "--subjects", _lines(tmp_path / "subj.txt", np.repeat([1, 2, 3], 8)),
                   "-o", str(out), "--no_progress", "--no_figure"])
    assert rc == 0, capsys.readouterr().err
    run = json.loads((out / "run.json").read_text())
    info = run["options"]["rsa"]
    assert info["rdm_method"] == "crossnobis" and info["model_rdm_method"] == "euclidean"
    assert info["comparator"] == "corr_cov" and info["subjects"] == ["1", "2", "3"] and info["runs"] == list("abcd")
    assert info["ceiling_lower"] < info["ceiling_upper"] == pytest.approx(run["ceiling"]["rdm"])


def test_cli_subject_axis_is_the_same_population_as_a_label_file(tmp_path, capsys):
    rng = np.random.default_rng(11)
    feats, resp = _write(tmp_path, rng)
    common = ["--features", str(feats), "--metrics", "rdm", "--rdm_method", "crossnobis", "--runs",
              _lines(tmp_path / "runs.txt", "abcd"), "--comparator", "corr_cov", "--no_progress", "--no_figure"]
    rc = cli_main(["neural", *common, "--responses", str(tmp_path / "resp.npy"), "--subjects",
                   _lines(tmp_path / "subj.txt", np.repeat([0, 1, 2], 8)), "-o", str(tmp_path / "labels")])
    assert rc == 0, capsys.readouterr().err
    stacked = np.stack([resp[:, :, i * 8:(i + 1) * 8] for i in range(3)])  # (subjects, reps, stimuli, neuroids)
    np.save(tmp_path / "stacked.npy", stacked)
    rc = cli_main(["neural", *common, "--responses", str(tmp_path / "stacked.npy"), "--subject_axis",
                   "-o", str(tmp_path / "axis")])
    assert rc == 0, capsys.readouterr().err
    a = (tmp_path / "labels" / "scores.csv").read_text()
    assert a == (tmp_path / "axis" / "scores.csv").read_text() and "good-t0,rdm," in a


def _fails(tmp_path, capsys, argv, match):
    out = tmp_path / "bad_out"
    rc = cli_main(["neural", *argv, "-o", str(out), "--no_progress", "--no_figure"])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and match in err, err
    assert not out.exists()


def test_cli_bad_rsa_input_one_line_exit_2_nothing_written(tmp_path, capsys):
    rng = np.random.default_rng(12)
    feats, resp = _write(tmp_path, rng)
    base = ["--features", str(feats), "--responses", str(tmp_path / "resp.npy"), "--metrics", "rdm"]
    np.save(tmp_path / "one_rep.npy", resp[0])
    cases = [
        (["--subjects", _lines(tmp_path / "s5.txt", range(5))], "--subjects: 5 labels for 24 neuroids"),
        (["--subjects", _lines(tmp_path / "s1.txt", [7] * 24)], "a subject noise ceiling needs at least 2"),
        (["--rdm_method", "crossnobis"], "needs --runs FILE"),
        (["--rdm_method", "crossnobis", "--runs", _lines(tmp_path / "r1.txt", "aaaa")], "needs at least 2"),
        (["--rdm_method", "crossnobis", "--runs", _lines(tmp_path / "r3.txt", "abc")], "--runs: 3 labels for 4"),
        (["--runs", str(tmp_path / "absent.txt")], "no such file"),
        (["--comparator", "cosine", "--metrics", "pls"], "add rdm to --metrics"),
    ]
    for extra, match in cases:
        _fails(tmp_path, capsys, [*base, *extra], match)
    one_rep = ["--features", str(feats), "--responses", str(tmp_path / "one_rep.npy"), "--metrics", "rdm"]
    _fails(tmp_path, capsys, [*one_rep, "--rdm_method", "mahalanobis"], "needs repeated trials")
    _fails(tmp_path, capsys, [*one_rep, "--subject_axis"], "(subjects, stimuli, neuroids) or (subjects, repetitions")


def test_figure_legend_names_the_rsa_options(tmp_path):
    from ventralkit.analysis.neural.report import _labels

    rng = np.random.default_rng(13)
    layers, resp = _population(rng)
    assert _labels(neural_fit(layers, resp, metrics=("rdm",)))["rdm"] == "RDM (Spearman rho)"
    res = neural_fit(layers, resp, metrics=("rdm", "cka"), rdm_method="euclidean", comparator="tau-a",
                     subjects=np.repeat(["a", "b"], 12))
    assert _labels(res) == {"rdm": "RDM (euclidean, tau-a, mean of 2 subjects)", "cka": "CKA (unbiased)"}


def test_bootstrap_interval_under_rsa_options():
    """The rdm score under other RSA options is resampled like the built-in one (mean over subjects, pairs between
    copies of a stimulus dropped) where the bootstrap has the comparator in closed form; else the row says so."""
    rng = np.random.default_rng(14)
    layers, resp = _population(rng)
    subjects = np.repeat(["a", "b", "c"], 8)
    res = neural_fit(layers, resp, metrics=("rdm",), comparator="pearson", subjects=subjects, bootstrap=200)
    for r in res.rows:
        assert r["ci_low"] < r["raw"] < r["ci_high"] and 0 < r["sem"] < 0.5, r
    good, bad = (res.rows[0], res.rows[1]) if res.rows[0]["layer"] == "good" else (res.rows[1], res.rows[0])
    assert good["ci_low"] > bad["ci_high"]
    res = neural_fit(layers, resp, metrics=("rdm",), comparator="tau-a", bootstrap=50)
    assert all(np.isnan(r["ci_low"]) and "no bootstrap" in r["note"] for r in res.rows)
