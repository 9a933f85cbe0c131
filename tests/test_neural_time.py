"""Time-binned responses against every time step of a recurrent model (``neural --time_bins``).

The time mapping is Brain-Score's CORnet-S plugin's (``brainscore_vision/models/cornet_s/model.py``,
``TIME_MAPPINGS``: V1 (50, 100, 1), V2 (70, 100, 2), V4 (90, 50, 4), IT (100, 100, 2) as (start ms, width ms,
steps); a bin goes to the step whose window starts nearest the bin's start, ``find_nearest`` in
``helpers/helpers.py``, which takes the first on a tie). A population whose early bins come from one time
step and late bins from another must be found so, bin by bin, and each bin's scores must be those
``neural_fit`` gives for that bin's responses alone.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ventralkit.analysis.neural import neural_fit
from ventralkit.analysis.neural.timebins import read_time_bins, score_time_bins, time_mapping
from ventralkit.cli import main as cli_main
from ventralkit.errors import DataError
from ventralkit.models.time_mapping import nearest_time_step, steps_for_bins, time_windows

#: 50 ms bins; IT's windows start at 100 (t0) and 200 ms (t1): 70 and 120 -> t0, 150 is a tie -> t0, later -> t1
BINS = [(70, 120), (120, 170), (150, 200), (170, 220), (220, 270), (270, 320)]
IT_STEPS = [0, 0, 0, 1, 1, 1]


def test_cornet_s_time_windows_are_brain_scores():
    assert time_windows("cornet_s", "IT") == {0: (100, 200), 1: (200, 300)}
    assert time_windows("S", "V4") == {0: (90, 140), 1: (140, 190), 2: (190, 240), 3: (240, 290)}
    assert time_windows("cornet_s", "V2") == {0: (70, 170), 1: (170, 270)}
    assert time_windows("cornet_s", "V1") == {0: (50, 150)}
    assert time_windows("cornet_z", "IT") is None and time_windows("cornet_s", "MT") is None
    assert time_windows(None, "IT") is None
    windows = time_windows("cornet_s", "IT")
    assert steps_for_bins(windows, BINS) == IT_STEPS
    # Brain-Score's standard 70-170 ms window in 10 ms bins, for V4: starts 70..160 -> t0 up to 110, then t1
    assert steps_for_bins(time_windows("cornet_s", "V4"), [(s, s + 10) for s in range(70, 170, 10)]) == \
        [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    assert nearest_time_step(windows, 1000) == 1


def _recurrent(rng, n=80, d=30):
    """CORnet-S-like features: V4 runs 4 steps, IT 2, each step a noisy update of the one before."""
    feats = {}
    h = rng.normal(size=(n, d))
    for k in range(4):
        h = np.tanh(h @ rng.normal(size=(d, d)) / np.sqrt(d) + 0.8 * rng.normal(size=(n, d)))
        feats[f"V4.output-t{k}"] = h
    for k in range(2):
        h = np.tanh(h @ rng.normal(size=(d, d)) / np.sqrt(d) + 0.8 * rng.normal(size=(n, d)))
        feats[f"IT.output-t{k}"] = h
    return feats


def _binned(rng, feats, steps, reps=3, k=25, noise=1.0):
    """(repetitions, stimuli, neuroids, bins): bin b read out (fixed weights) from ``IT.output-t<steps[b]>``."""
    w = {s: rng.normal(size=(feats["IT.output-t0"].shape[1], k)) for s in set(steps)}
    out = []
    for s in steps:
        x = feats[f"IT.output-t{s}"]
        clean = (x - x.mean(0)) / x.std(0) @ w[s] / np.sqrt(x.shape[1])
        out.append(clean[None] + noise * rng.normal(size=(reps, *clean.shape)))
    return np.stack(out, axis=-1)


def test_each_bin_scored_as_neural_fit_scores_it_and_the_generating_step_found():
    rng = np.random.default_rng(0)
    feats = _recurrent(rng)
    resp = _binned(rng, feats, IT_STEPS)
    res = score_time_bins(feats, resp, BINS, metrics=("cka", "rdm"))
    assert len(res.rows) == 6 * len(BINS) * 2
    for b in (0, 4):
        alone = neural_fit(feats, resp[..., b], metrics=("cka", "rdm"))
        for m in ("cka", "rdm"):
            for f in ("IT.output-t0", "V4.output-t2"):
                row = next(r for r in res.rows if r["feature"] == f and r["bin"] == b and r["metric"] == m)
                assert row["raw"] == pytest.approx(alone.value(f, m), abs=1e-12)
                assert row["ceiling"] == pytest.approx(alone.ceilings[m], abs=1e-12)
                assert row["score"] == pytest.approx(alone.value(f, m, "score"), abs=1e-12)
    mapping = time_mapping(res, "IT", "IT.output", time_windows("cornet_s", "IT"))
    cka = [r for r in mapping if r["metric"] == "cka"]
    assert [r["committed_step"] for r in cka] == IT_STEPS
    assert [r["best_step_feature"] for r in cka] == [f"IT.output-t{s}" for s in IT_STEPS]
    assert [r["committed_feature"] for r in cka] == [f"IT.output-t{s}" for s in IT_STEPS]
    assert all(r["committed_raw"] == r["best_step_raw"] for r in cka)
    # no module, or no default mapping: the best step / layer still, the committed cells empty with a note
    bare = time_mapping(res, None, None, None)
    assert bare[0]["committed_feature"] == "" and bare[0]["note"] == "no module for the area"
    assert bare[0]["best_feature"] and "best_step_feature" not in bare[0]


def test_each_bin_has_the_interval_neural_fit_gives_it():
    """``bootstrap=N``: every layer x time step x bin score gets the interval ``neural_fit(bootstrap=N)`` gives that bin
    (the same seeded resamples in every bin); the scores themselves do not change; without it the cells are NaN."""
    rng = np.random.default_rng(2)
    feats = _recurrent(rng, n=110)
    resp = _binned(rng, feats, IT_STEPS[:3])
    bins = BINS[:3]
    res = score_time_bins(feats, resp, bins, metrics=("pls", "cka"), bootstrap=150)
    plain = score_time_bins(feats, resp, bins, metrics=("pls", "cka"))
    for b in (0, 2):
        alone = neural_fit(feats, resp[..., b], metrics=("pls", "cka"), bootstrap=150)
        for r in (r for r in res.rows if r["bin"] == b):
            want = [alone.value(r["feature"], r["metric"], k) for k in ("ci_low", "ci_high", "sem")]
            assert [r["ci_low"], r["ci_high"], r["sem"]] == pytest.approx(want, abs=1e-12)
            assert r["ci_low"] < r["ci_high"] and r["sem"] > 0
    assert [r["raw"] for r in res.rows] == [r["raw"] for r in plain.rows]
    assert all(np.isnan(r["ci_low"]) and np.isnan(r["sem"]) for r in plain.rows)
    assert res.options["bootstrap"]["resamples"] == 150 and plain.options["bootstrap"] is None


def _features_folder(folder, feats, model="cornet_s"):
    folder.mkdir(parents=True)
    n = next(iter(feats.values())).shape[0]
    for name, arr in feats.items():
        np.save(folder / f"{name}.npy", arr.astype(np.float32))
    (folder / "images.txt").write_text("".join(f"/stim/img{i:03d}.png\n" for i in range(n)))
    (folder / "features.json").write_text(json.dumps({"model": model, "features": {f: {} for f in feats}}))
    return folder


@pytest.fixture(scope="module")
def binned_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("time")
    rng = np.random.default_rng(1)
    feats = _recurrent(rng)
    _features_folder(root / "feats", feats)
    resp = _binned(rng, feats, IT_STEPS)
    np.save(root / "resp.npy", resp)
    (root / "bins.txt").write_text("start_ms,end_ms\n" + "".join(f"{s},{e}\n" for s, e in BINS))
    return root, resp


def test_cli_time_bins_writes_scores_mapping_and_figure(binned_inputs, tmp_path, capsys):
    root, resp = binned_inputs
    out = tmp_path / "out"
    rc = cli_main(["neural", "--features", str(root / "feats"), "--responses", str(root / "resp.npy"),
                   "--time_bins", str(root / "bins.txt"), "--area", "IT", "--metrics", "cka", "-o", str(out),
                   "--no_progress"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "cka 70-120 ms: committed IT.output-t0, best step IT.output-t0" in cap.out
    lines = (out / "time_scores.csv").read_text().splitlines()
    assert lines[0] == "feature,layer,time_step,bin_start,bin_end,metric,raw,ceiling,score,ci_low,ci_high,sem,note"
    assert len(lines) == 1 + 6 * len(BINS)
    for line in lines[1:]:  # the default --bootstrap 1000 is used, not silently dropped: every score has its interval
        cells = line.split(",")
        assert float(cells[9]) < float(cells[10]) and float(cells[11]) > 0
    mapping = (out / "time_mapping.csv").read_text().splitlines()
    assert len(mapping) == 1 + len(BINS)
    assert [ln.split(",")[6] for ln in mapping[1:]] == [f"IT.output-t{s}" for s in IT_STEPS]
    run = json.loads((out / "run.json").read_text())
    assert run["model"] == "cornet_s" and run["module"] == "IT.output"
    assert run["time_mapping"]["windows_ms"] == {"0": [100.0, 200.0], "1": [200.0, 300.0]}
    assert run["inputs"]["response_shape"] == list(resp.shape) and run["time_bins_ms"][2] == [150.0, 200.0]
    assert run["options"]["bootstrap"]["resamples"] == 1000
    assert (out / "time_scores.png").stat().st_size > 20_000
    # a commitment file: the committed module's time steps only
    (tmp_path / "c.json").write_text(json.dumps({"areas": {"IT": {"layer": "IT.output", "time_step": 1}}}))
    rc = cli_main(["neural", "--features", str(root / "feats"), "--responses", str(root / "resp.npy"),
                   "--time_bins", str(root / "bins.txt"), "--area", "IT", "--metrics", "cka", "--areas",
                   str(tmp_path / "c.json"), "-o", str(tmp_path / "o2"), "--no_progress", "--no_figure"])
    assert rc == 0, capsys.readouterr().err
    rows = (tmp_path / "o2" / "time_scores.csv").read_text().splitlines()[1:]
    assert sorted({r.split(",")[0] for r in rows}) == ["IT.output-t0", "IT.output-t1"]


def test_cli_without_a_default_mapping_reports_the_best_step(binned_inputs, tmp_path, capsys):
    root, _ = binned_inputs
    feats = {f"IT.output-t{k}": np.load(root / "feats" / f"IT.output-t{k}.npy") for k in range(2)}
    _features_folder(tmp_path / "feats", feats, model="MyNet")
    rc = cli_main(["neural", "--features", str(tmp_path / "feats"), "--responses", str(root / "resp.npy"),
                   "--time_bins", str(root / "bins.txt"), "--area", "IT", "--metrics", "cka", "-o",
                   str(tmp_path / "out"), "--no_progress", "--no_figure"])
    assert rc == 0, capsys.readouterr().err
    mapping = (tmp_path / "out" / "time_mapping.csv").read_text().splitlines()
    assert all(ln.endswith("no module for the area") for ln in mapping[1:])
    assert [ln.split(",")[10] for ln in mapping[1:]] == [f"IT.output-t{s}" for s in IT_STEPS]


def test_time_bins_file_and_shape_refused_in_one_line(binned_inputs, tmp_path, capsys):
    root, resp = binned_inputs
    (tmp_path / "five.txt").write_text("".join(f"{s},{e}\n" for s, e in BINS[:5]))
    (tmp_path / "bad.txt").write_text("70,120\n120;170\n")
    (tmp_path / "back.txt").write_text("70,120\n170,120\n")
    np.save(tmp_path / "flat.npy", resp[0, :, :, 0])
    out = tmp_path / "out"
    base = ["neural", "--features", str(root / "feats"), "--metrics", "cka", "-o", str(out), "--no_progress"]
    r, b = ["--responses", str(root / "resp.npy")], ["--time_bins"]
    cases = [([*r, *b, str(tmp_path / "five.txt")], "the last axis has 6 time bins but --time_bins lists 5"),
             ([*r, *b, str(tmp_path / "bad.txt")], "line 2 '120;170' is not 'start,end' in ms"),
             ([*r, *b, str(tmp_path / "back.txt")], "line 2: bin 170-120 ms must end after it starts"),
             ([*r, *b, str(tmp_path / "none.txt")], "no such file"),
             (["--responses", str(tmp_path / "flat.npy"), *b, str(root / "bins.txt")],
              "time-binned responses must be (stimuli, neuroids, bins)"),
             ([*r, *b, str(root / "bins.txt"), "--commit", "--area", "IT"], "drop --time_bins")]
    for argv, match in cases:
        rc = cli_main([*base, *argv])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and match in err, err
        assert not out.exists()
    with pytest.raises(DataError, match="no time bins"):
        (tmp_path / "empty.txt").write_text("start,end\n")
        read_time_bins(tmp_path / "empty.txt")
