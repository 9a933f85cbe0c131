"""`ventralkit test`: the original flat-folder features, and evaluation with CSV + PNG outputs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from ventralkit import create_model
from ventralkit.cli import main
from ventralkit.data.embedded import shape_class_names, write_flat_images, write_image_folder

SIZE = 32
CLASSES = sorted(shape_class_names(3))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("shapes"), classes=3, per_class=3, size=SIZE)


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flat")
    write_flat_images(folder, n=3, size=40)
    (folder / "readme.md").write_text("not an image")
    return folder


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def test_evaluation_writes_csv_and_png(dataset, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["test", "--model", "Z", "--random_init", "--num_classes", "3", "--imsize", str(SIZE),
               "--data_path", str(dataset), "-o", str(out), "--workers", "0", "--no_progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert printed.startswith("val: {'loss': ") and "'top5': 1.0" in printed
    assert sorted(p.name for p in out.iterdir()) == ["confusion.csv", "confusion.png", "per_class.csv",
                                                     "predictions.csv", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_images"] == 9 and summary["num_classes"] == 3 and 0 <= summary["top1"] <= 1
    conf = _read_csv(out / "confusion.csv")
    assert conf[0][1:] == CLASSES and [r[0] for r in conf[1:]] == CLASSES
    counts = np.array([[int(v) for v in r[1:]] for r in conf[1:]])
    assert counts.sum() == 9 and (counts.sum(1) == 3).all()
    per_class = _read_csv(out / "per_class.csv")
    assert per_class[0] == ["class_index", "class", "n_images", "correct", "accuracy"]
    assert [int(r[3]) for r in per_class[1:]] == list(np.diag(counts))
    assert abs(np.trace(counts) / 9 - summary["top1"]) < 1e-9
    preds = _read_csv(out / "predictions.csv")
    assert len(preds) == 10 and preds[1][0].endswith(".png")
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_class_folders_without_val_and_the_evaluate_flag(dataset, tmp_path, capsys):
    rc = main(["test", "--model", "Z", "--random_init", "--num_classes", "3", "--imsize", str(SIZE),
               "--data_path", str(dataset / "val"), "--workers", "0", "--no_progress"])
    assert rc == 0
    assert "9 images, 3 classes" in capsys.readouterr().out
    # a class-count mismatch is one line
    rc = main(["test", "--model", "Z", "--random_init", "--imsize", str(SIZE), "--data_path", str(dataset),
               "--workers", "0"])
    assert rc == 2
    assert "has 3 classes but cornet_z outputs 1000" in _one_line(capsys)


def test_flat_folder_gives_the_original_features(flat, tmp_path, capsys):
    out = tmp_path / "feats"
    rc = main(["test", "--model", "Z", "--random_init", "--imsize", str(SIZE), "--data_path", str(flat),
               "-o", str(out), "--workers", "0", "--no_progress"])
    assert rc == 0
    arr = np.load(out / "CORnet-Z_decoder_avgpool_feats.npy")
    assert arr.shape == (3, 512)
    assert (out / "decoder.avgpool-t0.npy").is_file()
    assert [p.rsplit("/", 1)[-1] for p in (out / "images.txt").read_text().split()] == [
        "img_000.jpg", "img_001.jpg", "img_002.jpg"]
    assert "3 images x 512 features" in capsys.readouterr().out
    # the original flags as written: --layer V4 --sublayer output --time_step 0
    rc = main(["test", "--model", "Z", "--random_init", "--layer", "V4", "--sublayer", "output", "--time_step", "0",
               "--imsize", str(SIZE), "--data_path", str(flat), "-o", str(out), "--workers", "0", "--no_progress"])
    assert rc == 0 and np.load(out / "CORnet-Z_V4_output_feats.npy").shape == (3, 256 * 2 * 2)


def test_digits_evaluation(tmp_path, capsys):
    rc = main(["test", "--model", "Z", "--random_init", "--num_classes", "10", "--dataset", "digits",
               "--batch_size", "128", "--workers", "0", "--no_progress", "-o", str(tmp_path / "d")])
    assert rc == 0
    assert "359 images, 10 classes" in capsys.readouterr().out
    assert len(_read_csv(tmp_path / "d" / "per_class.csv")) == 11


def test_checkpoints_supply_model_classes_and_size(dataset, tmp_path, capsys):
    model = create_model("cornet_z", num_classes=3)
    vk = tmp_path / "vk.pt"
    torch.save({"format": "ventralkit", "model_name": "cornet_z", "num_classes": 3, "classes": CLASSES,
                "config": {"image_size": SIZE, "model_kwargs": {}}, "model": model.state_dict()}, vk)
    rc = main(["test", "--ckpt_path", str(vk), "--data_path", str(dataset), "--workers", "0", "--no_progress",
               "-o", str(tmp_path / "a")])
    assert rc == 0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["model"] == "cornet_z" and summary["image_size"] == SIZE
    # an original run.py checkpoint (DataParallel 'module.' keys): the class count is read from it
    orig = tmp_path / "epoch_01.pth.tar"
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, orig)
    rc = main(["test", "--model", "Z", "--ckpt_path", str(orig), "--imsize", str(SIZE), "--data_path",
               str(dataset), "--workers", "0", "--no_progress"])
    assert rc == 0
    capsys.readouterr()
    # classes that differ from the checkpoint's
    other = write_image_folder(tmp_path / "other", classes=3, per_class=1, size=SIZE, splits=None)
    (other / CLASSES[0]).rename(other / "zebra")
    rc = main(["test", "--ckpt_path", str(vk), "--data_path", str(other), "--workers", "0", "--evaluate"])
    assert rc == 2 and "differ from the checkpoint" in _one_line(capsys)


def test_bad_input_is_one_line(flat, tmp_path, capsys):
    assert main(["test", "--model", "Z", "--random_init"]) == 2
    assert "--data_path is required" in _one_line(capsys)
    assert main(["test", "--model", "S100", "--data_path", str(flat)]) == 2
    assert "cornet_s100 has no published weights; pass --ckpt_path" in _one_line(capsys)
    assert main(["test", "--model", "Q", "--random_init", "--data_path", str(flat)]) == 2
    assert "unknown model" in _one_line(capsys)
    assert main(["test", "--model", "Z", "--random_init", "--data_path", str(tmp_path / "nope")]) == 2
    assert "does not exist" in _one_line(capsys)
    with pytest.raises(SystemExit) as bad_batch:  # the shared option's type refuses it while parsing, one line
        main(["test", "--model", "Z", "--random_init", "--batch_size", "0", "--data_path", str(flat)])
    assert bad_batch.value.code == 2 and "--batch_size" in _one_line(capsys)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"PK\x03\x04 truncated")
    assert main(["test", "--model", "Z", "--ckpt_path", str(broken), "--data_path", str(flat)]) == 2
    assert "corrupt or truncated" in _one_line(capsys)
    (tmp_path / "afile").write_text("x")
    assert main(["test", "--model", "Z", "--random_init", "--data_path", str(flat), "-o",
                 str(tmp_path / "afile" / "out")]) == 2
    assert "cannot be written" in _one_line(capsys)
    (tmp_path / "empty").mkdir()
    assert main(["test", "--model", "Z", "--random_init", "--data_path", str(tmp_path / "empty")]) == 2
    assert "no image files" in _one_line(capsys)
