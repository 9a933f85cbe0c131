"""The embedded digits dataset and the generated image folders (no download anywhere)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from ventralkit.data.embedded import (
    DIGITS_CLASSES,
    digits_datasets,
    digits_split,
    shape_class_names,
    write_digits_folder,
    write_flat_images,
    write_image_folder,
)
from ventralkit.data.folders import ImageFolderDataset, list_images


def test_digits_are_scikit_learns():
    from sklearn.datasets import load_digits

    from ventralkit.data.embedded import _load_digits

    bunch = load_digits()
    images, labels = _load_digits()
    assert np.array_equal(labels, bunch.target)
    assert np.array_equal(images, np.rint(bunch.images * 255 / 16).astype(np.uint8))


def test_digits_split_is_deterministic_stratified_and_disjoint():
    from ventralkit.data.embedded import _load_digits

    _, labels = _load_digits()
    train, val = digits_split(0)
    train2, val2 = digits_split(0)
    assert np.array_equal(train, train2) and np.array_equal(val, val2)
    assert len(train) + len(val) == len(labels) == 1797
    assert not set(train) & set(val)
    assert len(val) == 359
    for c in range(10):
        n_c = int((labels == c).sum())
        n_val = int((labels[val] == c).sum())
        assert n_val == round(0.2 * n_c), (c, n_val, n_c)
    other_train, _ = digits_split(1)
    assert not np.array_equal(train, other_train)


def test_digits_datasets_items_and_classes():
    train, val, classes = digits_datasets(image_size=16)
    assert classes == DIGITS_CLASSES == [str(d) for d in range(10)]
    assert (len(train), len(val)) == (1438, 359)
    x, y = val[0]
    assert isinstance(x, torch.Tensor) and x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert torch.equal(x[0], x[1])  # grey rendered as RGB
    assert y == val.targets[0] and 0 <= y < 10
    # a transform is applied to the PIL image
    train_t, _, _ = digits_datasets(train_transform=lambda img: torch.tensor(img.size), image_size=24)
    assert train_t[3][0].tolist() == [24, 24]


def test_write_digits_folder_matches_the_split(tmp_path):
    root = write_digits_folder(tmp_path / "digits", image_size=20, per_class=2)
    for split in ("train", "val"):
        ds = ImageFolderDataset(root / split)
        assert ds.classes == DIGITS_CLASSES
        assert len(ds) == 20
        img, _ = ds[0]
        assert img.size == (20, 20) and img.mode == "RGB"
    # file names are the digits indices of the split they belong to
    _, val_idx = digits_split(0)
    names = {int(p.stem) for p in (root / "val").rglob("*.png")}
    assert names <= set(val_idx.tolist())


def test_write_image_folder_layouts_and_determinism(tmp_path):
    a = write_image_folder(tmp_path / "a", classes=8, per_class=2, size=24, seed=3)
    b = write_image_folder(tmp_path / "b", classes=8, per_class=2, size=24, seed=3)
    names = shape_class_names(8)
    assert len(set(names)) == 8
    ds = ImageFolderDataset(a / "train")
    assert ds.classes == sorted(names) and len(ds) == 16

    def digest(root):
        return [hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.png"))]

    assert digest(a) == digest(b)
    flat = write_image_folder(tmp_path / "flat", classes=2, per_class=3, splits=None, ext="jpg")
    assert sorted(p.name for p in flat.iterdir()) == sorted(shape_class_names(2))
    assert len(list(flat.rglob("*.jpg"))) == 6


def test_write_flat_images_sorted(tmp_path):
    paths = write_flat_images(tmp_path / "imgs", n=3, size=16)
    assert list_images(tmp_path / "imgs") == paths


def test_digits_image_size_too_small():
    from ventralkit.errors import ConfigError

    with pytest.raises(ConfigError):
        digits_datasets(image_size=4)
