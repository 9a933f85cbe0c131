"""Datasets that need no download: scikit-learn's bundled digits and generated coloured shapes.

``digits``: the 1,797 8x8 grey digits of ``sklearn.datasets.load_digits`` (UCI optdigits, values
0..16), upsampled (bicubic) to RGB images of any size, split 80/20 per class with a fixed seed,
so the split is stratified and identical on every machine. Classes are named ``"0"`` .. ``"9"``.

``write_digits_folder`` writes the same split as an ImageFolder tree (``root/train/<class>/*.png``
and ``root/val/<class>/*.png``); ``write_image_folder`` draws small coloured-shape datasets for
tests and for trying the folder path of the engine.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

#: the digits classes, in label order
DIGITS_CLASSES = [str(d) for d in range(10)]

#: fraction of each class held out for validation
DIGITS_VAL_FRACTION = 0.2


def _digits_file() -> Path | None:
    """scikit-learn's bundled ``datasets/data/digits.csv.gz``, found without importing scikit-learn."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        path = Path(base) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    return None


@lru_cache(maxsize=1)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (1797, 8, 8) scaled to 0..255, labels int64 (1797,)), read once.

    The CSV that ``sklearn.datasets.load_digits`` reads is parsed directly (importing scikit-learn
    costs seconds); ``load_digits`` is the fallback should the file move.
    """
    path = _digits_file()
    data = None
    if path is not None:
        try:
            data = np.loadtxt(path, delimiter=",", dtype=np.float64)
        except (OSError, ValueError):
            data = None
    if data is not None and data.shape == (1797, 65):
        raw, target = data[:, :64].reshape(-1, 8, 8), data[:, 64]
    else:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        raw, target = bunch.images, bunch.target
    images = np.clip(np.rint(raw * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return images, np.asarray(target).astype(np.int64)


def digits_split(seed: int = 0, val_fraction: float = DIGITS_VAL_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) into the digits arrays: per-class shuffles with ``seed``, each sorted.

    ``round(val_fraction * n_c)`` images of every class go to val (35-37 each, 359 in all), so
    both splits keep the class balance. Depends only on numpy's legacy ``RandomState`` stream.
    """
    _, labels = _load_digits()
    rng = np.random.RandomState(seed)
    train, val = [], []
    for c in range(len(DIGITS_CLASSES)):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_val = int(round(val_fraction * len(idx)))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def render_digit(image8: np.ndarray, image_size: int = 32) -> Image.Image:
    """An 8x8 uint8 digit as an RGB PIL image of ``image_size`` pixels (bicubic upsampling)."""
    img = Image.fromarray(image8, mode="L")
    if image_size != 8:
        img = img.resize((image_size, image_size), Image.BICUBIC)
    return img.convert("RGB")


class DigitsDataset(Dataset):
    """One split of the digits: items are ``(transform(PIL RGB image), label)``.

    Images are rendered on access (cheap), so any ``image_size`` costs no memory up front. Without a
    transform, items are float tensors in [0, 1] (``ToTensor``). ``samples`` holds
    ``("digits/<split>/<class>/<index>.png", label)`` pairs, names that match ``write_digits_folder``.
    """

    def __init__(self, indices: np.ndarray, transform: Callable | None = None, image_size: int = 32,
                 split: str = "train"):
        images, labels = _load_digits()
        self.indices = np.asarray(indices, dtype=np.int64)
        self._images = images
        self._labels = labels
        self.transform = transform
        self.image_size = int(image_size)
        self.split = split
        self.classes = list(DIGITS_CLASSES)
        self.targets = [int(labels[i]) for i in self.indices]
        self.samples = [(f"digits/{split}/{labels[i]}/{i:04d}.png", int(labels[i])) for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def image(self, index: int) -> Image.Image:
        return render_digit(self._images[self.indices[index]], self.image_size)

    def __getitem__(self, index: int):
        img = self.image(index)
        if self.transform is not None:
            x = self.transform(img)
        else:
            x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
        return x, self.targets[index]


def digits_datasets(
    train_transform: Callable | None = None,
    eval_transform: Callable | None = None,
    image_size: int = 32,
    seed: int = 0,
) -> tuple[DigitsDataset, DigitsDataset, list[str]]:
    """``(train_ds, val_ds, classes)`` of the embedded digits (1,438 train / 359 val images)."""
    if int(image_size) < 8:
        from ..errors import ConfigError

        raise ConfigError(f"--image_size {image_size} is too small for the digits dataset; use 8 or more")
    train_idx, val_idx = digits_split(seed)
    train = DigitsDataset(train_idx, train_transform, image_size, split="train")
    val = DigitsDataset(val_idx, eval_transform, image_size, split="val")
    return train, val, list(DIGITS_CLASSES)


def write_digits_folder(
    root: str | os.PathLike,
    image_size: int = 32,
    per_class: int | None = None,
    seed: int = 0,
) -> Path:
    """Write the digits split as ``root/train/<class>/<index>.png`` and ``root/val/<class>/<index>.png``.

    ``per_class`` keeps at most that many images per class in each split (the first ones in index
    order). Existing files of the same name are overwritten, so re-running is harmless.
    """
    root = Path(root)
    train_idx, val_idx = digits_split(seed)
    images, labels = _load_digits()
    for split, indices in (("train", train_idx), ("val", val_idx)):
        counts = {c: 0 for c in range(len(DIGITS_CLASSES))}
        for i in indices:
            c = int(labels[i])
            if per_class is not None and counts[c] >= per_class:
                continue
            counts[c] += 1
            folder = root / split / DIGITS_CLASSES[c]
            folder.mkdir(parents=True, exist_ok=True)
            render_digit(images[i], image_size).save(folder / f"{i:04d}.png")
    return root


# --------------------------------------------------------------------------- coloured shapes

SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond")
_COLOURS = ((220, 40, 40), (40, 170, 60), (40, 80, 220), (230, 180, 30), (170, 60, 200), (30, 190, 200),
            (240, 120, 30), (120, 120, 120))


def shape_class_names(classes: int) -> list[str]:
    """``circle, square, ...`` then ``circle1, square1, ...`` for more than six classes."""
    return [SHAPES[i % len(SHAPES)] + (str(i // len(SHAPES)) if i >= len(SHAPES) else "") for i in range(classes)]


def draw_shape(label: int, size: int = 32, rng: np.random.RandomState | None = None) -> Image.Image:
    """One RGB image of class ``label``: its shape and colour at a jittered place and scale on noise."""
    rng = rng if rng is not None else np.random.RandomState(label)
    bg = rng.randint(0, 60, size=(size, size, 3)).astype(np.uint8)
    img = Image.fromarray(bg, mode="RGB")
    draw = ImageDraw.Draw(img)
    shape = SHAPES[label % len(SHAPES)]
    base = np.array(_COLOURS[(label + label // len(SHAPES)) % len(_COLOURS)], dtype=float)
    colour = tuple(int(v) for v in np.clip(base + rng.randint(-25, 26, size=3), 0, 255))
    r = size * rng.uniform(0.22, 0.36)
    cx, cy = size / 2 + rng.uniform(-0.12, 0.12) * size, size / 2 + rng.uniform(-0.12, 0.12) * size
    box = (cx - r, cy - r, cx + r, cy + r)
    width = max(1, int(round(size / 12)))
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    elif shape == "cross":
        draw.line([(cx - r, cy), (cx + r, cy)], fill=colour, width=2 * width)
        draw.line([(cx, cy - r), (cx, cy + r)], fill=colour, width=2 * width)
    elif shape == "ring":
        draw.ellipse(box, outline=colour, width=2 * width)
    else:  # diamond
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=colour)
    if label >= len(SHAPES):  # later classes: same shapes with a stripe, so every class differs
        k = label // len(SHAPES)
        for j in range(k):
            y = int((j + 1) * size / (k + 1))
            draw.line([(0, y), (size, y)], fill=(255, 255, 255), width=1)
    return img


def write_image_folder(
    root: str | os.PathLike,
    classes: int = 3,
    per_class: int = 4,
    size: int = 32,
    seed: int = 0,
    splits: tuple[str, ...] | None = ("train", "val"),
    ext: str = "png",
) -> Path:
    """Generate a coloured-shape ImageFolder tree and return ``root``.

    With ``splits`` (default ``("train", "val")``) the tree is ``root/<split>/<class>/<k>.<ext>``
    with ``per_class`` images per class in each split; with ``splits=None`` (or ``()``) the class
    folders sit directly under ``root``. ``ext`` is ``png`` or ``jpg``. Deterministic in ``seed``.
    """
    root = Path(root)
    names = shape_class_names(classes)
    rng = np.random.RandomState(seed)
    ext = ext.lower().lstrip(".")
    fmt = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG"}[ext]
    for split in (splits or ("",)):
        for label, name in enumerate(names):
            folder = root / split / name if split else root / name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                img = draw_shape(label, size, rng)
                img.save(folder / f"{name}_{k:03d}.{ext}", fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return root


def write_flat_images(folder: str | os.PathLike, n: int = 4, size: int = 32, seed: int = 0,
                      ext: str = "jpg") -> list[Path]:
    """``n`` shape images directly in ``folder`` (the flat layout of CORnet ``run.py test``), sorted."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    fmt = "JPEG" if ext.lower() in ("jpg", "jpeg") else ext.upper()
    width = max(3, int(math.log10(max(n, 1))) + 1)
    paths = []
    for k in range(n):
        path = folder / f"img_{k:0{width}d}.{ext}"
        draw_shape(k % 6, size, rng).save(path, fmt)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- occluded digits

#: difficulty of ``--dataset digits-occluded`` without a ``:LEVEL`` suffix
OCCLUSION_DEFAULT = 0.5
OCCLUDED_PREFIX = "digits-occluded"


def occlusion_level(dataset: str) -> float:
    """The difficulty in ``digits-occluded[:LEVEL]`` (0 = clean digits, 1 = hardest); a ConfigError if bad."""
    from ..errors import ConfigError

    name, sep, level = dataset.partition(":")
    if name != OCCLUDED_PREFIX:
        raise ConfigError(f"--dataset {dataset}: not a digits-occluded dataset")
    if not sep:
        return OCCLUSION_DEFAULT
    try:
        value = float(level)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"--dataset {dataset}: the occlusion level after ':' must be a number in [0, 1], "
                          "e.g. digits-occluded:0.5")
    return value + 0.0  # -0.0 is 0.0


def canonical_dataset(dataset: str) -> str:
    """One spelling per dataset, so that two spellings of the same data compare equal.

    ``digits-occluded``, ``digits-occluded:0.50`` and ``digits-occluded:5e-1`` all become
    ``digits-occluded:0.5`` (the level made explicit, as the shortest float that reads back the same);
    other names are returned as given. A bad level is the ``occlusion_level`` ConfigError.
    """
    if dataset.partition(":")[0] != OCCLUDED_PREFIX:
        return dataset
    return f"{OCCLUDED_PREFIX}:{occlusion_level(dataset)!r}"


def occlude(image: Image.Image, level: float, seed: int) -> Image.Image:
    """Degrade a grey digit image: ``level`` sets the number of bars and blobs and the noise.

    Occluders are drawn at random places, orientations and grey values, dark ones hide strokes and
    bright ones look like strokes (clutter); then Gaussian pixel noise of sd ``0.3 * level`` (of the
    full range) is added. Everything scales with the image size and depends only on ``seed``.
    """
    size = image.size[0]
    grey = image.convert("L")
    if level <= 0:
        return grey.convert("RGB")
    rng = np.random.RandomState(seed)
    draw = ImageDraw.Draw(grey)
    n_shapes = int(round(1 + 5 * level))
    for _ in range(n_shapes):
        value = int(rng.choice([rng.randint(0, 40), rng.randint(150, 256)]))
        cx, cy = rng.uniform(0.15, 0.85, size=2) * size
        if rng.rand() < 0.6:  # a bar through (cx, cy)
            angle = rng.uniform(0, np.pi)
            half = size * rng.uniform(0.3, 0.7)
            dx, dy = half * np.cos(angle), half * np.sin(angle)
            width = max(1, int(round(size * rng.uniform(0.08, 0.08 + 0.12 * level))))
            draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=value, width=width)
        else:  # a blob
            rx, ry = size * rng.uniform(0.08, 0.08 + 0.16 * level, size=2)
            draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=value)
    pixels = np.asarray(grey, dtype=np.float32) + rng.normal(0.0, 0.3 * level * 255.0, size=(size, size))
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), mode="L").convert("RGB")


class OccludedDigitsDataset(DigitsDataset):
    """The digits with bars, blobs and noise (``occlude``), fixed per image: the same on every access.

    Image ``i`` of the digits arrays is always degraded with seed ``i``, so train and val stay disjoint
    and every machine sees the same pixels.
    """

    def __init__(self, indices: np.ndarray, transform: Callable | None = None, image_size: int = 32,
                 split: str = "train", level: float = OCCLUSION_DEFAULT):
        super().__init__(indices, transform, image_size, split)
        self.level = float(level)
        self.samples = [(f"digits-occluded/{split}/{c}/{i:04d}.png", c) for (_, c), i in zip(self.samples, self.indices)]

    def image(self, index: int) -> Image.Image:
        i = int(self.indices[index])
        return occlude(render_digit(self._images[i], self.image_size), self.level, seed=i)


def occluded_digits_datasets(
    level: float = OCCLUSION_DEFAULT,
    train_transform: Callable | None = None,
    eval_transform: Callable | None = None,
    image_size: int = 32,
    seed: int = 0,
) -> tuple[OccludedDigitsDataset, OccludedDigitsDataset, list[str]]:
    """``(train_ds, val_ds, classes)``: the digits split of ``digits_datasets``, degraded at ``level``."""
    train, val, classes = digits_datasets(image_size=image_size, seed=seed)  # validates the size
    return (OccludedDigitsDataset(train.indices, train_transform, image_size, "train", level),
            OccludedDigitsDataset(val.indices, eval_transform, image_size, "val", level), classes)
