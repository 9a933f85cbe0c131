"""Put downloaded datasets into the ``train/`` + ``val/`` class-folder layout the engine reads.

Both preparations are idempotent and safe to interrupt: files are only ever renamed (or, across
file systems, copied to a temporary name, renamed, then the source removed), a file already at its
destination is never overwritten, and a marker file (``.ventralkit-prepared.json``) is written
only after the result has been verified. Running again after completion is a no-op that says so;
running again after an interruption finishes the job.

* MiniImageNet (Kaggle ``ctrnngtrung/miniimagenet``, as CORnet-100 uses it): ``train/<wnid>/`` and
  ``test/<wnid>/`` (100 classes). CORnet-100 validates on ``test``, renamed to ``val``; in place
  this is one rename. With a destination, class folders are moved (or copied / symlinked).
* Tiny-ImageNet (``tiny-imagenet-200/``): ``train/<wnid>/images/*.JPEG`` already works (class
  folders are walked recursively); ``val/images/*.JPEG`` + ``val/val_annotations.txt`` is
  reorganised into ``val/<wnid>/*.JPEG``.
"""

from __future__ import annotations

import datetime as _dt
import errno
import filecmp
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import ConfigError, DataError
from ..files import atomic_path, write_json
from .listing import is_image

MARKER = ".ventralkit-prepared.json"
PLAN = ".ventralkit-preparing.json"
MINI_CLASSES = 100
TINY_CLASSES = 200

Log = Callable[[str], None]


@dataclass
class SplitSummary:
    classes: int
    images: int
    min_per_class: int
    max_per_class: int

    def line(self, name: str) -> str:
        per = (f"{self.min_per_class}" if self.min_per_class == self.max_per_class
               else f"{self.min_per_class}-{self.max_per_class}")
        return f"{name}: {self.classes} classes, {self.images} images ({per} per class)"


@dataclass
class PrepareResult:
    root: Path
    already_done: bool
    actions: int = 0
    splits: dict[str, SplitSummary] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- helpers


def _count_images(folder: Path) -> int:
    return sum(1 for _, _, fs in os.walk(folder, followlinks=True) for f in fs if is_image(f))


def _class_dirs(split: Path) -> list[Path]:
    return sorted(p for p in split.iterdir() if p.is_dir() and not p.name.startswith("."))


def summarize_split(split: Path) -> SplitSummary:
    """Class and image counts of a ``<split>/<class>/...`` folder; an empty class is an error."""
    classes = _class_dirs(split)
    if not classes:
        raise DataError(f"{split} has no class sub-folders")
    counts = []
    for c in classes:
        k = _count_images(c)
        if k == 0:
            raise DataError(f"class folder {c} has no images; the download looks incomplete, fetch it again")
        counts.append(k)
    return SplitSummary(len(classes), sum(counts), min(counts), max(counts))


def _verify_pair(train: Path, val: Path, expected: int | None) -> tuple[dict[str, SplitSummary], list[str]]:
    t_names = {p.name for p in _class_dirs(train)}
    v_names = {p.name for p in _class_dirs(val)}
    if t_names != v_names:
        only_t, only_v = sorted(t_names - v_names), sorted(v_names - t_names)
        what = []
        if only_t:
            what.append(f"{len(only_t)} only in train/ (e.g. {only_t[0]})")
        if only_v:
            what.append(f"{len(only_v)} only in val/ (e.g. {only_v[0]})")
        raise DataError(f"train/ and val/ of {train.parent} have different classes: {'; '.join(what)}")
    splits = {"train": summarize_split(train), "val": summarize_split(val)}
    warnings = []
    if expected is not None and len(t_names) != expected:
        warnings.append(f"expected {expected} classes, found {len(t_names)}")
    return splits, warnings


def read_marker(root: Path, name: str = MARKER) -> dict | None:
    try:
        data = json.loads((root / name).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_marker(root: Path, dataset: str, splits: dict[str, SplitSummary], extra: dict | None = None) -> None:
    write_json(root / MARKER, {
        "dataset": dataset,
        "prepared_at": _dt.datetime.now().isoformat(timespec="seconds"),
        "splits": {k: vars(v) for k, v in splits.items()},
        **(extra or {}),
    })


def move_file(src: Path, dst: Path) -> bool:
    """Move ``src`` to ``dst`` without ever losing or overwriting data; False if nothing was moved.

    If ``dst`` already holds the same bytes (an interrupted earlier run), the duplicate source is
    removed; if it holds different bytes, that is an error for a person to look at.
    """
    if dst.exists():
        if not src.exists():
            return False
        if src.stat().st_size == dst.stat().st_size and filecmp.cmp(src, dst, shallow=False):
            src.unlink()
            return True
        raise DataError(f"{dst} already exists and differs from {src}; move one of them away and re-run")
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(src, dst)
    except OSError as err:
        if err.errno != errno.EXDEV:  # another file system: copy under a temporary name
            raise
        with atomic_path(dst) as tmp:
            shutil.copy2(src, tmp)
        src.unlink()
    return True


def move_tree(src: Path, dst: Path) -> int:
    """Move every file below ``src`` to the same place below ``dst``; remove emptied folders. Returns moves."""
    moved = 0
    for dirpath, _, files in os.walk(src):
        for f in sorted(files):
            s = Path(dirpath) / f
            moved += move_file(s, dst / s.relative_to(src))
    for dirpath, _, _ in sorted(os.walk(src, topdown=False), key=lambda t: -len(t[0])):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass
    return moved


def copy_tree(src: Path, dst: Path) -> int:
    """Copy every missing file below ``src`` to ``dst`` (each under a temporary name, then renamed)."""
    copied = 0
    for dirpath, _, files in os.walk(src, followlinks=True):
        for f in sorted(files):
            s = Path(dirpath) / f
            d = dst / s.relative_to(src)
            if d.exists():
                continue
            with atomic_path(d) as tmp:
                shutil.copy2(s, tmp)
            copied += 1
    return copied


def _descend(root: Path, wanted: tuple[str, ...]) -> Path:
    """``root`` itself, or its only sub-folder when the archive unpacked into one (``MiniImageNet/``)."""
    if any((root / w).is_dir() for w in wanted):
        return root
    subs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(subs) == 1 and any((subs[0] / w).is_dir() for w in wanted):
        return subs[0]
    return root


# --------------------------------------------------------------------------- MiniImageNet


def prepare_miniimagenet(
    src: str | os.PathLike,
    dst: str | os.PathLike | None = None,
    mode: str = "move",
    val_from: str | None = None,
    log: Log = print,
) -> PrepareResult:
    """MiniImageNet as CORnet-100 uses it: ``<root>/train/<wnid>/`` and ``<root>/val/<wnid>/``.

    src: the unpacked Kaggle download (``train/`` and ``test/``, maybe ``val/``; a single wrapping
        folder is looked through).
    dst: where the prepared dataset goes; None = in place (``test/`` is renamed to ``val/``).
    mode: with ``dst``: ``move`` (default; the download is emptied), ``copy`` or ``symlink``.
    val_from: which download split becomes ``val/``: ``test`` (CORnet-100's choice, the default
        when there is a ``test/``) or ``val``. Needed when the download has both; in place with
        ``test``, an existing ``val/`` is first renamed to ``val_original/``.
    """
    if mode not in ("move", "copy", "symlink"):
        raise ConfigError(f"--mode must be move, copy or symlink, got {mode!r}")
    if val_from not in (None, "test", "val"):
        raise ConfigError(f"--val_from must be test or val, got {val_from!r}")
    src = Path(src)
    out = Path(dst) if dst is not None else None
    if out is not None and out.is_dir() and (r := _mini_already_prepared(out, log)):
        return r
    if not src.is_dir():
        raise DataError(f"MiniImageNet folder {src} does not exist; unpack the Kaggle download "
                        "(ctrnngtrung/miniimagenet) and give its folder")
    src = _descend(src, ("train", "test", "val"))
    if out is None and (r := _mini_already_prepared(src, log)):
        return r
    root = out if out is not None else src
    if out is not None and out.resolve() == src.resolve():
        raise ConfigError("the destination is the download folder itself; leave DST out to prepare in place")
    root.mkdir(parents=True, exist_ok=True)
    val_from = _mini_plan(src, root, val_from, mode)
    if out is None:
        actions = _mini_rename_in_place(src, val_from, log)
    else:
        actions = _mini_place_splits(src, root, val_from, mode, log)
    splits, warnings = _verify_pair(root / "train", root / "val", MINI_CLASSES)
    _write_marker(root, "miniimagenet", splits, {"val_from": val_from, "mode": mode if out else "in place",
                                                 "source": str(src)})
    (root / PLAN).unlink(missing_ok=True)
    _report(log, f"MiniImageNet ready at {root}", splits, warnings,
            f"ventralkit train --model S100 --data_path {root} ...")
    return PrepareResult(root, False, actions, splits, warnings)


def _mini_already_prepared(root: Path, log: Log) -> PrepareResult | None:
    """The result of an earlier, completed preparation in ``root`` (checked again, and said), else None."""
    marker = read_marker(root)
    if marker is None or marker.get("dataset") != "miniimagenet":
        return None
    if not ((root / "train").is_dir() and (root / "val").is_dir()):
        return None
    splits, warnings = _verify_pair(root / "train", root / "val", MINI_CLASSES)
    log(f"{root} is already prepared (marker {MARKER}); nothing to do")
    for name, s in splits.items():
        log("  " + s.line(name))
    return PrepareResult(root, True, 0, splits, warnings)


def _mini_plan(src: Path, root: Path, val_from: str | None, mode: str) -> str:
    """Which download split becomes ``val/``: fixed by the first run in ``root`` (its plan file), so a resumed
    run cannot mix splits; a first run chooses it from the download and ``val_from`` and writes the plan."""
    plan = read_marker(root, PLAN)
    if plan is not None:
        if val_from is not None and val_from != plan.get("val_from"):
            raise ConfigError(f"an interrupted run in {root} used --val_from {plan.get('val_from')}; "
                              "re-run with that (or start again from the download)")
        return plan.get("val_from")
    if not (src / "train").is_dir():
        raise DataError(f"{src} has no train/ folder; give the unpacked MiniImageNet download "
                        "(train/ and test/ with one folder per class)")
    has_test, has_val = (src / "test").is_dir(), (src / "val").is_dir()
    if not (has_test or has_val):
        raise DataError(f"{src} has no test/ (or val/) folder; give the unpacked MiniImageNet download")
    if val_from is None:
        if has_test and has_val:
            raise ConfigError(f"{src} has both test/ and val/; pass --val_from test (CORnet-100's "
                              "choice) or --val_from val")
        val_from = "test" if has_test else "val"
    elif not (src / val_from).is_dir():
        raise DataError(f"{src} has no {val_from}/ folder for --val_from {val_from}")
    write_json(root / PLAN, {"dataset": "miniimagenet", "val_from": val_from, "mode": mode, "source": str(src)})
    return val_from


def _mini_rename_in_place(src: Path, val_from: str, log: Log) -> int:
    """In place, renames only: ``test/`` -> ``val/`` (an existing ``val/`` kept as ``val_original/``). Returns
    the renames done (none with ``val_from`` = val, or when an earlier run did them)."""
    actions = 0
    test, val = src / "test", src / "val"
    if val_from == "test" and test.is_dir():
        if val.exists():
            keep = src / "val_original"
            if keep.exists():
                raise DataError(f"{src} has test/, val/ and val_original/; move val/ away and re-run")
            log(f"renaming {val} -> {keep} (kept; CORnet-100 validates on the test split)")
            os.rename(val, keep)
            actions += 1
        log(f"renaming {test} -> {val} (CORnet-100 validates on the test split)")
        os.rename(test, val)
        actions += 1
    return actions


def _mini_place_splits(src: Path, root: Path, val_from: str, mode: str, log: Log) -> int:
    """``train/`` and the chosen split into ``root/train`` and ``root/val`` by ``mode`` (move, copy or symlink);
    what an interrupted earlier run already placed is kept. Returns the files (or links) placed."""
    actions = 0
    for s, d in ((src / "train", root / "train"), (src / val_from, root / "val")):
        if mode == "symlink":
            if d.is_symlink() or d.exists():
                if d.resolve() != s.resolve():
                    raise DataError(f"{d} already exists and is not a link to {s}; remove it and re-run")
                continue
            d.symlink_to(s.resolve(), target_is_directory=True)
            actions += 1
        elif not s.is_dir():
            if not d.is_dir():
                raise DataError(f"{s} does not exist; give the unpacked MiniImageNet download")
        elif mode == "copy":
            log(f"copying {s} -> {d}")
            actions += copy_tree(s, d)
        else:
            log(f"moving {s} -> {d}")
            actions += move_tree(s, d)
    return actions


def _report(log: Log, headline: str, splits: dict[str, SplitSummary], warnings: list[str], command: str) -> None:
    for msg in warnings:
        log(f"warning: {msg}")
    log(headline)
    for name, summary in splits.items():
        log("  " + summary.line(name))
    log(f"train with: {command}")


# --------------------------------------------------------------------------- Tiny-ImageNet


def read_val_annotations(path: Path) -> list[tuple[str, str]]:
    """(file name, wnid) pairs from Tiny-ImageNet's tab-separated ``val_annotations.txt``."""
    pairs = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2 or not parts[0] or not parts[1] or "/" in parts[0] or "/" in parts[1]:
                raise DataError(f"{path} line {lineno} is not 'file<TAB>wnid<TAB>x0...': {line.strip()[:60]!r}")
            pairs.append((parts[0], parts[1]))
    if not pairs:
        raise DataError(f"{path} is empty; the download looks incomplete, fetch it again")
    return pairs


def prepare_tiny_imagenet(root: str | os.PathLike, log: Log = print) -> PrepareResult:
    """Reorganise ``val/images/*.JPEG`` into ``val/<wnid>/`` from ``val/val_annotations.txt``, in place."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Tiny-ImageNet folder {root} does not exist; unpack tiny-imagenet-200.zip and give "
                        "the tiny-imagenet-200 folder")
    root = _descend(root, ("train", "val"))
    train, val = root / "train", root / "val"
    for split in (train, val):
        if not split.is_dir():
            raise DataError(f"{root} has no {split.name}/ folder; give the unpacked tiny-imagenet-200 folder")
    marker = read_marker(root)
    if marker is not None and marker.get("dataset") == "tiny-imagenet":
        splits, warnings = _verify_pair(train, val, TINY_CLASSES)
        log(f"{root} is already prepared (marker {MARKER}); nothing to do")
        for name, s in splits.items():
            log("  " + s.line(name))
        return PrepareResult(root, True, 0, splits, warnings)

    ann = val / "val_annotations.txt"
    if not ann.is_file():
        raise DataError(f"{ann} is missing; the val images cannot be sorted into classes without it "
                        "(unpack tiny-imagenet-200.zip again)")
    pairs = read_val_annotations(ann)
    train_classes = {p.name for p in _class_dirs(train)}
    wnids_file = root / "wnids.txt"
    if wnids_file.is_file():
        listed = {ln.strip() for ln in wnids_file.read_text().splitlines() if ln.strip()}
        if listed and listed != train_classes:
            raise DataError(f"train/ of {root} has {len(train_classes)} classes but wnids.txt lists "
                            f"{len(listed)}; the download looks incomplete")
    unknown = sorted({w for _, w in pairs} - train_classes)
    if unknown:
        raise DataError(f"{ann} names {len(unknown)} classes with no train/ folder (e.g. {unknown[0]}); "
                        "the download looks incomplete")
    # check every file before moving any, so a broken download is reported without touching it
    images = val / "images"
    missing = [f for f, w in pairs if not (images / f).is_file() and not (val / w / f).is_file()]
    if missing:
        raise DataError(f"{len(missing)} val images listed in {ann.name} are missing (e.g. {images / missing[0]}); "
                        "the download looks incomplete")
    moved = 0
    todo = [(f, w) for f, w in pairs if (images / f).exists()]
    if todo:
        log(f"sorting {len(todo)} val images into {len(set(w for _, w in todo))} class folders")
    for f, w in todo:
        moved += move_file(images / f, val / w / f)
    warnings = []
    if images.is_dir():
        left = sorted(p.name for p in images.iterdir())
        if left:
            keep = val / ".unannotated"
            for name in left:
                move_file(images / name, keep / name)
            warnings.append(f"{len(left)} files in val/images were not in {ann.name}; moved to {keep}")
        images.rmdir()
    splits, w = _verify_pair(train, val, TINY_CLASSES)
    warnings += w
    _write_marker(root, "tiny-imagenet", splits, {"moved": moved})
    _report(log, f"Tiny-ImageNet ready at {root} ({moved} val images moved)", splits, warnings,
            f"ventralkit train --data_path {root} --image_size 64 ...")
    return PrepareResult(root, False, moved, splits, warnings)
