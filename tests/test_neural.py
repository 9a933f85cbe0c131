"""Model-brain comparison (``neural_fit`` / ``ventralkit neural``): Brain-Score's metric definitions, offline.

The checks do not trust the implementation: a planted population must be found in the layer that
generated it, the invariances of RDM and CKA are properties of the definitions, the ceiling of a
noise-free population is 1 and that of pure noise about 0, and the regression scores are compared
with a plain scikit-learn loop over the raw features written from Brain-Score's definition.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import pearsonr

from ventralkit.analysis.neural import metrics as M
from ventralkit.analysis.neural import neural_fit
from ventralkit.cli import main as cli_main

N, K = 120, 16


def _layers(rng, n=N):
    return {"early": rng.normal(size=(n, 30)), "middle": rng.normal(size=(n, 80)), "late": rng.normal(size=(n, 400))}


def _planted(rng, layers, source="middle", noise=0.5, reps=4, k=K):
    x = layers[source]
    w = rng.normal(size=(x.shape[1], k)) / np.sqrt(x.shape[1])
    clean = x @ w
    return clean[None] + noise * rng.normal(size=(reps, *clean.shape))


def test_brain_score_definition_reproduced_by_a_plain_sklearn_loop():
    """pls / ridge: 90/10 ShuffleSplit, fit on raw X (D > N), scipy pearsonr per neuroid, median then mean."""
    from sklearn.cross_decomposition import PLSRegression
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import ShuffleSplit

    rng = np.random.default_rng(1)
    x = rng.normal(size=(N, 500)) + 2.0  # D > N: neural_fit works on an N x N factor of X X^T
    y = x[:, :50] @ rng.normal(size=(50, K)) + 3 * rng.normal(size=(N, K))
    res = neural_fit(x, y, metrics=("pls", "ridge"), seed=1)
    for metric, make in (("pls", lambda: PLSRegression(n_components=25, scale=False)), ("ridge", lambda: Ridge(1.0))):
        medians = []
        for train, test in ShuffleSplit(n_splits=10, train_size=0.9, random_state=1).split(x):
            pred = make().fit(x[train], y[train]).predict(x[test])
            medians.append(np.median([pearsonr(pred[:, j], y[test, j])[0] for j in range(K)]))
        assert res.value("features", metric) == pytest.approx(np.mean(medians), abs=1e-6)


def test_gram_factor_gives_the_same_predictions_as_the_features():
    """PLS (scale=False) and ridge see X only through X X^T: an N x N factor Z predicts exactly as X."""
    from sklearn.cross_decomposition import PLSRegression
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 900)) * rng.uniform(0, 3, size=900) + 1
    y = x[:, :20] @ rng.normal(size=(20, 5)) + rng.normal(size=(60, 5))
    g, _, _ = M.gram(x)
    z = M.gram_factor(g)
    assert z.shape == (60, 60)
    for reg in (lambda: PLSRegression(n_components=25, scale=False), lambda: Ridge(alpha=1.0)):
        a = reg().fit(x[:50], y[:50]).predict(x[50:])
        b = reg().fit(z[:50], y[:50]).predict(z[50:])
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-8 * np.abs(a).max())


@pytest.mark.parametrize("n,d,k", [(80, 300, 12), (80, 8, 20), (90, 40, 1)])
def test_pls_matches_scikit_learn_plsregression(n, d, k):
    """The cross-covariance form of NIPALS gives PLSRegression's predictions (D > N, D < K, one target)."""
    import warnings

    from sklearn.cross_decomposition import PLSRegression

    rng = np.random.default_rng(n + d + k)
    x = np.maximum(rng.normal(size=(n, 10)) @ rng.normal(size=(10, d)) + rng.normal(size=(n, d)), 0)
    y = x[:, :5] @ rng.normal(size=(5, k)) + rng.normal(size=(n, k))
    comps = min(25, d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = PLSRegression(n_components=comps, scale=False).fit(x[:70], y[:70]).predict(x[70:])
    ours = M.PLS(comps).fit(x[:70], y[:70]).predict(x[70:])
    np.testing.assert_allclose(ours, np.asarray(ref).reshape(ours.shape), rtol=0, atol=1e-9 * np.abs(ref).max())


def test_gram_streams_hdf5_in_row_blocks(tmp_path, monkeypatch):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(37, 50)).astype(np.float32)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("x", data=x, chunks=(4, 50))
    monkeypatch.setattr(M, "_BLOCK_BYTES", 8 * 50 * 5)  # 5 rows per block: several block pairs
    with h5py.File(tmp_path / "f.h5", "r") as f:
        g, s, d = M.gram(f["x"])
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(g, x64 @ x64.T, rtol=1e-10)
    np.testing.assert_allclose(s, x64.sum(1), rtol=1e-10)
    assert d == 50


@pytest.mark.parametrize("metric", ["pls", "ridge", "ridgecv", "rdm", "cka"])
def test_planted_population_is_found_in_its_layer(metric):
    rng = np.random.default_rng(4)
    layers = _layers(rng)
    res = neural_fit(layers, _planted(rng, layers), metrics=(metric,))
    assert res.best(metric) == "middle"
    others = max(res.value(name, metric) for name in ("early", "late"))
    assert res.value("middle", metric) > others + 0.3


def test_score_approaches_the_ceiling_as_noise_falls():
    rng = np.random.default_rng(5)
    layers = {"middle": rng.normal(size=(N, 40))}
    w = rng.normal(size=(40, K)) / np.sqrt(40)
    raws, gaps, ceiled = [], [], []
    for noise in (2.0, 0.5, 0.05):
        reps = (layers["middle"] @ w)[None] + noise * rng.normal(size=(4, N, K))
        res = neural_fit(layers, reps, metrics=("ridge",))
        raws.append(res.value("middle", "ridge"))
        gaps.append(abs(res.ceilings["ridge"] - raws[-1]))
        ceiled.append(res.value("middle", "ridge", "score"))
    assert raws[0] < raws[1] < raws[2] and gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.01
    assert ceiled[2] == pytest.approx(1.0, abs=0.02)


def test_cka_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(50, 12))
    y = x @ rng.normal(size=(12, 7)) + rng.normal(size=(50, 7))
    q, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    feats = {"x": x, "rotated_scaled": 7.5 * x @ q}
    res = neural_fit(feats, y, metrics=("cka",))
    assert 0.2 < res.value("x", "cka") < 1
    assert res.value("rotated_scaled", "cka") == pytest.approx(res.value("x", "cka"), abs=1e-10)
    assert M.cka_from_grams(x @ x.T, (3 * x @ q) @ (3 * x @ q).T) == pytest.approx(1.0, abs=1e-9)


def test_rdm_invariant_to_feature_scaling_and_matches_corrcoef():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(40, 25)) + 5
    y = x[:, :10] + rng.normal(size=(40, 10))
    feats = {"x": x, "scaled": 0.01 * x, "stimulus_affine": x * rng.uniform(1, 9, size=(40, 1)) + 3}
    res = neural_fit(feats, y, metrics=("rdm",))
    for name in feats:
        assert res.value(name, "rdm") == pytest.approx(res.value("x", "rdm"), abs=1e-10)
    g, s, d = M.gram(x)
    np.testing.assert_allclose(M.rdm_from_gram(g, s, d), 1 - np.corrcoef(x), atol=1e-10)


def test_ceiling_of_a_noise_free_population_is_one():
    rng = np.random.default_rng(8)
    clean = rng.normal(size=(N, K))
    res = neural_fit({"a": rng.normal(size=(N, 20))}, np.stack([clean] * 4), metrics=("pls", "rdm", "cka"))
    for m in ("pls", "rdm", "cka"):
        assert res.ceilings[m] == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(res.neuroid_ceiling, 1.0, atol=1e-9)


def test_split_half_ceiling_of_pure_noise_is_about_zero():
    rng = np.random.default_rng(9)
    noise = rng.normal(size=(10, 200, 60))
    res = neural_fit({"a": rng.normal(size=(200, 10))}, noise, metrics=("pls",))
    assert abs(res.ceilings["pls"]) < 0.05


def test_same_seed_same_result_other_seed_other_splits():
    rng = np.random.default_rng(10)
    layers = _layers(rng)
    reps = _planted(rng, layers, noise=2.0)
    groups = np.repeat(np.arange(6), N // 6)
    a = neural_fit(layers, reps, metrics=("pls", "ridgecv", "cka"), groups=groups, seed=3)
    b = neural_fit(layers, reps, metrics=("pls", "ridgecv", "cka"), groups=groups, seed=3)
    c = neural_fit(layers, reps, metrics=("pls", "ridgecv", "cka"), groups=groups, seed=4)
    assert a.rows == b.rows
    assert a.value("middle", "pls") != c.value("middle", "pls")
    assert a.value("middle", "cka") == c.value("middle", "cka")  # no splits in CKA


def test_stratified_splits_hold_out_every_group():
    groups = np.repeat(np.arange(10), 12)
    for _, test in M.regression_splits(120, groups, splits=10, seed=0):
        assert sorted(set(groups[test])) == list(range(10))


def test_a_missing_trial_is_left_out_of_its_stimulus_average():
    """One NaN trial (repetition 1 of stimulus 5, every neuroid) once refused the whole dataset.

    The scores must be those of the responses averaged over the 3 finite repetitions of stimulus 5.
    """
    rng = np.random.default_rng(11)
    layers = _layers(rng)
    reps = _planted(rng, layers)
    reps[1, 5, :] = np.nan
    reps[2, 7, 4] = np.inf  # an infinity is a missing trial too
    with pytest.warns(UserWarning, match=r"left out 17 NaN or infinite values in 2 of 480 trials"):
        res = neural_fit(layers, reps, metrics=("pls", "rdm", "cka"))
    assert res.neuroids == list(range(K)) and res.dropped_neuroids == 0
    assert (res.missing_values, res.missing_trials) == (17, 2)
    averaged = reps.mean(axis=0)
    averaged[5] = reps[[0, 2, 3], 5].mean(axis=0)
    averaged[7, 4] = reps[[0, 1, 3], 7, 4].mean()
    plain = neural_fit(layers, averaged, metrics=("pls", "rdm", "cka"))
    for layer in layers:
        for m in ("pls", "rdm", "cka"):
            assert res.value(layer, m) == pytest.approx(plain.value(layer, m), abs=1e-12)
    assert all(np.isfinite(c) for c in res.ceilings.values())


def test_split_half_ceiling_uses_only_the_finite_repetitions():
    """With 2 repetitions and one missing trial, every split has a half without stimulus 5: the ceiling is
    that of the other stimuli, exactly; a noise-free population keeps a ceiling of 1 whatever is missing."""
    from ventralkit.analysis.neural import split_half_ceilings

    rng = np.random.default_rng(15)
    reps = _planted(rng, _layers(rng), reps=2, noise=0.7)
    holed = reps.copy()
    holed[0, 5, :] = np.nan
    others = np.delete(reps, 5, axis=1)
    got, got_neuroid = split_half_ceilings(holed, ("pls", "rdm", "cka"))
    want, want_neuroid = split_half_ceilings(others, ("pls", "rdm", "cka"))
    for m in want:
        assert got[m] == pytest.approx(want[m], abs=1e-12), m
    np.testing.assert_allclose(got_neuroid, want_neuroid, atol=1e-12)

    clean = np.repeat(rng.normal(size=(1, N, K)), 4, axis=0)
    for r, n, k in zip(rng.integers(0, 4, 40), rng.integers(0, N, 40), rng.integers(0, K, 40)):
        clean[r, n, k] = np.nan
    ceilings, per = split_half_ceilings(clean, ("pls", "rdm", "cka"))
    assert all(c == pytest.approx(1.0, abs=1e-9) for c in ceilings.values()), ceilings
    np.testing.assert_allclose(per, 1.0, atol=1e-9)


def test_neuroid_without_any_finite_repetition_of_a_stimulus_is_dropped():
    rng = np.random.default_rng(16)
    layers = _layers(rng)
    reps = _planted(rng, layers)
    reps[:, 5, 3] = np.nan  # neuroid 3 never recorded on stimulus 5
    reps[0, 9, 2] = np.nan  # neuroid 2 misses one trial only: kept
    with pytest.warns(UserWarning) as caught:
        res = neural_fit(layers, reps, metrics=("pls",))
    assert [str(w.message).split(": ", 1)[1][:40] for w in caught] == [
        "dropped 1 of 16 neuroids with a stimulus", "left out 1 NaN or infinite value in 1 of"]
    assert "with a stimulus that has no finite repetition" in str(caught[0].message)
    assert 3 not in res.neuroids and 2 in res.neuroids and len(res.neuroids) == K - 1
    assert res.per_neuroid[("middle", "pls")].shape == (K - 1,)
    assert (res.missing_values, res.missing_trials) == (1, 1)
    flat = _planted(rng, layers)[0]
    flat[5, 3] = np.nan  # without repetitions a NaN has nothing to average with: the neuroid goes
    with pytest.warns(UserWarning, match="dropped 1 of 16 neuroids with NaN or infinite responses"):
        assert 3 not in neural_fit(layers, flat, metrics=("rdm",)).neuroids


def test_missing_scores_say_why():
    """Constant responses or features gave `--` (or a CKA of 0.000, or a PLS traceback) with no reason."""
    rng = np.random.default_rng(17)
    layers = _layers(rng)
    reps = _planted(rng, layers)
    metrics = ("pls", "ridge", "rdm", "cka")
    with pytest.warns(UserWarning, match="every neuroid responds the same to every stimulus"):
        res = neural_fit(layers, np.full((4, N, K), 2.5), metrics=metrics)
    for r in res.rows:
        assert np.isnan(r["raw"]) and np.isnan(r["ceiling"]) and np.isnan(r["score"])
        assert r["note"] == "responses are the same for every stimulus"
    assert "note" in res.table().splitlines()[0] and res.table().count("responses are the same") == 3 * 4

    with_dead = {**layers, "dead": np.zeros((N, 40)), "flat": np.full((N, 300), 0.3)}
    res = neural_fit(with_dead, reps, metrics=metrics)
    plain = neural_fit(layers, reps, metrics=metrics)
    for m in metrics:
        for layer in ("dead", "flat"):
            assert np.isnan(res.value(layer, m))
            assert res.value(layer, m, "note") == "features are the same for every stimulus"
        assert res.value("middle", m) == plain.value("middle", m) and res.value("middle", m, "note") == ""

    quiet = reps.copy()
    quiet[:, :, :3] = 1.0  # 3 silent neuroids: no r, out of the medians, counted
    with pytest.warns(UserWarning, match="3 of 16 neuroids respond the same to every stimulus"):
        res = neural_fit(layers, quiet, metrics=("pls",))
    assert res.constant_neuroids == 3 and np.isnan(res.per_neuroid[("middle", "pls")][:3]).all()
    assert res.value("middle", "pls") == pytest.approx(
        neural_fit(layers, reps[:, :, 3:], metrics=("pls",)).value("middle", "pls"), abs=1e-12)

    one = neural_fit(layers, reps[0, :, :1], metrics=("rdm", "cka"))  # 1 neuroid, 1 repetition
    assert np.isnan(one.value("middle", "rdm")) and "differ between neuroids" in one.value("middle", "rdm", "note")
    assert one.value("middle", "cka", "note") == "no ceiling: the responses have 1 repetition"
    first = rng.normal(size=(N, K))  # repetitions that contradict each other: a ceiling < 0, no ceiled score
    res = neural_fit(layers, np.stack([first, -first + 0.1 * rng.normal(size=(N, K))]), metrics=("pls",))
    assert res.ceilings["pls"] < 0 and np.isnan(res.value("middle", "pls", "score"))
    assert "<= 0 (the repetitions disagree)" in res.value("middle", "pls", "note")


def test_nan_features_are_refused_naming_the_layer():
    from ventralkit.errors import DataError

    rng = np.random.default_rng(18)
    layers = _layers(rng)
    reps = _planted(rng, layers)
    layers["late"][7, 3] = np.nan
    for metric in ("pls", "rdm"):  # pls raised a scipy ValueError, rdm gave NaN
        with pytest.raises(DataError, match=r"features late: NaN or infinite features in 1 of 120 stimuli "
                                            r"\(first in row 7\)"):
            neural_fit(layers, reps, metrics=(metric,))
    # a row that no response uses does not matter
    rows = [i for i in range(N) if i != 7]
    assert np.isfinite(neural_fit(layers, reps[:, rows], metrics=("rdm",), rows=rows).value("late", "rdm"))


# --------------------------------------------------------------------------- the command


def _write_features(folder, layers, names, fmt="npy"):
    folder.mkdir(parents=True)
    if fmt == "npy":
        for layer, arr in layers.items():
            np.save(folder / f"{layer}-t0.npy", arr.astype(np.float32))
    else:
        import h5py

        with h5py.File(folder / "features.h5", "w") as f:
            for layer, arr in layers.items():
                f.create_dataset(f"{layer}-t0", data=arr.astype(np.float32))
    (folder / "images.txt").write_text("".join(f"/data/stim/{n}\n" for n in names))


def test_cli_end_to_end_with_shuffled_named_stimuli(tmp_path, capsys):
    rng = np.random.default_rng(12)
    layers = _layers(rng)
    reps = _planted(rng, layers, noise=0.3)
    names = [f"img{i:03d}.png" for i in range(N)]
    _write_features(tmp_path / "feats", layers, names, fmt="hdf5")
    order = rng.permutation(N)  # responses in another order than images.txt, named by --stimuli
    np.save(tmp_path / "resp.npy", reps[:, order])
    (tmp_path / "stimuli.txt").write_text("".join(f"{names[i]}\n" for i in order))
    (tmp_path / "groups.txt").write_text("".join(f"obj{i % 6}\n" for i in order))
    out = tmp_path / "out"
    rc = cli_main(["neural", "--features", str(tmp_path / "feats"), "--responses", str(tmp_path / "resp.npy"),
                   "--stimuli", str(tmp_path / "stimuli.txt"), "--groups", str(tmp_path / "groups.txt"),
                   "--metrics", "pls", "rdm", "cka", "-o", str(out), "--no_progress"])
    assert rc == 0
    assert "best layer for pls: middle-t0" in capsys.readouterr().out
    lines = (out / "scores.csv").read_text().splitlines()
    assert lines[0] == "layer,metric,raw,ceiling,score,ci_low,ci_high,sem,note" and len(lines) == 1 + 3 * 3
    scores = {tuple(ln.split(",")[:2]): [float(v) for v in ln.split(",")[2:5]] for ln in lines[1:]}
    assert all(ln.endswith(",") for ln in lines[1:])  # every score defined: no note
    api = neural_fit(layers, reps, metrics=("pls", "rdm", "cka"), groups=[f"obj{i % 6}" for i in range(N)])
    # the same stimuli in the same (sorted back) order give the same rdm / cka and ceilings
    for m in ("rdm", "cka"):
        assert scores[("middle-t0", m)][0] == pytest.approx(api.value("middle", m), abs=1e-5)
    raw, ceiling, score = scores[("middle-t0", "pls")]
    assert score == pytest.approx(raw * raw / ceiling, abs=1e-4) and 0.5 < raw < ceiling
    per = (out / "per_neuroid.csv").read_text().splitlines()
    assert per[0] == "layer,metric,neuroid,r,ceiling" and len(per) == 1 + 3 * K
    run = json.loads((out / "run.json").read_text())
    assert run["best_layer"]["pls"] == "middle-t0" and run["n_repetitions"] == 4 and run["options"]["stratified"]
    assert (out / "scores.png").stat().st_size > 10_000
    assert not list(out.glob(".*partial"))


def _fails(tmp_path, capsys, argv, match):
    out = tmp_path / "out"
    rc = cli_main(["neural", *argv, "-o", str(out), "--no_progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and match in err, err
    assert not out.exists()


def test_cli_bad_inputs_one_line_exit_2_nothing_written(tmp_path, capsys):
    rng = np.random.default_rng(13)
    layers = _layers(rng)
    names = [f"img{i:03d}.png" for i in range(N)]
    feats = tmp_path / "feats"
    _write_features(feats, layers, names)
    reps = _planted(rng, layers)
    np.save(tmp_path / "resp.npy", reps)
    np.save(tmp_path / "short.npy", reps[:, :100])
    np.save(tmp_path / "one_rep.npy", reps[0])
    np.save(tmp_path / "tiny.npy", reps[:, :50])
    nan = reps.copy()
    nan[0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "images.txt").write_text("a.png\n")
    (tmp_path / "missing.txt").write_text("".join(f"{n}\n" for n in names[:-1]) + "nothere.png\n")
    (tmp_path / "fifty.txt").write_text("".join(f"{n}\n" for n in names[:50]))
    f, r = ["--features", str(feats)], ["--responses"]
    _fails(tmp_path, capsys, [*f, *r, str(tmp_path / "short.npy")], "100 stimuli (rows) but the features have 120")
    _fails(tmp_path, capsys, [*f, *r, str(tmp_path / "resp.npy"), "--stimuli", str(tmp_path / "missing.txt")],
           "'nothere.png' is not in images.txt")
    _fails(tmp_path, capsys, [*f, *r, str(tmp_path / "nan.npy"), "--strict"], "1 of 16 neuroids have NaN")
    _fails(tmp_path, capsys, [*f, *r, str(tmp_path / "tiny.npy"), "--stimuli", str(tmp_path / "fifty.txt")],
           "50 stimuli leave 5 per held-out 10% split")
    _fails(tmp_path, capsys, [*f, *r, str(tmp_path / "one_rep.npy"), "--ceiling"], "has 1")
    _fails(tmp_path, capsys, ["--features", str(tmp_path / "empty"), *r, str(tmp_path / "resp.npy")],
           "no feature arrays")
    _fails(tmp_path, capsys, [*f, *r, str(tmp_path / "nothing.npy")], "no such file")
    # NaN without --strict: the trial is left out of its stimulus' average, the run goes on
    rc = cli_main(["neural", *f, *r, str(tmp_path / "nan.npy"), "-o", str(tmp_path / "ok"), "--no_progress",
                   "--no_figure"])
    assert rc == 0 and "left out 1 NaN or infinite value in 1 of 480 trials" in capsys.readouterr().err



def test_cli_model_shortcut_extracts_features_first(tmp_path, capsys):
    from ventralkit.data.embedded import write_image_folder

    imgs = write_image_folder(tmp_path / "imgs", classes=3, per_class=4, size=32, splits=None)
    rng = np.random.default_rng(14)
    np.save(tmp_path / "resp.npy", rng.normal(size=(2, 12, 5)))
    out = tmp_path / "out"
    rc = cli_main(["neural", "--model", "Z", "--random_init", "--data_path", str(imgs), "--imsize", "32",
                   "--responses", str(tmp_path / "resp.npy"), "--metrics", "rdm", "cka", "-o", str(out),
                   "--no_progress", "--no_figure"])
    assert rc == 0, capsys.readouterr().err
    layers = [ln.split(",")[0] for ln in (out / "scores.csv").read_text().splitlines()[1:]]
    assert layers[::2] == ["V1.output-t0", "V2.output-t0", "V4.output-t0", "IT.output-t0", "decoder.avgpool-t0"]
    assert (out / "features" / "images.txt").read_text().count("\n") == 12


# --------------------------------------------------------------------------- missing values on the command line


def _neural(tmp_path, feats, resp, *extra, out="out"):
    return cli_main(["neural", "--features", str(feats), "--responses", str(resp), "-o", str(tmp_path / out),
                     "--no_progress", "--no_figure", *extra])


def test_cli_nan_features_one_line_naming_the_file_nothing_written(tmp_path, capsys):
    rng = np.random.default_rng(19)
    layers = _layers(rng)
    np.save(tmp_path / "resp.npy", _planted(rng, layers))
    layers["late"][4, 0] = np.nan
    names = [f"img{i:03d}.png" for i in range(N)]
    _write_features(tmp_path / "feats", layers, names)
    _write_features(tmp_path / "h5", layers, names, fmt="hdf5")
    r = ["--responses", str(tmp_path / "resp.npy")]
    for metric in ("pls", "rdm"):
        _fails(tmp_path, capsys, ["--features", str(tmp_path / "feats"), *r, "--metrics", metric],
               f"--features {tmp_path / 'feats' / 'late-t0.npy'}: NaN or infinite features in 1 of 120 stimuli")
    _fails(tmp_path, capsys, ["--features", str(tmp_path / "h5"), *r],
           f"--features {tmp_path / 'h5' / 'features.h5'} (dataset late-t0): NaN or infinite features")


def test_cli_model_features_with_nan_leave_nothing(tmp_path, capsys, monkeypatch):
    """With --model the features are extracted into OUT/features first; a NaN there removes what was made."""
    from ventralkit.cli import neural as neural_cli

    class Extracted(dict):  # what extract_features returns: the arrays, and no unreadable image
        skipped = ()

    def fake_extract(args, folder):
        folder.mkdir(parents=True)
        x = np.ones((12, 5))
        x[2, 1] = np.nan
        np.save(folder / "V1.output-t0.npy", x)
        return Extracted({"V1.output-t0": np.load(folder / "V1.output-t0.npy")})

    monkeypatch.setattr(neural_cli, "_extract", fake_extract)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(12):
        (imgs / f"im{i:02d}.png").write_bytes(b"")  # only listed: the fake extraction reads nothing
    np.save(tmp_path / "resp.npy", np.random.default_rng(0).normal(size=(2, 12, 5)))
    _fails(tmp_path, capsys, ["--model", "Z", "--data_path", str(imgs), "--responses", str(tmp_path / "resp.npy"),
                              "--metrics", "rdm"], "--model Z: layer V1.output-t0: NaN or infinite features")


def test_cli_says_why_scores_are_missing(tmp_path, capsys):
    rng = np.random.default_rng(20)
    layers = _layers(rng)
    names = [f"img{i:03d}.png" for i in range(N)]
    _write_features(tmp_path / "feats", layers, names)
    np.save(tmp_path / "flat.npy", np.zeros((3, N, K)))
    assert _neural(tmp_path, tmp_path / "feats", tmp_path / "flat.npy", "--metrics", "pls", "cka") == 0
    cap = capsys.readouterr()
    assert "every neuroid responds the same to every stimulus" in cap.err and len(cap.err.splitlines()) == 1
    assert "pls: no finite score (responses are the same for every stimulus)" in cap.out
    assert cap.out.splitlines()[0].split()[-1] == "note" and "no ceiling" not in cap.out
    lines = (tmp_path / "out" / "scores.csv").read_text().splitlines()
    assert lines[0] == "layer,metric,raw,ceiling,score,ci_low,ci_high,sem,note"
    assert sorted(lines[1:]) == sorted(f"{layer}-t0,{m},,,,,,,responses are the same for every stimulus"
                                       for layer in layers for m in ("pls", "cka"))
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert len(run["notes"]) == 6 and {n["note"] for n in run["notes"]} == {"responses are the same for every stimulus"}
    assert run["constant_neuroids"] == K and run["best_layer"] == {"pls": None, "cka": None}


def test_cli_missing_trials_counted_and_holes_refused_with_advice_that_works(tmp_path, capsys):
    rng = np.random.default_rng(21)
    layers = _layers(rng)
    names = [f"img{i:03d}.png" for i in range(N)]
    feats = tmp_path / "feats"
    _write_features(feats, layers, names)
    reps = _planted(rng, layers)
    trial = reps.copy()
    trial[2, 10, :] = np.nan  # one missed presentation
    np.save(tmp_path / "trial.npy", trial)
    assert _neural(tmp_path, feats, tmp_path / "trial.npy", "--metrics", "pls") == 0
    err = capsys.readouterr().err.strip()
    assert err == (f"warning: --responses {tmp_path / 'trial.npy'}: left out 16 NaN or infinite values in 1 of 480 "
                   "trials (repetition x stimulus); each stimulus is averaged over its finite repetitions")
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["missing_trials"]["values"] == 16 and run["missing_trials"]["trials"] == 1
    assert run["missing_trials"]["of_trials"] == 480 and run["n_neuroids"] == K and run["dropped_neuroids"] == 0

    holes = reps.copy()
    holes[:, 10, :] = np.nan  # stimulus 10 never shown: no neuroid can be scored on it
    holes[:, 33, :] = np.nan
    np.save(tmp_path / "holes.npy", holes)
    _fails(tmp_path / "refused", capsys, ["--features", str(feats), "--responses", str(tmp_path / "holes.npy")],
           "every neuroid has no finite repetition for some stimulus (stimulus rows 10, 33); fill them, or remove "
           "those rows from the responses and name the image of each remaining row with --stimuli")
    keep = [i for i in range(N) if i not in (10, 33)]  # the advice, followed
    np.save(tmp_path / "kept.npy", holes[:, keep])
    (tmp_path / "kept.txt").write_text("".join(f"{names[i]}\n" for i in keep))
    assert _neural(tmp_path, feats, tmp_path / "kept.npy", "--stimuli", str(tmp_path / "kept.txt"),
                   out="followed") == 0
    assert json.loads((tmp_path / "followed" / "run.json").read_text())["n_stimuli"] == N - 2


# --------------------------------------------------------------------------- the metric registry


def _mean_response_r(layer):
    """A toy similarity metric: Pearson r between each stimulus' feature norm and its mean response."""
    from ventralkit.analysis.neural import MetricScore

    return MetricScore(float(np.corrcoef(np.sqrt(np.diag(layer.g)), layer.y.mean(axis=1))[0, 1]))


def _mean_response_ceiling(halves):
    return float(M.spearman_brown(np.corrcoef(halves.first.mean(axis=1), halves.second.mean(axis=1))[0, 1]))


@pytest.fixture
def toy_metrics():
    """Two metrics registered for one test, each as a single entry, and removed after it."""
    from sklearn.linear_model import Ridge

    from ventralkit.analysis.neural import NeuralMetric, register_metric, regression_score, unregister_metric
    from ventralkit.analysis.neural.registry import neuroid_median_ceiling

    entries = [NeuralMetric("normr", "similarity", _mean_response_r, _mean_response_ceiling, "norm vs mean (r)"),
               NeuralMetric("ridge10", "regression", regression_score(lambda n: Ridge(alpha=10.0)),
                            neuroid_median_ceiling, "ridge alpha 10 (Pearson r)")]
    for entry in entries:
        register_metric(entry)
    yield [e.name for e in entries]
    for entry in entries:
        unregister_metric(entry.name)


def test_a_registered_metric_is_computed_by_its_own_entry(toy_metrics):
    """neural_fit runs a new metric from its entry alone: its score, its ceiling and its kind's ceiled score and
    splits (a metric computed as another one, as CKA used to be for any name added to METRICS, fails here)."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import ShuffleSplit

    import ventralkit.analysis.neural as neural

    assert neural.METRICS[-2:] == ("normr", "ridge10") and "ridge10" in neural.REGRESSION_METRICS
    rng = np.random.default_rng(31)
    layers = _layers(rng)
    reps = _planted(rng, layers) + 0.3 * np.abs(layers["late"][:, :1])  # a mean response the norms can follow
    res = neural_fit(layers, reps, metrics=("normr", "ridge10", "cka"), seed=1)
    y = reps.mean(axis=0)
    for name, x in layers.items():
        want = np.corrcoef(np.linalg.norm(x, axis=1), y.mean(axis=1))[0, 1]
        assert res.value(name, "normr") == pytest.approx(want, abs=1e-12)
        assert res.value(name, "normr") != pytest.approx(res.value(name, "cka"), abs=1e-3)
        medians = []
        for train, test in ShuffleSplit(n_splits=10, train_size=0.9, random_state=1).split(x):
            pred = Ridge(alpha=10.0).fit(x[train], y[train]).predict(x[test])
            medians.append(np.median([pearsonr(pred[:, j], y[test, j])[0] for j in range(K)]))
        assert res.value(name, "ridge10") == pytest.approx(np.mean(medians), abs=1e-6)
    halves = ShuffleSplit(10, train_size=0.5, random_state=1).split(reps)
    draws = [(reps[a].mean(0), reps[b].mean(0)) for a, b in halves]
    ceiling = np.mean([M.spearman_brown(np.corrcoef(h1.mean(1), h2.mean(1))[0, 1]) for h1, h2 in draws])
    assert res.ceilings["normr"] == pytest.approx(ceiling, abs=1e-12)
    raw = res.value("late", "normr")
    assert res.value("late", "normr", "score") == pytest.approx(raw / ceiling, rel=1e-12)  # similarity: divided
    raw, c = res.value("middle", "ridge10"), res.ceilings["ridge10"]
    assert res.value("middle", "ridge10", "score") == pytest.approx(raw * abs(raw) / c, rel=1e-12)  # r|r|/ceiling
    assert ("middle", "ridge10") in res.per_neuroid and ("middle", "normr") not in res.per_neuroid
    assert "normr  " in res.table() and "ridge10" in res.table()


def test_a_registered_metric_reaches_the_cli_the_files_and_the_figure(toy_metrics, tmp_path, capsys, monkeypatch):
    import ventralkit.plots.neural as figure

    rng = np.random.default_rng(32)
    layers = _layers(rng)
    _write_features(tmp_path / "feats", layers, [f"img{i:03d}.png" for i in range(N)])
    reps = _planted(rng, layers)
    np.save(tmp_path / "resp.npy", reps)
    with pytest.raises(SystemExit):
        cli_main(["neural", "--help"])
    assert "ridgecv, rdm, cka, normr, ridge10" in " ".join(capsys.readouterr().out.split())
    legends = []

    def keep_legend(fig, path):
        legends.extend(t.get_text() for t in fig.axes[0].get_legend().get_texts())
        figure.plt.close(fig)
        return path

    monkeypatch.setattr(figure, "save_figure", keep_legend)
    out = tmp_path / "out"
    rc = cli_main(["neural", "--features", str(tmp_path / "feats"), "--responses", str(tmp_path / "resp.npy"),
                   "--metrics", "normr", "ridge10", "-o", str(out), "--no_progress"])
    assert rc == 0, capsys.readouterr().err
    stdout = capsys.readouterr().out
    assert "best layer for ridge10: middle-t0" in stdout and "best layer for normr:" in stdout
    api = neural_fit(layers, reps, metrics=("normr", "ridge10"))
    rows = [ln.split(",") for ln in (out / "scores.csv").read_text().splitlines()[1:]]
    assert {(r[0], r[1]) for r in rows} == {(f"{n}-t0", m) for n in layers for m in ("normr", "ridge10")}
    for layer, metric, raw, *_ in rows:
        assert float(raw) == pytest.approx(api.value(layer[:-3], metric), abs=1e-6)
    per = (out / "per_neuroid.csv").read_text().splitlines()
    assert len(per) == 1 + 3 * K and all(",ridge10," in ln for ln in per[1:])
    assert json.loads((out / "run.json").read_text())["best_layer"]["ridge10"] == "middle-t0"
    assert any(t.startswith("norm vs mean (r)\n  best ") for t in legends)
    assert any(t.startswith("ridge alpha 10 (Pearson r)\n  best middle-t0") for t in legends)


def test_an_unregistered_metric_is_refused_everywhere(tmp_path, capsys):
    from ventralkit.analysis.neural import NeuralMetric, get_metric, metric_names, register_metric, unregister_metric
    from ventralkit.analysis.neural.fit import ceiled
    from ventralkit.analysis.neural.registry import cka_ceiling, cka_score
    from ventralkit.errors import ConfigError

    rng = np.random.default_rng(33)
    layers = _layers(rng)
    reps = _planted(rng, layers)
    register_metric(NeuralMetric("gone", "similarity", cka_score, cka_ceiling, "gone"))
    unregister_metric("gone")  # registered once: removing it leaves no trace
    listed = ", ".join(metric_names())
    assert listed == "pls, ridge, ridgecv, rdm, cka"
    for call in (lambda: neural_fit(layers, reps, metrics=("cka", "gone")), lambda: get_metric("gone"),
                 lambda: ceiled(0.5, 0.9, "gone")):
        with pytest.raises(ConfigError) as info:
            call()
        assert str(info.value) == f"unknown metric 'gone'; choose from {listed}"
    _write_features(tmp_path / "feats", layers, [f"img{i:03d}.png" for i in range(N)])
    np.save(tmp_path / "resp.npy", reps)
    with pytest.raises(SystemExit) as info:
        cli_main(["neural", "--features", str(tmp_path / "feats"), "--responses", str(tmp_path / "resp.npy"),
                  "--metrics", "gone", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1, err
    assert "argument --metrics: invalid choice: 'gone' (choose from 'pls', 'ridge', 'ridgecv', 'rdm', 'cka')" in err
    assert not (tmp_path / "out").exists()


def test_a_metric_entry_is_checked_when_registered():
    from ventralkit.analysis.neural import NeuralMetric, get_metric, register_metric
    from ventralkit.analysis.neural.registry import cka_ceiling, cka_score
    from ventralkit.errors import ConfigError

    with pytest.raises(ConfigError, match="'cka' is already registered; pass replace=True"):
        register_metric(NeuralMetric("cka", "similarity", cka_score, cka_ceiling, "again"))
    assert get_metric("cka").label == "CKA (unbiased)"
    for args, match in ((("two words", "similarity"), "use a letter followed by"),
                        (("toy", "distance"), "kind 'distance' is not one of regression, similarity")):
        with pytest.raises(ConfigError, match=match):
            NeuralMetric(*args, cka_score, cka_ceiling, "toy")
    with pytest.raises(ConfigError, match="score must be a function"):
        NeuralMetric("toy", "similarity", 0.5, cka_ceiling, "toy")


def test_neural_figure_draws_plain_data(tmp_path, monkeypatch):
    """plots.neural takes lists, not a NeuralResult: labels, the best layer, one line for a shared ceiling."""
    import ventralkit.plots.neural as figure

    drawn = {}

    def keep(fig, path):
        ax = fig.axes[0]
        drawn.update(legend=[t.get_text() for t in ax.get_legend().get_texts()], ylim=ax.get_ylim(),
                     title=ax.get_title(), ticks=[t.get_text() for t in ax.get_xticklabels()])
        figure.plt.close(fig)
        return path

    monkeypatch.setattr(figure, "save_figure", keep)
    figure.plot_layer_scores(tmp_path / "s.png", ["a", "b"], {"p": [0.2, 0.5], "q": [0.1, 0.3], "r": [np.nan] * 2},
                             {"p": 0.8, "q": 0.8, "r": np.nan}, {"p": "P", "q": "Q", "r": "R"},
                             n_stimuli=9, n_neuroids=3, n_repetitions=2, title="T")
    assert drawn["legend"] == ["P\n  best b: 0.500", "Q\n  best b: 0.300", "R", "ceiling p/q: 0.800"]
    assert drawn["title"] == "T\n9 stimuli, 3 neuroids, 2 repetitions" and drawn["ticks"] == ["a", "b"]
    assert drawn["ylim"] == pytest.approx((0.1 - 0.09, 0.8 + 0.09))
