"""Layer-to-area mapping on held-out stimuli (``neural --commit``) and commitment files (``--areas``).

The selection must find the layer a population was generated from, and report a score measured on
stimuli it did not choose on: the checks recompute that score independently with ``neural_fit`` on
the held-out rows, and show on pure noise why the score on the choosing stimuli would be biased.
A commitment file must mean the same to ``neural``, ``features`` and the Brain-Score adapter, and a
file naming a layer that is not there is one line with the close names.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ventralkit.analysis.neural import neural_fit
from ventralkit.analysis.neural.mapping import select_layer, selection_split
from ventralkit.cli import main as cli_main
from ventralkit.errors import ConfigError, DataError
from ventralkit.models.commitment_file import committed_features, read_commitments, write_commitments


def _chain(rng, n, depth=5, d=40):
    """Layers of a random network: each a noisy tanh of a random projection of the one before (neighbours alike)."""
    x = rng.normal(size=(n, d))
    out = {}
    for k in range(depth):
        x = np.tanh(x @ rng.normal(size=(d, d)) / np.sqrt(d) + 0.5 * rng.normal(size=(n, d)))
        out[f"L{k}.output-t0"] = x
    return out


def _population(rng, x, k=30, noise=2.0, reps=2):
    """``reps`` noisy repetitions of random linear read-outs of the z-scored layer ``x``."""
    x = x[:, x.std(0) > 0]  # a ReLU unit silent for every image carries nothing
    x = (x - x.mean(0)) / x.std(0)
    clean = x @ rng.normal(size=(x.shape[1], k)) / np.sqrt(x.shape[1])
    return clean[None] + noise * rng.normal(size=(reps, *clean.shape))


def test_generating_layer_chosen_in_95_of_100_seeds_and_the_reported_score_is_held_out():
    """Must-show: a population generated from L2 of a 5-layer chain commits L2 in at least
    95 of 100 seeds; the reported score is the chosen layer's score on the held-out stimuli alone.
    (4 repetitions with noise 2.83 x the signal: the trial average's noise is 1.41 x the signal.)"""
    hits, differs = 0, 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        layers = _chain(rng, 100)
        resp = _population(rng, layers["L2.output-t0"], noise=2.83, reps=4)
        m = select_layer(layers, resp, "IT", metric="cka", seed=seed)
        hits += m.chosen == "L2.output-t0"
        assert len(m.select_rows) == len(m.heldout_rows) == 50
        assert set(m.select_rows).isdisjoint(m.heldout_rows) and len(set(m.select_rows) | set(m.heldout_rows)) == 100
        # the reported number is neural_fit of the chosen layer on the held-out rows, nothing else
        again = neural_fit(layers[m.chosen], resp[:, m.heldout_rows], metrics=("cka",), seed=seed, rows=m.heldout_rows)
        assert m.heldout_raw == pytest.approx(again.value("features", "cka"), abs=1e-12)
        assert m.heldout_score == pytest.approx(again.value("features", "cka", "score"), abs=1e-12)
        assert np.isfinite(m.heldout_score) and m.heldout_ceiling == again.ceilings["cka"]
        chosen = next(r for r in m.rows if r["chosen"])
        assert chosen["heldout_raw"] == m.heldout_raw and chosen["select_raw"] == m.select_raw
        differs += abs(m.heldout_raw - m.select_raw) > 1e-6
    assert hits >= 95, hits
    assert differs == 100


def test_on_noise_the_choosing_score_is_biased_up_and_the_held_out_one_is_not():
    """Responses unrelated to every layer: the best of 8 layers on the choosing stimuli scores above 0 on average
    (the maximum of noisy scores); the same layer on the held-out stimuli averages about 0."""
    chosen, held = [], []
    for seed in range(40):
        rng = np.random.default_rng(1000 + seed)
        layers = {f"R{k}-t0": rng.normal(size=(60, 20)) for k in range(8)}
        resp = rng.normal(size=(2, 60, 20))
        m = select_layer(layers, resp, "V4", metric="cka", seed=seed)
        chosen.append(m.select_raw)
        held.append(m.heldout_raw)
    chosen, held = np.array(chosen), np.array(held)
    se = held.std(ddof=1) / np.sqrt(len(held))
    assert abs(held.mean()) < 3 * se
    assert chosen.mean() > held.mean() + 4 * se


def test_pls_selection_with_groups_keeps_every_label_in_both_parts():
    rng = np.random.default_rng(5)
    layers = _chain(rng, 240, depth=4, d=30)
    resp = _population(rng, layers["L1.output-t0"], k=12, noise=1.0, reps=3)
    groups = np.repeat([f"obj{i}" for i in range(8)], 30)
    m = select_layer(layers, resp, "IT", metric="pls", groups=groups, seed=1)
    assert m.chosen == "L1.output-t0"
    for part in (m.select_rows, m.heldout_rows):
        assert set(groups[part]) == set(groups) and len(part) == 120
    again = neural_fit(layers[m.chosen], resp[:, m.heldout_rows], metrics=("pls",), groups=groups[m.heldout_rows],
                       seed=1, rows=m.heldout_rows)
    assert m.heldout_raw == pytest.approx(again.value("features", "pls"), abs=1e-12)
    assert m.heldout_ceiling == pytest.approx(again.ceilings["pls"], abs=1e-12)
    assert m.heldout_score == pytest.approx(m.heldout_raw ** 2 / m.heldout_ceiling, abs=1e-12)
    # Brain-Score's earlier ceiling convention, as neural_fit applies it: (r / c)^2
    old = select_layer(layers, resp, "IT", metric="pls", groups=groups, seed=1, ceiling_convention="r_over_c_squared")
    assert old.heldout_score == pytest.approx((m.heldout_raw / m.heldout_ceiling) ** 2, abs=1e-12)
    a, b = selection_split(240, 0.5, groups, seed=1)
    np.testing.assert_array_equal(a, m.select_rows)
    assert not np.array_equal(a, selection_split(240, 0.5, groups, seed=2)[0])
    assert len(selection_split(100, 0.3, seed=0)[0]) == 30


def test_held_out_interval_is_the_bootstrap_of_the_held_out_stimuli_alone():
    """``bootstrap=N`` resamples the held-out stimuli only: the chosen layer's interval is exactly ``neural_fit``'s
    bootstrap of that layer on the held-out rows (same seed, same resamples); without a bootstrap the cells are NaN."""
    rng = np.random.default_rng(6)
    layers = _chain(rng, 220, depth=3, d=30)
    resp = _population(rng, layers["L1.output-t0"], k=12, noise=1.0, reps=3)
    m = select_layer(layers, resp, "IT", metric="pls", seed=3, bootstrap=200)
    again = neural_fit(layers[m.chosen], resp[:, m.heldout_rows], metrics=("pls",), seed=3, rows=m.heldout_rows,
                       bootstrap=200)
    lo, hi, sem = m.heldout_interval
    assert (lo, hi, sem) == pytest.approx(tuple(again.value("features", "pls", k) for k in ("ci_low", "ci_high", "sem")),
                                          abs=1e-12)
    assert lo < m.heldout_raw < hi and sem > 0
    assert all(r["ci_low"] < r["ci_high"] for r in m.rows) and m.options["bootstrap"]["resamples"] == 200
    plain = select_layer(layers, resp, "IT", metric="pls", seed=3)
    assert plain.chosen == m.chosen and plain.heldout_raw == m.heldout_raw  # the bootstrap changes no score
    assert all(np.isnan([r["ci_low"], r["ci_high"], r["sem"]]).all() for r in plain.rows)
    assert plain.options["bootstrap"] is None and " [" not in plain.summary()
    with pytest.raises(ConfigError, match="bootstrap"):
        select_layer(layers, resp, "IT", metric="pls", bootstrap=1)


def test_select_layer_and_score_time_bins_are_public_with_docstrings():
    import ventralkit
    from ventralkit.analysis.neural.timebins import score_time_bins

    assert ventralkit.select_layer is select_layer and ventralkit.score_time_bins is score_time_bins
    assert {"select_layer", "score_time_bins", "neural_fit"} <= set(ventralkit.__all__)
    for f in (ventralkit.select_layer, ventralkit.score_time_bins):
        assert "bootstrap" in f.__doc__ and len(f.__doc__.split()) > 40


def test_selection_refuses_what_it_cannot_do_in_one_line():
    rng = np.random.default_rng(6)
    layers = _chain(rng, 120, depth=2)
    resp = _population(rng, layers["L0.output-t0"])
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        select_layer(layers, resp, "IT", metric="cka", select_fraction=1.0)
    with pytest.raises(ConfigError, match="--area NAME"):
        select_layer(layers, resp, "", metric="cka")
    with pytest.raises(DataError, match=r"selection part: 60 of 120 stimuli.*6 per held-out 10% split"):
        select_layer(layers, resp, "IT", metric="pls")  # 60 stimuli per part are too few for a regression


# --------------------------------------------------------------------------- commitment files


def _write(path, data):
    path.write_text(json.dumps(data))
    return path


def test_commitment_file_round_trip_and_every_bad_file_in_one_line(tmp_path):
    good = write_commitments(tmp_path / "c.json", {"IT": {"layer": "IT.output", "time_step": 1, "score": 0.5},
                                                   "V4": {"layer": "V4.output", "time_step": None}}, {"seed": 3})
    c = read_commitments(good)
    assert c.areas["IT"].module == "IT.output" and c.step("IT") == 1 and c.step("V4") == -1
    assert c.entries["IT"]["score"] == 0.5 and c.provenance[str(good)] == {"seed": 3}
    feats = ["V4.output-t0", "V4.output-t1", "V4.output-t2", "IT.output-t0", "IT.output-t1"]
    assert committed_features(c, feats, "the feature folder") == {"IT": "IT.output-t1", "V4": "V4.output-t2"}
    assert committed_features(c, feats, "x", ["V4"]) == {"V4": "V4.output-t2"}
    bad = {
        "no such file": tmp_path / "nothere.json",
        "not a JSON file": tmp_path / "bad.json",
        'no "areas" object': _write(tmp_path / "noareas.json", {"IT": {"layer": "IT.output"}}),
        'has no "time_step"': _write(tmp_path / "nostep.json", {"areas": {"IT": {"layer": "IT.output"}}}),
        'has no "layer"': _write(tmp_path / "nolayer.json", {"areas": {"IT": {"time_step": 0}}}),
        "time_step \"1\"; give an integer": _write(tmp_path / "str.json",
                                                  {"areas": {"IT": {"layer": "a", "time_step": "1"}}}),
    }
    (tmp_path / "bad.json").write_text("{nope")
    for message, path in bad.items():
        with pytest.raises(DataError, match=message) as err:
            read_commitments(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DataError, match="area 'IT' is also committed in"):
        read_commitments([good, good])
    with pytest.raises(DataError, match=r"commits layer 'IT.outptu', which the feature folder lacks; close names: "
                                        r"IT.output"):
        committed_features(read_commitments(_write(tmp_path / "typo.json",
                                                   {"areas": {"IT": {"layer": "IT.outptu", "time_step": 0}}})),
                           feats, "the feature folder")
    with pytest.raises(DataError, match="commits IT.output at time step 4, but the feature folder holds it at steps 0, 1"):
        committed_features(read_commitments(_write(tmp_path / "step.json",
                                                   {"areas": {"IT": {"layer": "IT.output", "time_step": 4}}})),
                           feats, "the feature folder")


def test_brainscore_adapter_takes_the_commitment_file(tmp_path):
    from ventralkit import create_model
    from ventralkit.integrations.brainscore import commitment_region_map

    s = create_model("cornet_s")
    path = _write(tmp_path / "c.json", {"areas": {"IT": {"layer": "IT.output", "time_step": 0},
                                                  "V4": {"layer": "V4.output", "time_step": None},
                                                  "V2": {"layer": "V2.output", "time_step": -2},
                                                  "V1": {"layer": "V2.conv_input", "time_step": 0}}})
    assert commitment_region_map(s, path) == {"IT": "IT.output-t0", "V4": "V4.output", "V2": "V2.output-t0",
                                              "V1": "V2.conv_input-t0"}
    with pytest.raises(DataError, match=r"'IT.outpt', which model cornet_s lacks; close names: IT.output"):
        commitment_region_map(s, _write(tmp_path / "typo.json", {"areas": {"IT": {"layer": "IT.outpt",
                                                                                  "time_step": 0}}}))
    with pytest.raises(DataError, match=r"V4.output at time step 4, but in model cornet_s it runs at steps 0..3"):
        commitment_region_map(s, _write(tmp_path / "s.json", {"areas": {"V4": {"layer": "V4.output",
                                                                               "time_step": 4}}}))


# --------------------------------------------------------------------------- the commands


@pytest.fixture(scope="module")
def model_features(tmp_path_factory):
    """CORnet-Z (random weights, 32 px) features of 40 images, and responses planted from its V1."""
    import torch

    from ventralkit.data.embedded import write_image_folder

    root = tmp_path_factory.mktemp("mapping")
    imgs = write_image_folder(root / "imgs", classes=4, per_class=10, size=32, splits=None)
    torch.manual_seed(0)  # the random weights, hence the features and the population planted in them
    rc = cli_main(["features", "--model", "Z", "--random_init", "--data_path", str(imgs), "--imsize", "32",
                   "-o", str(root / "feats"), "--no_progress"])
    assert rc == 0
    rng = np.random.default_rng(0)
    resp = _population(rng, np.load(root / "feats" / "V1.output-t0.npy").astype(np.float64), k=20, noise=0.3)
    np.save(root / "resp.npy", resp)
    return root, imgs


def test_commitment_round_trip_neural_writes_it_features_and_neural_use_it(model_features, tmp_path, capsys):
    root, imgs = model_features
    out = tmp_path / "neural"
    rc = cli_main(["neural", "--features", str(root / "feats"), "--responses", str(root / "resp.npy"),
                   "--metrics", "cka", "rdm", "--commit", "--area", "V1", "-o", str(out), "--no_progress",
                   "--no_figure"])
    cap = capsys.readouterr()
    text = cap.out
    assert rc == 0, cap.err
    assert "committed V1 -> V1.output-t0: chosen by cka on 20 stimuli" in text
    commitment = json.loads((out / "commitment.json").read_text())
    entry = commitment["areas"]["V1"]
    assert (entry["layer"], entry["time_step"], entry["metric"]) == ("V1.output", 0, "cka")
    assert commitment["provenance"]["split"]["V1"]["select_fraction"] == 0.5
    rows = (out / "mapping.csv").read_text().splitlines()
    assert rows[0] == ("area,feature,layer,time_step,metric,select_raw,heldout_raw,heldout_score,ci_low,ci_high,sem,"
                       "chosen,note")
    assert len(rows) == 1 + 5 and sum(r.split(",")[11] == "1" for r in rows[1:]) == 1
    # --bootstrap (default 1000) is not silently unused: every held-out score has its interval, in the file and the line
    for r in rows[1:]:
        cells = r.split(",")
        assert float(cells[8]) <= float(cells[6]) + 0.05 and float(cells[9]) >= float(cells[6]) - 0.05
        assert float(cells[8]) < float(cells[9]) and float(cells[10]) > 0
    assert entry["heldout_ci"][0] < entry["heldout_raw"] < entry["heldout_ci"][1] and entry["heldout_sem"] > 0
    assert f"held-out raw {entry['heldout_raw']:.3f} [{entry['heldout_ci'][0]:.3f}, " in text
    assert commitment["provenance"]["split"]["V1"]["bootstrap"]["resamples"] == 1000
    assert (out / "scores.csv").read_text().count("\n") == 1 + 5 * 2  # every layer's scores stay reported
    # features --areas: exactly the committed layer and time step
    rc = cli_main(["features", "--model", "Z", "--random_init", "--data_path", str(imgs), "--imsize", "32",
                   "--areas", str(out / "commitment.json"), "-o", str(tmp_path / "feats2"), "--no_progress"])
    assert rc == 0, capsys.readouterr().err
    manifest = json.loads((tmp_path / "feats2" / "features.json").read_text())
    assert list(manifest["features"]) == ["V1.output-t0"]
    # neural --areas: scores the committed layer only
    rc = cli_main(["neural", "--features", str(root / "feats"), "--responses", str(root / "resp.npy"),
                   "--metrics", "cka", "--areas", str(out / "commitment.json"), "-o", str(tmp_path / "n2"),
                   "--no_progress", "--no_figure"])
    assert rc == 0
    lines = (tmp_path / "n2" / "scores.csv").read_text().splitlines()
    assert [ln.split(",")[0] for ln in lines[1:]] == ["V1.output-t0"]
    # neural --model --areas: extracts the committed module, scores the committed time step
    rc = cli_main(["neural", "--model", "Z", "--random_init", "--data_path", str(imgs), "--imsize", "32",
                   "--responses", str(root / "resp.npy"), "--metrics", "cka", "--areas", str(out / "commitment.json"),
                   "-o", str(tmp_path / "n3"), "--no_progress", "--no_figure"])
    assert rc == 0, capsys.readouterr().err
    lines = (tmp_path / "n3" / "scores.csv").read_text().splitlines()
    assert [ln.split(",")[0] for ln in lines[1:]] == ["V1.output-t0"]
    assert sorted(p.name for p in (tmp_path / "n3" / "features").glob("*-t*.npy")) == ["V1.output-t0.npy"]


def _fails(capsys, argv, match, out):
    rc = cli_main([*argv, "--no_progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and match in err, err
    assert not out.exists()


def test_bad_mapping_input_one_line_exit_2_nothing_written(model_features, tmp_path, capsys):
    root, imgs = model_features
    typo = _write(tmp_path / "typo.json", {"areas": {"IT": {"layer": "IT.outptu", "time_step": 0}}})
    step = _write(tmp_path / "step.json", {"areas": {"IT": {"layer": "IT.output", "time_step": 3}}})
    out = tmp_path / "out"
    neural = ["neural", "--features", str(root / "feats"), "--responses", str(root / "resp.npy"), "-o", str(out),
              "--metrics", "cka"]
    _fails(capsys, [*neural, "--areas", str(typo)], "commits layer 'IT.outptu', which --features", out)
    _fails(capsys, [*neural, "--areas", str(typo)], "close names: IT.output", out)
    _fails(capsys, [*neural, "--areas", str(step)], "at time step 3, but", out)
    _fails(capsys, [*neural, "--areas", str(tmp_path / "none.json")], "no such file", out)
    _fails(capsys, [*neural, "--commit"], "--commit needs --area NAME", out)
    _fails(capsys, [*neural, "--commit", "--area", "IT", "--areas", str(step)], "not both", out)
    _fails(capsys, [*neural, "--commit", "--area", "IT", "--select_fraction", "1.5"], "strictly between 0 and 1", out)
    _fails(capsys, [*neural, "--select_fraction", "0.3"], "--select_fraction needs --commit", out)
    _fails(capsys, [*neural, "--commit", "--area", "IT", "--select_fraction", "0.05"],
           "(selection part: 2 of 40 stimuli, --select_fraction 0.05): 2 stimuli; the metrics need at least 4", out)
    features = ["features", "--model", "Z", "--random_init", "--data_path", str(imgs), "--imsize", "32", "-o", str(out)]
    _fails(capsys, [*features, "--areas", str(typo)], "which model cornet_z lacks; close names: IT.output",
           out)
    _fails(capsys, [*features, "--areas", str(typo), "--layers", "V1.output"], "not both", out)
    _fails(capsys, [*features, "--areas", str(tmp_path / "none.json")], "no such file", out)


def test_features_areas_extracts_each_committed_time_step_null_the_last(model_features, tmp_path, capsys):
    """CORnet-S runs V4 four times and IT twice: V4 at step 1 and IT at null (the last) give V4.output-t1, IT.output-t1."""
    root, imgs = model_features
    path = _write(tmp_path / "c.json", {"areas": {"IT": {"layer": "IT.output", "time_step": None},
                                                  "V4": {"layer": "V4.output", "time_step": 1}}})
    out = tmp_path / "feats"
    rc = cli_main(["features", "--model", "S", "--random_init", "--data_path", str(imgs), "--imsize", "32",
                   "--areas", str(path), "-o", str(out), "--no_progress"])
    assert rc == 0, capsys.readouterr().err
    assert list(json.loads((out / "features.json").read_text())["features"]) == ["IT.output-t1", "V4.output-t1"]
    bad = _write(tmp_path / "bad.json", {"areas": {"V4": {"layer": "V4.output", "time_step": 4}}})
    _fails(capsys, ["features", "--model", "S", "--random_init", "--data_path", str(imgs), "--imsize", "32",
                    "--areas", str(bad), "-o", str(tmp_path / "none")],
           "area 'V4' commits V4.output at time step 4, but in model cornet_s it runs at steps 0..3", tmp_path / "none")
