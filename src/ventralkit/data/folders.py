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

from torch.utils.data import Dataset

from ..errors import DataError
from .listing import (  # noqa: F401  (re-exported: the torch-free half of this module lives in listing.py)
    BAD_IMAGE_ERRORS,
    IMAGE_EXTENSIONS,
    VAL_NAMES,
    is_image,
    list_images,
    open_rgb,
    scan_classes,
    split_dir,
    walk_images,
)


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
            except BAD_IMAGE_ERRORS as err:
                if self.on_bad_image == "error":
                    raise DataError(f"cannot read image {path} ({err}); fix or delete it, "
                                    "or pass --on_bad_image skip") from None
                warnings.warn(f"skipping unreadable image {path}: {err}", stacklevel=2)
                continue
            return (self.transform(img) if self.transform else img), label
        raise DataError(f"no readable image in {self.root}")


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
        except BAD_IMAGE_ERRORS as err:
            raise DataError(f"cannot read image {path} ({err}); fix or remove it") from None
        return (self.transform(img) if self.transform else img), index
