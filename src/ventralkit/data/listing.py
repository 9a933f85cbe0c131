"""Finding images in folders, without torch (``corrupt`` and ``prepare`` use it; ``folders`` re-exports it)."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

#: names accepted for the validation split, in order (CORnet upstream uses val_in_folders)
VAL_NAMES = ("val", "val_in_folders")


def index_by_file_name(paths) -> tuple[dict[str, int], set[str]]:
    """Each file name's position in ``paths`` and the file names that several paths share.

    Stimuli are named by file name alone (a responses table or a trials file lists ``img_001.png``, not where the
    image sits), so a name that two images share cannot be matched; the callers refuse it when it is asked for."""
    by_name: dict[str, int] = {}
    shared: set[str] = set()
    for i, p in enumerate(paths):
        base = Path(p).name
        if base in by_name:
            shared.add(base)
        by_name[base] = i
    return by_name, shared


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
    # a file that lies in one class folder but is also reached through a link from another keeps the
    # label of the folder it lies in, and is counted once
    homes = {os.path.realpath(folder / n) + os.sep: label for label, n in enumerate(classes)}
    for label, name in enumerate(classes):
        files = [f for f in walk_images(folder / name)
                 if next((lab for home, lab in homes.items() if os.path.realpath(f).startswith(home)), label) == label]
        if not files:
            raise DataError(f"class folder {folder / name} has no images ({', '.join(IMAGE_EXTENSIONS[:3])}, ...); "
                            "add images or remove the folder")
        samples += [(f, label) for f in files]
    return classes, samples


def walk_images(folder: str | os.PathLike) -> list[str]:
    """Sorted image files under ``folder``, following symbolic links, each real folder and file once.

    A link back up the tree (a loop) would otherwise be walked until the path is too long, and a
    file reachable twice would count twice, with the label of whichever class folder reached it."""
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[str] = set()
    files = []
    for dp, dirs, fs in os.walk(folder, followlinks=True):
        st = os.stat(dp)
        if (st.st_dev, st.st_ino) in seen_dirs:
            dirs[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirs.sort()
        for f in sorted(fs):
            path = os.path.join(dp, f)
            real = os.path.realpath(path)
            if is_image(f) and real not in seen_files:
                seen_files.add(real)
                files.append(path)
    return sorted(files)


#: what PIL raises for a file it cannot decode, or one over its pixel limit (a decompression bomb)
BAD_IMAGE_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError)


def open_rgb(path: str) -> Image.Image:
    with open(path, "rb") as fh:
        img = Image.open(fh)
        img.load()
    return img if img.mode == "RGB" else img.convert("RGB")


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
