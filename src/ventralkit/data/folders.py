"""Image folders with validation up front and clear errors, never a crash deep inside a worker.

``ImageFolderDataset`` reads ``root/<class>/<image>`` (torchvision's layout). Problems a user can
fix (missing folder, empty class, no images) are reported before training starts; an image that
cannot be decoded at load time is reported by path and either skipped (a neighbour is returned in
its place, so batches keep their size) or raised, per ``on_bad_image``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from ..errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

#: names accepted for the validation split, in order (CORnet upstream uses val_in_folders)
VAL_NAMES = ("val", "val_in_folders")


def is_image(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def split_dir(root: str | os.PathLike, split: str) -> Path:
    """``root/train`` or ``root/val`` (``val_in_folders`` accepted), with a one-line error."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"--data_path {root} is not a folder; give the dataset root with train/ and val/ inside")
    names = VAL_NAMES if split in VAL_NAMES else (split,)
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise DataError(
        f"--data_path {root} has no {' or '.join(n + '/' for n in names)} folder; "
        f"put class sub-folders of images under {root / names[0]}"
    )


def scan_classes(folder: str | os.PathLike) -> tuple[list[str], list[tuple[str, int]]]:
    """Sorted class names and (path, label) samples; errors for no classes or an empty class."""
    folder = Path(folder)
    if (folder / "val_annotations.txt").is_file() and (folder / "images").is_dir():  # raw Tiny-ImageNet val/
        raise DataError(f"{folder} is Tiny-ImageNet's val/ as downloaded (images/ + val_annotations.txt); sort it "
                        f"into class folders first: ventralkit prepare tiny-imagenet {folder.parent}")
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DataError(f"{folder} has no class sub-folders; put images in {folder}/<class name>/")
    samples: list[tuple[str, int]] = []
    for label, name in enumerate(classes):
        files = sorted(
            os.path.join(dp, f)
            for dp, _, fs in os.walk(folder / name, followlinks=True)
            for f in fs
            if is_image(f)
        )
        if not files:
            raise DataError(f"class folder {folder / name} has no images ({', '.join(IMAGE_EXTENSIONS[:3])}, ...); "
                            "add images or remove the folder")
        samples += [(f, label) for f in files]
    return classes, samples


def open_rgb(path: str) -> Image.Image:
    with open(path, "rb") as fh:
        img = Image.open(fh)
        img.load()
    return img if img.mode == "RGB" else img.convert("RGB")


class ImageFolderDataset(Dataset):
    """``root/<class>/<image>`` with labels in sorted class order (as torchvision's ImageFolder)."""

    def __init__(self, root: str | os.PathLike, transform=None, on_bad_image: str = "skip",
                 classes: list[str] | None = None):
        if on_bad_image not in ("skip", "error"):
            raise DataError(f"--on_bad_image must be 'skip' or 'error', got {on_bad_image!r}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root} is not a folder of class sub-folders")
        found, self.samples = scan_classes(self.root)
        if classes is not None and found != list(classes):
            raise DataError(f"{self.root} has classes {found[:3]}... that differ from the training classes; "
                            "train and val must have the same class folders")
        self.classes = found
        self.targets = [label for _, label in self.samples]
        self.transform = transform
        self.on_bad_image = on_bad_image

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        for attempt in range(len(self.samples)):
            path, label = self.samples[(index + attempt) % len(self.samples)]
            try:
                img = open_rgb(path)
            except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
                if self.on_bad_image == "error":
                    raise DataError(f"cannot read image {path} ({err}); fix or delete it, "
                                    "or pass --on_bad_image skip") from None
                warnings.warn(f"skipping unreadable image {path}: {err}", stacklevel=2)
                continue
            return (self.transform(img) if self.transform else img), label
        raise DataError(f"no readable image in {self.root}")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Sorted image files directly inside ``folder`` (CORnet ``test`` reads a flat folder)."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise DataError(f"--data_path {folder} does not exist; give a folder of images")
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_image(p))
    if not files:
        raise DataError(f"--data_path {folder} has no image files ({', '.join(IMAGE_EXTENSIONS[:4])}, ...)")
    return files


class ImageListDataset(Dataset):
    """A list of image paths (no labels), e.g. a flat folder for feature extraction."""

    def __init__(self, paths: list[Path], transform=None):
        self.paths = [Path(p) for p in paths]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        path = self.paths[index]
        try:
            img = open_rgb(str(path))
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
            raise DataError(f"cannot read image {path} ({err}); fix or remove it") from None
        return (self.transform(img) if self.transform else img), index
