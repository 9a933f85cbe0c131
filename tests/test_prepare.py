"""`ventralkit prepare`: MiniImageNet and Tiny-ImageNet layouts, idempotent, resumable, lossless."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ventralkit.cli import main
from ventralkit.data.folders import ImageFolderDataset
from ventralkit.data.prepare import MARKER, PLAN, prepare_miniimagenet, prepare_tiny_imagenet

WNIDS = ["n01443537", "n01629819", "n01641577"]


def _jpeg(path: Path, seed: int = 0) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (seed * 40 % 256, 90, 160)).save(path, "JPEG")


def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in root.rglob("*.JPEG")}


def make_mini(root: Path, val_too: bool = False) -> Path:
    for i, w in enumerate(WNIDS):
        for k in range(3):
            _jpeg(root / "train" / w / f"{w}_{k:05d}.JPEG", i + k)
        for k in range(2):
            _jpeg(root / "test" / w / f"{w}_t{k:05d}.JPEG", i + k + 7)
            if val_too:
                _jpeg(root / "val" / w / f"{w}_v{k:05d}.JPEG", i + k + 3)
    return root


def make_tiny(root: Path) -> Path:
    (root / "wnids.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    lines = []
    for i, w in enumerate(WNIDS):
        for k in range(2):
            _jpeg(root / "train" / w / "images" / f"{w}_{k}.JPEG", i + k)
        (root / "train" / w / f"{w}_boxes.txt").write_text("")
        for k in range(2):
            name = f"val_{2 * i + k}.JPEG"
            _jpeg(root / "val" / "images" / name, 10 + 2 * i + k)
            lines.append(f"{name}\t{w}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    _jpeg(root / "test" / "images" / "test_0.JPEG")
    return root


# --------------------------------------------------------------------------- MiniImageNet


def test_mini_in_place_renames_test_and_second_run_is_a_no_op(tmp_path, capsys):
    src = make_mini(tmp_path / "MiniImageNet")
    before = _files(src)
    assert main(["prepare", "miniimagenet", str(src)]) == 0
    assert not (src / "test").exists() and (src / "val").is_dir()
    assert _files(src) == before
    marker = json.loads((src / MARKER).read_text())
    assert marker["val_from"] == "test" and marker["splits"]["val"]["images"] == 6
    assert not (src / PLAN).exists()
    assert ImageFolderDataset(src / "val").classes == WNIDS
    out = capsys.readouterr().out
    assert "train: 3 classes, 9 images (3 per class)" in out and "expected 100 classes" in out
    assert main(["prepare", "miniimagenet", str(src)]) == 0
    assert "already prepared" in capsys.readouterr().out
    assert _files(src) == before


def test_mini_to_destination_moves_and_looks_through_a_wrapper_folder(tmp_path):
    src = make_mini(tmp_path / "download" / "MiniImageNet")
    before = _files(src)
    res = prepare_miniimagenet(tmp_path / "download", tmp_path / "out", log=lambda s: None)
    assert not res.already_done and res.actions == 15
    assert _files(tmp_path / "out") == before
    assert not list(src.rglob("*.JPEG"))
    assert sorted(p.name for p in (tmp_path / "out" / "val").iterdir()) == WNIDS
    again = prepare_miniimagenet(tmp_path / "download", tmp_path / "out", log=lambda s: None)
    assert again.already_done and again.actions == 0


def test_mini_resumes_an_interrupted_move(tmp_path):
    src = make_mini(tmp_path / "src")
    before = _files(src)
    dst = tmp_path / "dst"
    # an interrupted run: plan written, one class of train moved, one file duplicated by a copy
    dst.mkdir()
    (dst / PLAN).write_text(json.dumps({"dataset": "miniimagenet", "val_from": "test"}))
    (dst / "train").mkdir()
    (src / "train" / WNIDS[0]).rename(dst / "train" / WNIDS[0])
    dup = src / "train" / WNIDS[1] / f"{WNIDS[1]}_00000.JPEG"
    (dst / "train" / WNIDS[1]).mkdir()
    (dst / "train" / WNIDS[1] / dup.name).write_bytes(dup.read_bytes())
    res = prepare_miniimagenet(src, dst, log=lambda s: None)
    assert not res.already_done
    assert _files(dst) == before
    assert (dst / MARKER).exists() and not (dst / PLAN).exists()


def test_mini_copy_and_symlink_keep_the_download(tmp_path):
    src = make_mini(tmp_path / "src")
    before = _files(src)
    prepare_miniimagenet(src, tmp_path / "copy", mode="copy", log=lambda s: None)
    prepare_miniimagenet(src, tmp_path / "link", mode="symlink", log=lambda s: None)
    assert _files(src) == before
    assert _files(tmp_path / "copy") == before
    assert (tmp_path / "link" / "train").is_symlink()
    assert ImageFolderDataset(tmp_path / "link" / "val").classes == WNIDS


def test_mini_errors_are_one_line(tmp_path, capsys):
    assert main(["prepare", "miniimagenet", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not exist" in err
    both = make_mini(tmp_path / "both", val_too=True)
    assert main(["prepare", "miniimagenet", str(both)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--val_from" in err
    assert (both / "test").is_dir() and (both / "val").is_dir()  # untouched
    assert main(["prepare", "miniimagenet", str(both), "--val_from", "test"]) == 0
    assert (both / "val_original").is_dir() and len(list((both / "val").rglob("*_t*.JPEG"))) == 6
    (tmp_path / "notrain" / "test").mkdir(parents=True)
    assert main(["prepare", "miniimagenet", str(tmp_path / "notrain")]) == 2
    assert "no train/" in capsys.readouterr().err


def test_mini_class_mismatch_is_reported(tmp_path):
    from ventralkit.errors import DataError

    src = make_mini(tmp_path / "src")
    _jpeg(src / "train" / "n09999999" / "x.JPEG")
    with pytest.raises(DataError, match="different classes"):
        prepare_miniimagenet(src, log=lambda s: None)
    assert not (src / MARKER).exists()


# --------------------------------------------------------------------------- Tiny-ImageNet


def test_tiny_val_is_sorted_into_class_folders_once(tmp_path, capsys):
    root = make_tiny(tmp_path / "tiny-imagenet-200")
    before = _files(root)
    assert main(["prepare", "tiny-imagenet", str(root)]) == 0
    assert _files(root) == before
    assert not (root / "val" / "images").exists()
    assert sorted(p.name for p in (root / "val").iterdir() if p.is_dir()) == WNIDS
    assert (root / "val" / WNIDS[1] / "val_2.JPEG").is_file()
    train, val = ImageFolderDataset(root / "train"), ImageFolderDataset(root / "val")
    assert train.classes == val.classes == WNIDS and len(val) == 6 and len(train) == 6
    assert "6 val images moved" in capsys.readouterr().out
    assert main(["prepare", "tiny-imagenet", str(root)]) == 0
    assert "already prepared" in capsys.readouterr().out
    assert _files(root) == before


def test_tiny_resumes_a_half_done_reorganisation(tmp_path):
    root = make_tiny(tmp_path / "tiny")
    before = _files(root)
    # interrupted: two files already moved, one copied but its source not yet removed
    (root / "val" / WNIDS[0]).mkdir()
    (root / "val" / "images" / "val_0.JPEG").rename(root / "val" / WNIDS[0] / "val_0.JPEG")
    (root / "val" / "images" / "val_1.JPEG").rename(root / "val" / WNIDS[0] / "val_1.JPEG")
    (root / "val" / WNIDS[1]).mkdir()
    src = root / "val" / "images" / "val_2.JPEG"
    (root / "val" / WNIDS[1] / "val_2.JPEG").write_bytes(src.read_bytes())
    res = prepare_tiny_imagenet(root, log=lambda s: None)
    assert res.actions == 4 and not res.already_done
    assert _files(root) == before
    assert (root / MARKER).exists()


def test_tiny_errors_are_one_line_and_touch_nothing(tmp_path, capsys):
    root = make_tiny(tmp_path / "tiny")
    (root / "val" / "val_annotations.txt").unlink()
    assert main(["prepare", "tiny-imagenet", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "val_annotations.txt is missing" in err

    root2 = make_tiny(tmp_path / "tiny2")
    (root2 / "val" / "images" / "val_5.JPEG").unlink()
    assert main(["prepare", "tiny-imagenet", str(root2)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing" in err and "val_5.JPEG" in err
    assert len(list((root2 / "val" / "images").iterdir())) == 5  # nothing moved
    assert not (root2 / MARKER).exists()

    assert main(["prepare", "tiny-imagenet", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_tiny_keeps_unannotated_files(tmp_path):
    root = make_tiny(tmp_path / "tiny")
    _jpeg(root / "val" / "images" / "stray.JPEG")
    res = prepare_tiny_imagenet(root, log=lambda s: None)
    assert (root / "val" / ".unannotated" / "stray.JPEG").is_file()
    assert res.warnings and "not in val_annotations.txt" in res.warnings[0]
    assert ImageFolderDataset(root / "val").classes == WNIDS


def test_prepare_digits_writes_the_embedded_split_as_folders(cli, tmp_path):
    from PIL import Image

    code, out, err = cli("prepare", "digits", tmp_path / "d", "--imsize", "16", "--per_class", "2")
    assert code == 0, err
    for split in ("train", "val"):
        classes = sorted(p.name for p in (tmp_path / "d" / split).iterdir())
        assert len(classes) == 10  # scikit-learn's digits: 10 classes
        files = list((tmp_path / "d" / split).glob("*/*.png"))
        assert len(files) == 20 and Image.open(files[0]).size == (16, 16)
    code, out, err = cli("prepare", "digits", tmp_path / "e", "--imsize", "4")
    assert code == 2 and "--imsize 4 is too small" in err and err.count("\n") == 1
