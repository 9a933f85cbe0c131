"""CIFAR-100 from its python-format folder (``train``, ``test``, ``meta`` pickles), never downloaded.

Items are ``(image, label)`` with the fine label (0..99) by default, or the coarse one (0..19).
The study's input pipelines (docs/reference/heads.md section 1.4):

- ``augment="phinet"``: resize to ``image_size`` (160), random horizontal flip, random rotation
  of up to 10 degrees, normalise with the CIFAR-100 train statistics. The study normalised before
  resizing and rotated the normalised tensor (zero fill); resizing is linear, so resizing first
  and filling rotations with the mean colour computes the same thing.
- ``augment="resnet9"``: random 32 x 32 crop of the 4-pixel reflect-padded image, flip; the
  notebooks did not normalise (pass mean 0, std 1, as ``resnet9``'s ModelInfo does).

Evaluation: resize and normalise only. Batch-level CutMix/MixUp is the engine's job
(``cutmix_alpha``/``mixup_alpha``). Unlike the study, a validation split can be held out of the
training images (``val_split="holdout"``) so the test set is not used for model selection.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from ..errors import ConfigError, DataError
from ..models.compact.stats import CIFAR100_MEAN, CIFAR100_STD

CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
FOLDER_NAME = "cifar-100-python"
FILES = ("train", "test", "meta")
_COARSE20 = Path(__file__).resolve().parent / "mappings" / "cifar100_coarse20.json"


def find_cifar100(root: str | os.PathLike) -> Path:
    """The folder holding ``train``, ``test`` and ``meta``: ``root`` itself or ``root/cifar-100-python``."""
    root = Path(root).expanduser()
    for folder in (root, root / FOLDER_NAME):
        if any((folder / f).is_file() for f in FILES):
            missing = [f for f in FILES if not (folder / f).is_file()]
            if missing:
                raise DataError(
                    f"CIFAR-100 folder {folder} lacks {', '.join(missing)}: extract all of {CIFAR100_URL} "
                    f"there (train, test and meta)"
                )
            return folder
    raise DataError(
        f"CIFAR-100 not found in {root}: download {CIFAR100_URL} by hand and extract it in {root} "
        f"(giving {root / FOLDER_NAME}/train, test, meta); ventralkit never downloads"
    )


def _load_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, OSError) as err:
        raise DataError(f"{path} is not a CIFAR-100 python pickle ({type(err).__name__}); re-extract {CIFAR100_URL}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a CIFAR-100 python pickle (holds a {type(obj).__name__})")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_meta(folder: Path) -> tuple[list[str], list[str]]:
    """(fine class names, coarse class names) from ``meta``."""
    meta = _load_pickle(folder / "meta")
    try:
        fine, coarse = meta["fine_label_names"], meta["coarse_label_names"]
    except KeyError as err:
        raise DataError(f"{folder / 'meta'} has no {err.args[0]!r} list; re-extract {CIFAR100_URL}") from None
    def as_str(name) -> str:
        return name.decode() if isinstance(name, bytes) else str(name)

    return [as_str(n) for n in fine], [as_str(n) for n in coarse]


def read_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images uint8 N x 32 x 32 x 3, fine labels, coarse labels) of ``train`` or ``test``."""
    path = folder / split
    batch = _load_pickle(path)
    try:
        data = np.asarray(batch["data"], dtype=np.uint8)
        fine = np.asarray(batch["fine_labels"], dtype=np.int64)
        coarse = np.asarray(batch["coarse_labels"], dtype=np.int64)
    except KeyError as err:
        raise DataError(f"{path} has no {err.args[0]!r} entry; re-extract {CIFAR100_URL}") from None
    n = len(fine)
    if data.ndim != 2 or data.shape != (n, 3 * 32 * 32) or len(coarse) != n:
        raise DataError(f"{path}: data of shape {data.shape} does not match {n} labels of 3x32x32 images")
    if n and (fine.min() < 0 or fine.max() > 99 or coarse.min() < 0 or coarse.max() > 19):
        raise DataError(f"{path}: labels out of range (fine 0..99, coarse 0..19)")
    return data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1), fine, coarse


class CIFAR100(Dataset):
    """One split of CIFAR-100 read into memory (``subset`` makes hold-out splits without re-reading).

    ``transform`` receives a uint8 tensor 3 x 32 x 32; without one, items are float tensors in [0, 1].
    ``target``: ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses).
    """

    def __init__(self, root, split: str = "train", transform=None, target: str = "fine"):
        if split not in ("train", "test"):
            raise ConfigError(f"CIFAR-100 split must be 'train' or 'test', got {split!r}")
        if target not in ("fine", "coarse"):
            raise ConfigError(f"CIFAR-100 target must be 'fine' or 'coarse', got {target!r}")
        self.folder = find_cifar100(root)
        self.fine_classes, self.coarse_classes = read_meta(self.folder)
        self.split, self.transform, self.target = split, transform, target
        self._set_arrays(*read_split(self.folder, split))
        self.classes = self.fine_classes if target == "fine" else self.coarse_classes

    def _set_arrays(self, images: np.ndarray, fine: np.ndarray, coarse: np.ndarray) -> None:
        self.images, self.fine_targets, self.coarse_targets = images, fine, coarse
        self.targets = (fine if self.target == "fine" else coarse).tolist()

    def subset(self, indices, transform=None) -> "CIFAR100":
        """The images at ``indices`` with another transform, sharing the metadata."""
        indices = np.asarray(indices, dtype=np.int64)
        sub = copy.copy(self)
        sub.transform = transform
        sub._set_arrays(self.images[indices], self.fine_targets[indices], self.coarse_targets[indices])
        return sub

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = torch.from_numpy(np.ascontiguousarray(self.images[index].transpose(2, 0, 1)))
        image = self.transform(image) if self.transform is not None else image.float().div_(255)
        return image, self.targets[index]


def cifar100_transforms(
    image_size: int = 160,
    mean=CIFAR100_MEAN,
    std=CIFAR100_STD,
    augment: str = "phinet",
):
    """(train transform, eval transform) on uint8 3 x 32 x 32 tensors, as the study used them."""
    if augment not in ("phinet", "resnet9", "none"):
        raise ConfigError(f"CIFAR-100 augment must be 'phinet', 'resnet9' or 'none', got {augment!r}")
    size = int(image_size)
    to_float = v2.ToDtype(torch.float32, scale=True)
    resize = [v2.Resize((size, size), antialias=True)] if size != 32 else []
    normalize = v2.Normalize(list(mean), list(std))
    eval_tf = v2.Compose([to_float, *resize, normalize])
    if augment == "phinet":
        train = [to_float, *resize, v2.RandomHorizontalFlip(0.5), v2.RandomRotation(10, fill=list(mean)), normalize]
    elif augment == "resnet9":
        train = [v2.RandomCrop(32, padding=4, padding_mode="reflect"), v2.RandomHorizontalFlip(0.5), to_float,
                 *resize, normalize]
    else:
        train = [to_float, *resize, normalize]
    return v2.Compose(train), eval_tf


def holdout_indices(labels: np.ndarray, per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) indices: ``per_class`` random images of every class held out, seeded."""
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) <= per_class:
            raise DataError(f"class {c} has {len(idx)} training images, too few to hold out {per_class}")
        held.append(rng.choice(idx, per_class, replace=False))
    held = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    kept = np.setdiff1d(np.arange(len(labels)), held)
    return kept, held


def cifar100_datasets(
    root,
    image_size: int = 160,
    train_transform=None,
    eval_transform=None,
    *,
    info=None,
    mean=None,
    std=None,
    augment: str | None = None,
    target: str = "fine",
    val_split: str = "test",
    holdout_per_class: int = 50,
    seed: int = 0,
) -> tuple[CIFAR100, CIFAR100, list[str]]:
    """(train set, validation set, class names) for the engine's ``dataset = "cifar100"``.

    Transforms default to ``cifar100_transforms(image_size, mean, std, augment)``; ``mean``, ``std``
    and ``augment`` left at None come from the model's ``info`` (``ModelInfo``: its mean/std and
    ``extra["cifar100_augment"]``), else the PhiNet pipeline (CIFAR-100 statistics, flip + rotation).
    ``val_split``: ``"test"`` (or ``"val"``) validates on the official test images, as the study
    did; ``"holdout"`` holds ``holdout_per_class`` training images per class out (seeded) and
    validates on those, keeping the test set for the end.
    """
    if info is not None:
        mean = info.mean if mean is None else mean
        std = info.std if std is None else std
        augment = augment or info.extra.get("cifar100_augment")
    default_train, default_eval = cifar100_transforms(
        image_size, CIFAR100_MEAN if mean is None else mean, CIFAR100_STD if std is None else std, augment or "phinet")
    train_transform = train_transform or default_train
    eval_transform = eval_transform or default_eval
    if val_split in ("test", "val"):
        train = CIFAR100(root, "train", train_transform, target)
        val = CIFAR100(root, "test", eval_transform, target)
    elif val_split == "holdout":
        full = CIFAR100(root, "train", None, target)
        kept, held = holdout_indices(np.asarray(full.targets), int(holdout_per_class), seed)
        train, val = full.subset(kept, train_transform), full.subset(held, eval_transform)
    else:
        raise ConfigError(f"CIFAR-100 val_split must be 'test' or 'holdout', got {val_split!r}")
    return train, val, list(train.classes)


def write_fake_cifar100(root, n_train: int = 200, n_test: int = 100, seed: int = 0) -> Path:
    """Write a small generated CIFAR-100 in the exact python format; returns ``root/cifar-100-python``.

    Labels cycle through the 100 classes (coarse labels follow the real superclasses); each class
    has its own 2 x 2 colour pattern plus noise, so a model can learn it in a few steps.
    """
    doc = json.loads(_COARSE20.read_text(encoding="utf-8"))
    fine_names, coarse_names = doc["class_names"], doc["parent_names"]
    coarse_of = np.zeros(100, dtype=np.int64)
    for p, kids in doc["parents"].items():
        for f in kids:
            coarse_of[int(f)] = int(p)
    rng = np.random.default_rng(seed)
    patterns = rng.integers(30, 226, size=(100, 3, 2, 2)).repeat(16, axis=2).repeat(16, axis=3)
    folder = Path(root).expanduser() / FOLDER_NAME
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        fine = rng.permutation(np.arange(n) % 100)
        noise = rng.normal(0, 20, size=(n, 3, 32, 32))
        data = np.clip(patterns[fine] + noise, 0, 255).astype(np.uint8).reshape(n, -1)
        batch = {
            "filenames": [f"fake_{split}_{i:05d}.png" for i in range(n)],
            "batch_label": f"{'training' if split == 'train' else 'testing'} batch 1 of 1",
            "fine_labels": fine.tolist(),
            "coarse_labels": coarse_of[fine].tolist(),
            "data": data,
        }
        with open(folder / split, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": fine_names, "coarse_label_names": coarse_names}, f, protocol=2)
    return folder
