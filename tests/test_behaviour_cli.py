"""``ventralkit behaviour`` and ``vk.behaviour_fit`` on a tiny digits folder (issue 26): the result files and
figures, the model's decisions through its classifier (label map) or a read-out recorded in run.json, and the
bad inputs of the issue, each one line with exit 2 and nothing written."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from ventralkit.analysis.behaviour import simulate_trials

MODEL = ["--model", "cornet_z", "--random_init", "--imsize", "32", "--device", "cpu", "-j", "0", "--no_progress"]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """(root, trials.csv, label map): 30 val digits as stimuli, 30 train digits for read-outs, 3 subjects."""
    from ventralkit.data.embedded import write_digits_folder

    root = tmp_path_factory.mktemp("behaviour")
    write_digits_folder(root / "digits", 32, per_class=3)
    stimuli = sorted((root / "digits" / "val").rglob("*.png"), key=lambda p: p.name)
    truth = np.array([int(p.parent.name) for p in stimuli])
    probs = np.full((len(stimuli), 10), 0.03)
    probs[np.arange(len(stimuli)), truth] = 0.6
    probs[np.arange(len(stimuli)), (truth + 1) % 10] += 0.2
    labels = [str(k) for k in range(10)]
    trials = simulate_trials(probs, truth, [p.name for p in stimuli], labels, subjects=3, repeats=2,
                             cues=(truth, (truth + 5) % 10), seed=0)
    _write_trials(root / "trials.csv", trials)
    (root / "map.csv").write_text("class,label\n" + "".join(f"{k},{k}\n" for k in range(10)), encoding="utf-8")
    return root


def _write_trials(path, trials, columns=("stimulus", "subject", "truth", "choice", "cue_shape", "cue_texture")):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(zip(*(getattr(trials, c) for c in columns)))
    return path


def test_the_command_writes_scores_tables_run_json_and_figures(cli, digits):
    out = digits / "out_map"
    code, stdout, err = cli("behaviour", *MODEL, "--data_path", digits / "digits" / "val", "--trials",
                            digits / "trials.csv", "--label_map", digits / "map.csv", "--bootstrap", "50", "-o", out)
    assert code == 0, err
    with open(out / "scores.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["metric", "score", "ci_low", "ci_high", "ceiling", "ceiled"]
    assert [r["metric"] for r in rows] == ["i1n", "i2n", "error_consistency", "confusion", "shape_bias",
                                           "shape_bias_human"]
    ec = next(r for r in rows if r["metric"] == "error_consistency")
    assert float(ec["ci_low"]) <= float(ec["score"]) <= float(ec["ci_high"])
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["decisions"]["kind"] == "classifier" and run["decisions"]["label_map"].endswith("map.csv")
    assert run["n_subjects"] == 3 and run["n_stimuli"] == 30 and run["bootstrap_draws"] == 50
    with open(out / "per_subject.csv", encoding="utf-8") as fh:
        assert [r["subject"] for r in csv.DictReader(fh)] == ["s00", "s01", "s02"]
    with open(out / "per_image.csv", encoding="utf-8") as fh:
        assert len(list(csv.DictReader(fh))) == 30
    for name in ("image_scatter", "error_consistency", "shape_bias"):
        assert (out / "plots" / f"{name}.png").stat().st_size > 1000
    assert "error_consistency" in stdout and "wrote" in stdout


def test_a_readout_is_fitted_on_separate_images_and_recorded(cli, digits):
    out = digits / "out_readout"
    code, _, err = cli("behaviour", *MODEL, "--data_path", digits / "digits" / "val", "--trials", digits / "trials.csv",
                       "--readout_images", digits / "digits" / "train", "--metrics", "i2n", "error_consistency",
                       "--bootstrap", "0", "--no_figure", "-o", out)
    assert code == 0, err
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    how = run["decisions"]
    assert how["kind"] == "readout" and how["layer"] == "decoder.avgpool"  # CORnet's behavioural read-out
    assert how["readout_images"].endswith("train") and how["n_train"] == 30 and how["n_features"] == 512
    assert not (out / "plots").exists()


def test_the_python_api_matches_the_command(digits):
    import ventralkit as vk
    from ventralkit.models.loading import load_model

    loaded = load_model("cornet_z", image_size=32)
    result = vk.behaviour_fit(loaded, digits / "trials.csv", digits / "digits" / "val", label_map=digits / "map.csv",
                              metrics=["error_consistency", "shape_bias"], bootstrap_draws=20, device="cpu",
                              workers=0, output_dir=digits / "out_api", figures=False)
    assert result.score("shape_bias") == pytest.approx(
        float(next(r for r in csv.DictReader(open(digits / "out_api" / "scores.csv", encoding="utf-8"))
                   if r["metric"] == "shape_bias")["score"]), abs=1e-6)
    assert {r["subject"] for r in result.per_subject} == {"s00", "s01", "s02"}


def _bad(cli, digits, tmp_path, *extra, trials=None):
    out = tmp_path / "out"
    code, stdout, err = cli("behaviour", *MODEL, "--data_path", digits / "digits" / "val",
                            "--trials", trials or digits / "trials.csv", *extra, "-o", out)
    assert code == 2, (stdout, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()  # nothing half-written
    return err


def test_bad_inputs_are_one_line_exit_2_and_nothing_written(cli, digits, tmp_path):
    no_choice = tmp_path / "no_choice.csv"
    no_choice.write_text("stimulus,subject,truth\n0003.png,s1,3\n", encoding="utf-8")
    assert "missing column choice" in _bad(cli, digits, tmp_path, trials=no_choice)
    absent = tmp_path / "absent.csv"
    absent.write_text("stimulus,subject,truth,choice\nnot_there.png,s1,3,7\n0007.png,s1,7,3\n", encoding="utf-8")
    err = _bad(cli, digits, tmp_path, trials=absent)
    assert "'not_there.png'" in err and "--data_path" in err
    err = _bad(cli, digits, tmp_path, "--readout_images", digits / "digits" / "train", "--readout_layer", "V9.output")
    assert "no layer 'V9.output'" in err and "V4.output" in err  # the close names
    one = tmp_path / "one_subject.csv"
    one.write_text("stimulus,subject,truth,choice\n0003.png,s1,3,3\n0007.png,s1,7,3\n", encoding="utf-8")
    assert "at least two subjects" in _bad(cli, digits, tmp_path, "--ceiling", "--label_map", digits / "map.csv",
                                           trials=one)
    right = tmp_path / "all_correct.csv"
    right.write_text("stimulus,subject,truth,choice\n0003.png,s1,3,3\n0007.png,s2,7,7\n", encoding="utf-8")
    err = _bad(cli, digits, tmp_path, "--metrics", "error_consistency", trials=right)
    assert "every trial is correct" in err and "undefined" in err
    assert "--label_map" in _bad(cli, digits, tmp_path)  # random CORnet-Z: ImageNet classes, not digits
    err = _bad(cli, digits, tmp_path, "--readout_images", digits / "digits" / "val")
    assert "separate images" in err
    assert "--on_bad_image skip" in _bad(cli, digits, tmp_path, "--on_bad_image", "skip")


def test_a_torchvision_model_is_read_out_like_any_other(cli, digits):
    """Any model source goes through the one loader: a torchvision network with random weights, read out at a
    layer it names (it commits no behavioural read-out, so the error suggests its last area)."""
    tv = ["--model", "torchvision:resnet18", "--random_init", "--imsize", "32", "--device", "cpu", "-j", "0",
          "--no_progress", "--data_path", digits / "digits" / "val", "--trials", digits / "trials.csv",
          "--readout_images", digits / "digits" / "train", "--metrics", "error_consistency", "--bootstrap", "0"]
    code, _, err = cli("behaviour", *tv, "-o", digits / "out_tv_missing")
    assert code == 2 and "--readout_layer" in err and "layer4" in err
    code, _, err = cli("behaviour", *tv, "--readout_layer", "avgpool", "--no_figure", "-o", digits / "out_tv")
    assert code == 0, err
    how = json.loads((digits / "out_tv" / "run.json").read_text(encoding="utf-8"))["decisions"]
    assert how["layer"] == "avgpool" and how["n_features"] == 512
    assert how["model"]["source"]["library"] == "torchvision"
