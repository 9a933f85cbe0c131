"""Image folders with validation up front and clear errors, never a crash deep inside a worker.

``ImageFolderDataset`` reads ``root/<class>/<image>`` (torchvision's layout). Problems a user can
fix (missing folder, empty class, no images) are reported before training starts; an image that
cannot be decoded at load time is either raised (a one-line error naming it) or skipped, per
``on_bad_image``.

Skipping never puts another image in its place: a substitute would be counted twice, under the
skipped file's name in per-image outputs. The dataset returns an ``Unreadable`` marker instead, and
``collate_readable`` (the loader's ``collate_fn``; ``dataset.collate``) drops it from the batch and
hands the skipped files on in ``batch.skipped``, so consumers count only images actually read and can
list the others.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils.data import Dataset, default_collate

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


BAD_IMAGE_CHOICES = ("skip", "error")


class Unreadable:
    """Returned in place of an image that cannot be decoded under ``on_bad_image="skip"``.

    It carries the dataset index and the file, so the consumer can leave that row out of every count
    and list it; ``collate_readable`` removes it from the batch."""

    __slots__ = ("index", "path", "reason")

    def __init__(self, index: int, path: str, reason: str):
        self.index, self.path, self.reason = int(index), str(path), str(reason)

    def __getstate__(self):
        return (self.index, self.path, self.reason)

    def __setstate__(self, state):
        self.index, self.path, self.reason = state

    def __repr__(self) -> str:
        return f"Unreadable({self.index}, {self.path!r}, {self.reason!r})"


class SkippedBatch(list):
    """A collated batch (``[images, labels]``, unpacked as usual) from which unreadable images were dropped.

    ``skipped`` lists their ``Unreadable`` markers. A plain list otherwise, so code that ignores
    skipping still works; when every image of the batch was unreadable its tensors have 0 rows."""

    def __init__(self, parts, skipped: list[Unreadable]):
        super().__init__(parts)
        self.skipped = list(skipped)

    def pin_memory(self) -> "SkippedBatch":  # the DataLoader's pin_memory thread calls this
        return SkippedBatch([p.pin_memory() if hasattr(p, "pin_memory") else p for p in self], self.skipped)


def _unreadable_of(item) -> Unreadable | None:
    if isinstance(item, Unreadable):
        return item
    if isinstance(item, (tuple, list)) and item and isinstance(item[0], Unreadable):
        return item[0]
    return None


def collate_readable(items, collate=default_collate):
    """``collate`` over the readable items; a ``SkippedBatch`` naming the unreadable ones when there are any.

    A batch without unreadable items is exactly what ``collate`` gives, so the common case costs nothing."""
    skipped = [u for u in map(_unreadable_of, items) if u is not None]
    if not skipped:
        return collate(items)
    kept = [it for it in items if _unreadable_of(it) is None]
    if kept:
        parts = collate(kept)
    else:  # every image of the batch was unreadable: (0-row images, 0 labels)
        parts = [torch.empty(0), torch.empty(0, dtype=torch.long)]
    return SkippedBatch(parts, skipped)


def skipped_in(batch) -> list[Unreadable]:
    """The unreadable images dropped from ``batch`` (empty for an ordinary batch)."""
    return list(getattr(batch, "skipped", ()))


class SkippedImages:
    """The unreadable images met so far, each once, in the order met (a training run meets them every epoch).

    ``take(batch)`` records a batch's and returns it unchanged (``for x, y in map(rec.take, loader)``);
    ``write(path)`` writes ``skipped.txt`` when something new was met since the last write."""

    def __init__(self, earlier: list[Unreadable] = ()):
        self.items: dict[str, Unreadable] = {u.path: u for u in earlier}
        self._written = len(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def add(self, skipped) -> None:
        for u in skipped:
            self.items.setdefault(u.path, u)

    def take(self, batch):
        self.add(skipped_in(batch))
        return batch

    def write(self, path: str | os.PathLike) -> bool:
        if len(self.items) == self._written:
            return False
        write_skipped(path, list(self.items.values()))
        self._written = len(self.items)
        return True


class RunSkips(SkippedImages):
    """A training run's unreadable images, kept in ``<run>/skipped.txt`` (``skipped.rank<r>.txt`` for the
    other processes of a distributed run: each lists what its own shards met).

    A resumed run starts from the list already there, so the file covers the whole run."""

    def __init__(self, run_dir: str | os.PathLike, rank: int = 0, resuming: bool = False):
        self.path = Path(run_dir) / ("skipped.txt" if rank == 0 else f"skipped.rank{rank}.txt")
        super().__init__(read_skipped(self.path) if resuming else ())

    def save(self) -> None:
        """Write the list if it grew (called with each checkpoint, so it is as current as the run's state)."""
        if self.write(self.path):
            print(f"left out {len(self)} unreadable image{'s' if len(self) != 1 else ''} so far "
                  f"(--on_bad_image skip); listed in {self.path}")

    @staticmethod
    def check_empty_batch_allowed(distributed: bool) -> None:
        """A batch whose every image was unreadable is a step without an update; under DDP that one rank would
        leave the others waiting in their gradient all-reduce, so it is an error there instead."""
        if distributed:
            raise DataError("every image of a training batch was unreadable; with several processes the step "
                            "cannot be skipped on one of them: remove the unreadable files (see skipped.txt in the "
                            "run folder) or raise --batch_size")


def read_skipped(path: str | os.PathLike) -> list[Unreadable]:
    """The entries of a ``skipped.txt`` (none if it does not exist or cannot be read)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return [Unreadable(-1, *(line.split("\t", 1) + [""])[:2]) for line in lines if line.strip()]


def bad_image_error(path, err) -> DataError:
    return DataError(f"cannot read image {path} ({err}); fix or delete it, or pass --on_bad_image skip")


def check_on_bad_image(value: str) -> str:
    if value not in BAD_IMAGE_CHOICES:
        raise DataError(f"--on_bad_image must be 'skip' or 'error', got {value!r}")
    return value


def write_skipped(path: str | os.PathLike, skipped: list[Unreadable]) -> Path:
    """``skipped.txt``: one unreadable image per line, ``<path>\t<reason>``, in reading order."""
    from ..files import write_text

    return write_text(path, "".join(f"{u.path}\t{u.reason}\n" for u in skipped))


class ImageFolderDataset(Dataset):
    """``root/<class>/<image>`` with labels in sorted class order (as torchvision's ImageFolder).

    With ``on_bad_image="skip"`` an undecodable image comes back as ``(Unreadable, label)``: load it
    with ``collate_fn=dataset.collate`` (``collate_readable``), which drops it from the batch."""

    collate = staticmethod(collate_readable)

    def __init__(self, root: str | os.PathLike, transform=None, on_bad_image: str = "skip",
                 classes: list[str] | None = None):
        check_on_bad_image(on_bad_image)
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
        path, label = self.samples[index]
        try:
            img = open_rgb(path)
        except BAD_IMAGE_ERRORS as err:
            if self.on_bad_image == "error":
                raise bad_image_error(path, err) from None
            return Unreadable(index, path, str(err)), label
        return (self.transform(img) if self.transform else img), label


class ImageListDataset(Dataset):
    """A list of image paths (no labels), e.g. a flat folder for feature extraction; items are (image, index)."""

    collate = staticmethod(collate_readable)

    def __init__(self, paths: list[Path], transform=None, on_bad_image: str = "error"):
        self.paths = [Path(p) for p in paths]
        self.transform = transform
        self.on_bad_image = check_on_bad_image(on_bad_image)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        path = self.paths[index]
        try:
            img = open_rgb(str(path))
        except BAD_IMAGE_ERRORS as err:
            if self.on_bad_image == "error":
                raise bad_image_error(path, err) from None
            return Unreadable(index, str(path), str(err)), index
        return (self.transform(img) if self.transform else img), index
