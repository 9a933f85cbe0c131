"""``--on_bad_image skip``: an unreadable image is left out, never replaced by a neighbour (issue 21).

Every command that reads image files is run on a folder with two truncated PNGs. What must hold: the
count is the number of images read, the broken files are in no per-image output and are listed in
``skipped.txt``, and each number equals the same number computed here by hand over the readable
images only (the model run image by image, outside the command's loader). Also: reusing a
``features -o`` folder is refused, and ``--overwrite`` replaces only that run's own files.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ventralkit import create_model
from ventralkit.cli import main
from ventralkit.data.embedded import shape_class_names, write_flat_images, write_image_folder
from ventralkit.data.folders import open_rgb
from ventralkit.data.transforms import eval_transform

SIZE = 32
CLASSES = sorted(shape_class_names(3))


def _break(path: Path) -> Path:
    """Cut an image file in half (a truncated download): PIL reads the header, then fails to decode."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def _skipped_txt(folder: Path) -> list[str]:
    return [ln.split("\t")[0] for ln in (folder / "skipped.txt").read_text().splitlines()]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A fixed cornet_z with 3 outputs, as a ventralkit checkpoint (classes and image size inside)."""
    torch.manual_seed(3)
    model = create_model("cornet_z", num_classes=3)
    path = tmp_path_factory.mktemp("ckpt") / "z.pt"
    torch.save({"format": "ventralkit", "model_name": "cornet_z", "num_classes": 3, "classes": CLASSES,
                "config": {"image_size": SIZE, "model_kwargs": {}}, "model": model.state_dict()}, path)
    return path, model.eval()


@pytest.fixture
def val_with_two_broken(tmp_path):
    """root/val/<class>/*.png, 3 classes x 3 images, the middle image of two classes truncated."""
    root = write_image_folder(tmp_path / "shapes", classes=3, per_class=3, size=SIZE)
    broken = [_break(root / "val" / CLASSES[0] / f"{CLASSES[0]}_001.png"),
              _break(root / "val" / CLASSES[1] / f"{CLASSES[1]}_001.png")]
    return root, broken


def _readable(folder: Path, broken: list[Path]) -> list[tuple[str, int]]:
    """(path, label) of the readable images of a class-folder split, in sorted order."""
    out = []
    for label, name in enumerate(CLASSES):
        for p in sorted((folder / name).iterdir()):
            if p not in broken:
                out.append((str(p), label))
    return out


@torch.inference_mode()
def _hand_predictions(model, paths: list[str]) -> np.ndarray:
    """The model's top-1 class of each image, one image at a time (the evaluation preprocessing)."""
    tf = eval_transform(model.info, SIZE, "resize_crop")
    model.eval()
    return np.array([int(model(tf(open_rgb(p))[None]).argmax(1)) for p in paths])


# --------------------------------------------------------------------------- test (evaluation)


@pytest.mark.parametrize("workers", [0, 1])
def test_test_skip_counts_only_readable_images(checkpoint, val_with_two_broken, tmp_path, capsys, workers):
    ckpt, model = checkpoint
    root, broken = val_with_two_broken
    out = tmp_path / "eval"
    rc = main(["test", "--ckpt_path", str(ckpt), "--data_path", str(root), "--on_bad_image", "skip",
               "--batch_size", "4", "--workers", str(workers), "--no_progress", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    readable = _readable(root / "val", broken)
    hand = _hand_predictions(model, [p for p, _ in readable])
    labels = np.array([y for _, y in readable])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_images"] == 7
    assert summary["top1"] == pytest.approx(float((hand == labels).mean()), abs=1e-12)
    assert summary["n_skipped"] == 2 and sorted(summary["skipped"]) == sorted(str(p) for p in broken)
    assert "skipped 2 unreadable images" in capsys.readouterr().out
    preds = _rows(out / "predictions.csv")[1:]
    assert [r[0] for r in preds] == [p for p, _ in readable]  # the broken files have no row
    assert [int(r[2]) for r in preds] == hand.tolist()  # each row is the model's answer for that very image
    assert sorted(_skipped_txt(out)) == sorted(str(p) for p in broken)
    support = [int(r[2]) for r in _rows(out / "per_class.csv")[1:]]
    assert support == [2, 2, 3]


def test_test_skip_list_of_an_earlier_run_is_not_left_behind(checkpoint, val_with_two_broken, tmp_path, capsys):
    ckpt, _ = checkpoint
    root, broken = val_with_two_broken
    out = tmp_path / "eval"
    args = ["test", "--ckpt_path", str(ckpt), "--workers", "0", "--no_progress", "-o", str(out)]
    assert main(args + ["--data_path", str(root), "--on_bad_image", "skip"]) == 0
    assert (out / "skipped.txt").is_file()
    clean = write_image_folder(tmp_path / "clean", classes=3, per_class=2, size=SIZE)
    assert main(args + ["--data_path", str(clean)]) == 0
    assert not (out / "skipped.txt").exists()
    assert json.loads((out / "summary.json").read_text())["n_skipped"] == 0


def test_test_error_mode_is_one_line_whose_advice_works(checkpoint, val_with_two_broken, tmp_path, capsys):
    ckpt, _ = checkpoint
    root, broken = val_with_two_broken
    base = ["test", "--ckpt_path", str(ckpt), "--data_path", str(root), "--workers", "0", "--no_progress"]
    assert main(base) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(broken[0]) in err and "--on_bad_image skip" in err
    assert main(base + ["--on_bad_image", "skip"]) == 0


# --------------------------------------------------------------------------- features


@pytest.fixture
def flat_with_two_broken(tmp_path):
    paths = write_flat_images(tmp_path / "flat", n=6, size=40, ext="png")
    broken = [_break(paths[1]), _break(paths[4])]
    return tmp_path / "flat", paths, broken


@pytest.mark.parametrize("fmt", ["npy", "hdf5"])
def test_features_skip_rows_match_the_listed_stimuli(checkpoint, flat_with_two_broken, tmp_path, capsys, fmt):
    from ventralkit.analysis.features import extract_features

    ckpt, model = checkpoint
    folder, paths, broken = flat_with_two_broken
    readable = [p for p in paths if p not in broken]
    out = tmp_path / "f"
    rc = main(["features", "--ckpt_path", str(ckpt), "--data_path", str(folder), "--layers", "V1.output",
               "IT.output", "--format", fmt, "--batch_size", "2", "--workers", "0", "--no_progress",
               "--on_bad_image", "skip", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert "4 images" in capsys.readouterr().out
    assert (out / "images.txt").read_text().splitlines() == [str(p) for p in readable]
    assert _skipped_txt(out) == [str(p) for p in broken]
    manifest = json.loads((out / "features.json").read_text())
    assert manifest["n_images"] == 4 and manifest["n_skipped"] == 2
    assert [(s["image"], s["input_index"]) for s in manifest["skipped"]] == [(str(broken[0]), 1), (str(broken[1]), 4)]
    # by hand: the same extraction on the readable files alone, given as a list
    ref = extract_features(model, readable, layers=["V1.output", "IT.output"], image_size=SIZE, progress=False,
                           channels_last=False)
    for name in ("V1.output-t0", "IT.output-t0"):
        if fmt == "npy":
            got = np.load(out / f"{name}.npy")
        else:
            import h5py

            with h5py.File(out / "features.h5", "r") as f:
                got = f[name][()]
        assert manifest["features"][name]["shape"][0] == 4
        np.testing.assert_allclose(got, ref[name], rtol=1e-5, atol=1e-6)


def test_extract_features_skip_in_memory_and_with_a_worker(flat_with_two_broken):
    from ventralkit.analysis.features import extract_features

    _, paths, broken = flat_with_two_broken
    torch.manual_seed(0)
    model = create_model("cornet_z")
    readable = [p for p in paths if p not in broken]
    got = extract_features(model, paths, layers=["V2.output"], image_size=SIZE, progress=False, workers=1,
                           batch_size=2, on_bad_image="skip", channels_last=False)
    ref = extract_features(model, readable, layers=["V2.output"], image_size=SIZE, progress=False, workers=0,
                           channels_last=False)
    assert [u.path for u in got.skipped] == [str(p) for p in broken]
    assert got["V2.output-t0"].shape[0] == 4
    np.testing.assert_allclose(got["V2.output-t0"], ref["V2.output-t0"], rtol=1e-5, atol=1e-6)
    with pytest.raises(Exception, match="none of the 2 images could be read"):
        extract_features(model, broken, layers=["V2.output"], image_size=SIZE, progress=False,
                         on_bad_image="skip")


def test_features_error_mode_is_one_line_whose_advice_works(flat_with_two_broken, tmp_path, capsys):
    folder, _, broken = flat_with_two_broken
    base = ["features", "--model", "Z", "--random_init", "--imsize", str(SIZE), "--data_path", str(folder),
            "--layers", "V1.output", "--workers", "0", "--no_progress", "-o", str(tmp_path / "f")]
    assert main(base) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(broken[0]) in err and "--on_bad_image skip" in err
    assert not (tmp_path / "f").exists()  # nothing half-made
    assert main(base + ["--on_bad_image", "skip"]) == 0


# --------------------------------------------------------------------------- features -o reuse


def _features(folder, out, *extra):
    return main(["features", "--model", "Z", "--random_init", "--imsize", str(SIZE), "--data_path", str(folder),
                 "--workers", "0", "--no_progress", "-o", str(out), *extra])


def test_features_refuses_a_folder_with_an_earlier_run(tmp_path, capsys):
    folder = tmp_path / "flat"
    write_flat_images(folder, n=3, size=SIZE)
    out = tmp_path / "f"
    assert _features(folder, out, "--layers", "V1.output", "V2.output") == 0
    (out / "notes.txt").write_text("mine")
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert _features(folder, out, "--layers", "IT.output") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(out) in err and "--overwrite" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing touched
    # the advice works: only this run's arrays remain, with the user's own file
    assert _features(folder, out, "--layers", "IT.output", "--overwrite") == 0
    assert sorted(p.name for p in out.iterdir()) == ["CORnet-Z_IT_output_feats.npy", "IT.output-t0.npy",
                                                     "features.json", "images.txt", "notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"


def test_overwrite_keeps_the_earlier_run_when_the_new_one_fails(tmp_path, capsys):
    folder = tmp_path / "flat"
    paths = write_flat_images(folder, n=3, size=SIZE)
    out = tmp_path / "f"
    assert _features(folder, out, "--layers", "V1.output", "V2.output") == 0
    earlier = sorted(p.name for p in out.iterdir())
    _break(paths[0])
    assert _features(folder, out, "--layers", "IT.output", "--overwrite") == 2  # unreadable image, no skip
    assert sorted(p.name for p in out.iterdir()) == earlier


def test_overwrite_never_deletes_an_array_no_run_lists(tmp_path, capsys):
    folder = tmp_path / "flat"
    write_flat_images(folder, n=3, size=SIZE)
    out = tmp_path / "f"
    out.mkdir()
    np.save(out / "mine-t0.npy", np.zeros((3, 2)))  # named like a feature array, but nobody's run wrote it
    assert _features(folder, out, "--layers", "V1.output", "--overwrite") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "mine-t0.npy" in err and "move it" in err
    assert (out / "mine-t0.npy").is_file()
    (out / "mine-t0.npy").rename(tmp_path / "mine-t0.npy")  # the advice works
    assert _features(folder, out, "--layers", "V1.output") == 0


# --------------------------------------------------------------------------- train


def test_train_leaves_unreadable_images_out_of_training_and_validation(tmp_path, capsys):
    root = write_image_folder(tmp_path / "d", classes=3, per_class=3, size=SIZE)
    broken = [_break(root / "val" / CLASSES[0] / f"{CLASSES[0]}_001.png"),
              _break(root / "val" / CLASSES[2] / f"{CLASSES[2]}_000.png"),
              _break(root / "train" / CLASSES[1] / f"{CLASSES[1]}_002.png")]
    run = tmp_path / "run"
    # batch size 1: the broken training image makes a batch with no image at all, every epoch
    rc = main(["train", "--model", "Z", "--data_path", str(root), "--imsize", str(SIZE), "--epochs", "2",
               "--batch_size", "1", "--lr", "0.01", "--workers", "0", "--no_progress", "--on_bad_image", "skip",
               "-o", str(run)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "3 unreadable images left out" in out
    assert sorted(_skipped_txt(run)) == sorted(str(p) for p in broken)
    records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    last_val = [r for r in records if r["phase"] == "val"][-1]
    assert last_val["step"] == 2 * 9  # one step per batch, the empty one included: resume positions hold
    # by hand: the final weights on the 4 readable validation images, one at a time
    state = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    model = create_model("cornet_z", num_classes=3)
    model.load_state_dict(state["model"])
    readable = _readable(root / "val", broken)
    hand = _hand_predictions(model, [p for p, _ in readable])
    assert len(readable) == 7
    assert last_val["top1"] == pytest.approx(float((hand == np.array([y for _, y in readable])).mean()), abs=1e-9)


# --------------------------------------------------------------------------- neural --model / --features


def test_neural_drops_the_responses_of_unreadable_stimuli(tmp_path, capsys):
    from ventralkit.analysis.neural import neural_fit

    imgs = write_image_folder(tmp_path / "imgs", classes=3, per_class=4, size=SIZE, splits=None)
    everything = sorted(imgs.rglob("*.png"), key=lambda p: p.relative_to(imgs).parts)
    broken = [_break(everything[2]), _break(everything[7])]
    keep = [i for i, p in enumerate(everything) if p not in broken]
    rng = np.random.default_rng(5)
    responses = rng.normal(size=(2, 12, 6))  # a row for each of the 12 stimuli, in file order
    np.save(tmp_path / "resp.npy", responses)
    out = tmp_path / "out"
    rc = main(["neural", "--model", "Z", "--random_init", "--data_path", str(imgs), "--imsize", str(SIZE),
               "--responses", str(tmp_path / "resp.npy"), "--metrics", "rdm", "cka", "--layers", "V4.output",
               "IT.output", "--on_bad_image", "skip", "-o", str(out), "--no_progress", "--no_figure"])
    assert rc == 0, capsys.readouterr().err
    assert "left out the responses to 2 unreadable stimuli" in capsys.readouterr().out
    feats_dir = out / "features"
    assert (feats_dir / "images.txt").read_text().splitlines() == [str(everything[i]) for i in keep]
    run = json.loads((out / "run.json").read_text())
    assert sorted(run["inputs"]["unreadable_stimuli_left_out"]) == sorted(str(p) for p in broken)

    def scores(folder):
        return {(r[0], r[1]): float(r[2]) for r in _rows(folder / "scores.csv")[1:]}

    # by hand: the written features against the responses without the two rows
    feats = {n: np.load(feats_dir / f"{n}.npy") for n in ("V4.output-t0", "IT.output-t0")}
    ref = neural_fit(feats, responses[:, keep], metrics=("rdm", "cka"), progress=False)
    got = scores(out)
    for layer in feats:
        for metric in ("rdm", "cka"):
            assert got[(layer, metric)] == pytest.approx(ref.value(layer, metric), abs=2e-6)  # 6 decimals in the CSV
    # the same folder given as --features: the 12-row responses are matched the same way
    rc = main(["neural", "--features", str(feats_dir), "--responses", str(tmp_path / "resp.npy"), "--metrics",
               "rdm", "cka", "-o", str(tmp_path / "again"), "--no_progress", "--no_figure"])
    assert rc == 0, capsys.readouterr().err
    assert scores(tmp_path / "again") == pytest.approx(got)
    # and by name, in another order, with --stimuli naming the broken ones too
    order = rng.permutation(12)
    (tmp_path / "names.txt").write_text("".join(f"{everything[i].name}\n" for i in order))
    np.save(tmp_path / "resp_perm.npy", responses[:, order])
    rc = main(["neural", "--features", str(feats_dir), "--responses", str(tmp_path / "resp_perm.npy"), "--stimuli",
               str(tmp_path / "names.txt"), "--metrics", "rdm", "cka", "-o", str(tmp_path / "named"),
               "--no_progress", "--no_figure"])
    assert rc == 0, capsys.readouterr().err
    assert scores(tmp_path / "named") == pytest.approx(got)


# --------------------------------------------------------------------------- robustness (no skip: an error)


def test_robustness_names_an_unreadable_image_instead_of_substituting(checkpoint, tmp_path, capsys):
    ckpt, _ = checkpoint
    c_root = tmp_path / "c"
    write_image_folder(c_root / "gaussian_noise" / "1", classes=3, per_class=2, size=SIZE, splits=None)
    bad = _break(c_root / "gaussian_noise" / "1" / CLASSES[1] / f"{CLASSES[1]}_000.png")
    rc = main(["robustness", "--ckpt_path", str(ckpt), "--data_path", str(c_root), "-j", "0", "--quiet",
               "-o", str(tmp_path / "r")])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(bad) in err
    assert not (tmp_path / "r" / "summary.json").exists()


# --------------------------------------------------------------------------- --data_backend gpu (run on the CPU)


def test_device_decode_batches_drop_unreadable_files(tmp_path):
    from torch.utils.data import DataLoader

    from ventralkit.data.device_decode import RawCropDataset
    from ventralkit.data.folders import ImageFolderDataset

    root = write_image_folder(tmp_path / "d", classes=3, per_class=2, size=SIZE, splits=("train",))
    bad = _break(root / "train" / CLASSES[0] / f"{CLASSES[0]}_001.png")
    folder = ImageFolderDataset(root / "train", on_bad_image="skip")
    raw = RawCropDataset(folder, SIZE, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    batches = list(DataLoader(raw, batch_size=3, collate_fn=raw.collate))
    images, labels = batches[0]
    assert [u.path for u in batches[0].skipped] == [str(bad)]
    assert labels.tolist() == [0, 1] and images.paths == [folder.samples[i][0] for i in (0, 2)]
    assert images.to("cpu").shape == (2, 3, SIZE, SIZE)
    assert not getattr(batches[1], "skipped", []) and batches[1][1].tolist() == [1, 2, 2]
