"""Models from elsewhere on the command line (issue 23, "Must show"): torchvision, timm and file.py:factory models in
neural, robustness, v1-probe, features and train, with the same run folders and files as a registered model and
their provenance recorded; ``models --source`` lists names without building a model (timm imported only for timm).
Random initialisation or a weights file placed in a temporary TORCH_HOME: nothing downloads."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

try:
    import timm
except ImportError:
    timm = None

FACTORY = '''
import torch.nn as nn

def build(num_classes=10):
    """A small CNN for 32 px digits."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes))
'''


@pytest.fixture
def stimuli(tmp_path):
    from ventralkit.data.embedded import write_image_folder

    return write_image_folder(tmp_path / "imgs", classes=3, per_class=4, size=32, splits=None)


def test_models_lists_library_names_without_building_or_importing_timm():
    code = ("import sys; from ventralkit.cli import main; rc = main(['models', '--source', 'torchvision', 'alex*']); "
            "assert 'timm' not in sys.modules, 'timm imported'; sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["torchvision:alexnet"]


def test_models_source_pattern_matching_nothing_says_so(cli):
    code, out, err = cli("models", "--source", "torchvision", "nothing_like_this*")
    assert code == 0 and "no torchvision model matches 'nothing_like_this*'" in out
    code, out, err = cli("models", "--source", "keras")
    assert code == 2 and "invalid choice: 'keras'" in err


def test_neural_with_torchvision_alexnet(cli, stimuli, tmp_path):
    """``ventralkit neural --model torchvision:alexnet --data_path IMGS``: features of Brain-Score's AlexNet
    layers (its areas), scored against responses; the features' manifest records the model's source."""
    rng = np.random.default_rng(3)
    np.save(tmp_path / "resp.npy", rng.normal(size=(2, 12, 5)))
    out = tmp_path / "out"
    code, stdout, err = cli("neural", "--model", "torchvision:alexnet", "--random_init", "--data_path", stimuli,
                            "--imsize", "64", "--responses", tmp_path / "resp.npy", "--metrics", "rdm", "-o", out,
                            "--no_progress", "--no_figure")
    assert code == 0, err
    layers = [ln.split(",")[0] for ln in (out / "scores.csv").read_text().splitlines()[1:]]
    assert sorted(set(layers)) == ["features.12-t0", "features.2-t0", "features.7-t0"]  # V1, V2/V4, IT
    manifest = json.loads((out / "features" / "features.json").read_text())
    assert manifest["model"] == "torchvision:alexnet" and manifest["transform"] == "center"
    assert manifest["model_source"]["library"] == "torchvision" and manifest["model_source"]["weights"] is None
    assert manifest["model_source"]["preprocessing"]["image_size"] == 64
    run = json.loads((out / "run.json").read_text())
    assert run["inputs"]["model_source"]["spec"] == "torchvision:alexnet"


@pytest.mark.skipif(timm is None, reason="timm is not installed (pip install 'ventralkit[timm]')")
def test_robustness_with_timm_resnet18(cli, tmp_path):
    from ventralkit.data.embedded import write_image_folder

    val = write_image_folder(tmp_path / "val", classes=2, per_class=3, size=32, splits=None)
    code, _, err = cli("corrupt", val, tmp_path / "c", "--corruptions", "gaussian_noise", "fog", "--severities", "1",
                       "-j", "0", "--quiet")
    assert code == 0, err
    out = tmp_path / "rob"
    code, stdout, err = cli("robustness", "--model", "timm:resnet18", "--random_init", "--num_classes", "2",
                            "--imsize", "32", "--data_path", tmp_path / "c", "--clean_path", val, "-j", "0",
                            "--batch_size", "4", "--quiet", "-o", out)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["name"] == "timm:resnet18" and {c["corruption"] for c in summary["corruptions"]} == {
        "gaussian_noise", "fog"}
    assert summary["model_source"]["library"] == "timm" and summary["model_source"]["weights"] is None
    for name in ("summary.csv", "summary.txt", "robustness_details.csv"):
        assert (out / name).is_file(), name


def test_v1_probe_of_a_torchvision_layer(cli, tmp_path):
    """``v1-probe --model torchvision:alexnet --layer features.2``; run.json records the source."""
    out = tmp_path / "v1"
    with pytest.warns(UserWarning, match="Nyquist"):
        code, stdout, err = cli("v1-probe", "--model", "torchvision:alexnet", "--random_init", "--layer", "features.2",
                                "--imsize", "64", "--quick", "--n_boot", "20", "--device", "cpu", "--no_figures",
                                "-o", out)
    assert code == 0, err
    meta = json.loads((out / "run.json").read_text())
    assert meta["layer"] == "features.2" and meta["n_units"] == 64  # AlexNet's first block: 64 channels
    assert json.dumps(meta).count('"library": "torchvision"') >= 1
    code, _, err = cli("v1-probe", "--model", "torchvision:alexnet", "--random_init", "--layer", "features.22",
                       "--imsize", "64", "--quick", "-o", tmp_path / "bad")
    assert code == 2 and "has no layer 'features.22' (did you mean features.2" in err and err.count("\n") == 1


def _train(cli, out, *argv):
    return cli("train", *argv, "--dataset", "digits", "--imsize", "32", "--epochs", "1", "--max_steps_per_epoch", "2",
               "--batch_size", "16", "-j", "0", "--no_progress", "-o", out)


def test_train_torchvision_resnet18_on_digits_and_reload_from_the_checkpoint(cli, stimuli, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = _train(cli, out, "--model", "torchvision:resnet18", "--num_classes", "10")
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "torchvision:resnet18" and config["model_source"]["library"] == "torchvision"
    assert config["preprocessing"]["image_size"] == 32
    # --ckpt_path alone: the checkpoint names torchvision:resnet18, rebuilt without a download
    feats = tmp_path / "feats"
    code, stdout, err = cli("features", "--ckpt_path", out / "checkpoints" / "best.pt", "--data_path", stimuli,
                            "-j", "0", "--no_progress", "-o", feats)
    assert code == 0, err
    manifest = json.loads((feats / "features.json").read_text())
    assert manifest["layers"] == ["layer1", "layer2", "layer3", "layer4"] and manifest["image_size"] == 32
    assert manifest["model_source"]["checkpoint"].endswith("best.pt")
    assert len(manifest["model_source"]["checkpoint_sha256"]) == 64


def test_fine_tune_torchvision_weights_with_a_new_classifier(cli, tmp_path, monkeypatch):
    """``train --model torchvision:resnet18 --weights DEFAULT --reset_classifier --num_classes 10 --trainable fc``
    from a weights file placed in TORCH_HOME: the trunk keeps the file's tensors, only the new head trains."""
    import torchvision.models as tvm

    from ventralkit.models.sources import torchvision_source as tvs

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    path = tvs.cache_path(tvm.ResNet18_Weights.IMAGENET1K_V1)
    path.parent.mkdir(parents=True)
    torch.manual_seed(5)
    reference = tvm.resnet18().state_dict()
    torch.save(reference, path)
    prefix = path.name.split("-")[1].split(".")[0]
    monkeypatch.setattr(tvs, "file_sha256", lambda p: prefix + "0" * (64 - len(prefix)))  # stands in for the real file
    out = tmp_path / "ft"
    code, stdout, err = _train(cli, out, "--model", "torchvision:resnet18", "--weights", "DEFAULT",
                               "--reset_classifier", "--num_classes", "10", "--trainable", "fc")
    assert code == 0, err
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    assert torch.equal(ckpt["model"]["layer1.0.conv1.weight"], reference["layer1.0.conv1.weight"])
    assert ckpt["model"]["fc.weight"].shape == (10, 512)
    assert ckpt["preprocessing"]["interpolation"] == "bilinear"
    config = json.loads((out / "config.json").read_text())
    assert config["weights"] == "DEFAULT" and config["model_source"]["weights"] == "IMAGENET1K_V1"
    assert config["model_source"]["weights_file"] == str(path)


def test_train_a_factory_file_and_reload_only_when_named(cli, stimuli, tmp_path):
    nets = tmp_path / "nets.py"
    nets.write_text(FACTORY)
    out = tmp_path / "run"
    code, stdout, err = _train(cli, out, "--model", f"{nets}:build", "--num_classes", "10")
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == f"{nets}:build" and config["model_source"]["code_sha256"]
    best = out / "checkpoints" / "best.pt"
    code, _, err = cli("features", "--ckpt_path", best, "--data_path", stimuli, "-o", tmp_path / "f1")
    assert code == 2 and "which runs that Python file" in err and f"--model {nets}:build" in err
    assert err.count("\n") == 1 and not (tmp_path / "f1").exists()
    code, _, err = cli("features", "--model", f"{nets}:build", "--ckpt_path", best, "--data_path", stimuli,
                       "--layers", "3", "-j", "0", "--no_progress", "-o", tmp_path / "f2")
    assert code == 0, err
    # --resume alone would run the file too: refused the same way
    code, _, err = cli("train", "--resume", out / "checkpoints" / "last.pt", "--epochs", "2")
    assert code == 2 and "which runs that Python file" in err


def test_compare_of_a_factory_run_does_not_run_the_file(cli, tmp_path):
    """``compare`` builds a run's model to count its head's parameters; a factory file is not run for that."""
    marker = tmp_path / "imported.txt"
    nets = tmp_path / "nets.py"
    nets.write_text(f"with open({str(marker)!r}, 'a') as fh:\n    fh.write('x')\n" + FACTORY)
    out = tmp_path / "run"
    code, _, err = _train(cli, out, "--model", f"{nets}:build", "--num_classes", "10")
    assert code == 0, err
    assert marker.read_text() == "x"
    for name in [m for m in sys.modules if m.startswith("ventralkit_user_")]:
        del sys.modules[name]  # a fresh process: the file is not imported yet
    code, stdout, err = cli("compare", out, "-o", tmp_path / "cmp", "--no_plot")
    assert code == 0, err
    assert marker.read_text() == "x"  # imported once, by train, never by compare


def test_bad_model_specs_are_one_line_exit_2(cli, stimuli, tmp_path, monkeypatch):
    bad = tmp_path / "bad.py"
    bad.write_text("raise ImportError('needs a package that is not there')\n")
    cases = [
        (["--model", "torchvision:alexnett"], "unknown torchvision model 'alexnett' (did you mean alexnet"),
        (["--model", "torchvision:alexnet", "--weights", "IMAGENET9"], "torchvision's alexnet has weights IMAGENET1K_V1"),
        (["--model", f"{bad}:build"], "bad.py failed to import (ImportError: needs a package that is not there)"),
        (["--model", "Z", "--weights", "IMAGENET1K_V1"], "one set of published weights, --weights DEFAULT"),
        (["--model", "torchvision:alexnet", "--weights", "DEFAULT", "--random_init"], "give one of --weights / "
                                                                                       "--random_init, not both"),
    ]
    monkeypatch.setitem(sys.modules, "timm", None)
    cases.append((["--model", "timm:resnet18", "--random_init"], "pip install 'ventralkit[timm]'"))
    for argv, message in cases:
        code, _, err = cli("features", *argv, "--data_path", stimuli, "-o", tmp_path / "out")
        assert code == 2 and message in err and err.count("\n") == 1, (argv, err)
        assert not (tmp_path / "out").exists()
