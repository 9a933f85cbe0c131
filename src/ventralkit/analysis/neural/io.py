"""Reading the inputs of ``ventralkit neural``: a features folder, a responses file, stimulus names, labels.

Every reader checks its file and raises a one-line ``DataError`` naming it, so the command can
validate everything before it creates its output folder.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np

from ...data.listing import index_by_file_name
from ...errors import DataError

_FEATURE_STEM = re.compile(r".+-t\d+$")
RESPONSE_SUFFIXES = (".npy", ".npz", ".h5", ".hdf5", ".csv")


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def read_features(folder) -> tuple[dict[str, object], list[str]]:
    """``({"<layer>-t<k>": array (N, D)}, image of each row)`` from a ``ventralkit features`` folder.

    ``<layer>-t<k>.npy`` files are memory-mapped (the CORnet original-name copy is skipped);
    ``features.h5`` datasets are returned as open h5py datasets (read in blocks). Layers keep the
    order of ``features.json`` when there is one.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"--features {folder}: no such folder; give the -o folder of `ventralkit features`")
    images_txt = folder / "images.txt"
    if not images_txt.is_file():
        raise DataError(f"--features {folder}: no images.txt; give the -o folder of `ventralkit features`")
    images = [ln for ln in images_txt.read_text(encoding="utf-8").splitlines() if ln.strip()]
    order: list[str] = []
    manifest = folder / "features.json"
    if manifest.is_file():
        try:
            order = list(json.loads(manifest.read_text(encoding="utf-8")).get("features", {}))
        except (json.JSONDecodeError, AttributeError):
            order = []
    feats: dict[str, object] = {}
    h5 = folder / "features.h5"
    if h5.is_file():
        import h5py

        try:
            f = h5py.File(h5, "r")
        except OSError as err:
            raise DataError(f"--features {h5}: not a readable HDF5 file ({err})") from None
        names = [k for k in f.keys() if isinstance(f[k], h5py.Dataset) and f[k].ndim == 2]
        for k in sorted(names, key=lambda k: (order.index(k) if k in order else len(order), _natural_key(k))):
            feats[k] = f[k]
    else:
        files = [p for p in folder.glob("*.npy") if _FEATURE_STEM.match(p.stem) and not p.name.startswith(".")]
        files.sort(key=lambda p: (order.index(p.stem) if p.stem in order else len(order), _natural_key(p.stem)))
        for p in files:
            try:
                arr = np.load(p, mmap_mode="r")
            except (ValueError, OSError) as err:
                raise DataError(f"--features {p}: not a readable .npy file ({err})") from None
            if arr.ndim != 2:
                raise DataError(f"--features {p}: expected (images, features), got shape {arr.shape}")
            feats[p.stem] = arr
    if not feats:
        raise DataError(f"--features {folder}: no feature arrays (<layer>-t<k>.npy or features.h5); "
                        "run `ventralkit features ... -o` into it first")
    for name, arr in feats.items():
        if arr.shape[0] != len(images):
            raise DataError(f"--features {folder}: {name} has {arr.shape[0]} rows but images.txt lists "
                            f"{len(images)} images")
    return feats, images


def feature_sources(folder, feats) -> dict[str, str]:
    """How to name each layer of ``read_features(folder)`` in a message: its file (or HDF5 dataset)."""
    folder = Path(folder)
    h5 = folder / "features.h5"
    if h5.is_file():
        return {name: f"--features {h5} (dataset {name})" for name in feats}
    return {name: f"--features {folder / (name + '.npy')}" for name in feats}


def read_responses(path, key: str | None = None, binned: bool = False) -> np.ndarray:
    """Responses (N, K) or (R, N, K) from ``.npy``, ``.npz`` / ``.h5`` (array ``key``, or the only one), or CSV.

    A CSV has one row per stimulus and one column per neuroid; a first row that is not numeric is a
    header and is skipped. Empty cells are NaN. ``binned``: the array is returned as read, for the time-bin
    reader to check (``timebins.binned_array``: a last axis of time bins).
    """
    path = Path(path)
    flag = f"--responses {path}"
    if not path.is_file():
        raise DataError(f"{flag}: no such file")
    suffix = path.suffix.lower()
    if suffix not in RESPONSE_SUFFIXES:
        raise DataError(f"{flag}: unknown format; use {', '.join(RESPONSE_SUFFIXES)}")
    try:
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                arr = z[_pick(list(z.files), key, flag)]
        elif suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                names: list[str] = []
                f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
                arr = f[_pick(names, key, flag)][()]
        else:
            arr = _read_csv(path, flag)
    except DataError:
        raise
    except (ValueError, OSError, KeyError) as err:
        raise DataError(f"{flag}: cannot be read ({err})") from None
    return np.asarray(arr) if binned else response_array(arr, flag)


def numeric_array(arr, where: str, ndims: tuple[int, ...], layouts: str) -> np.ndarray:
    """``arr`` as a numeric array with one of ``ndims`` axes, else one line naming ``where`` and the ``layouts``
    accepted (every reader of responses, plain, time-binned or with a subject axis, checks them this way)."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{where}: responses must be numbers, got dtype {arr.dtype}")
    if arr.ndim not in ndims:
        raise DataError(f"{where}: {layouts}, got shape {arr.shape}")
    return arr


def response_array(arr, where: str) -> np.ndarray:
    """Responses as numbers shaped (stimuli, neuroids) or (repetitions, stimuli, neuroids), else one line."""
    return numeric_array(arr, where, (2, 3),
                         "responses must be (stimuli, neuroids) or (repetitions, stimuli, neuroids)")


def _pick(names: list[str], key: str | None, flag: str) -> str:
    if key is not None:
        if key not in names:
            raise DataError(f"{flag}: no array named {key!r}; it has {', '.join(names) or 'none'}")
        return key
    if len(names) != 1:
        raise DataError(f"{flag}: holds {len(names)} arrays ({', '.join(names)}); name one with --responses_key")
    return names[0]


def _read_csv(path: Path, flag: str) -> np.ndarray:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh) if r]
    if not rows:
        raise DataError(f"{flag}: the CSV is empty")

    def num(row):
        return [float(c) if c.strip() else np.nan for c in row]

    try:
        num(rows[0])
    except ValueError:
        rows = rows[1:]  # header
    try:
        values = [num(r) for r in rows]
    except ValueError as err:
        raise DataError(f"{flag}: a cell is not a number ({err})") from None
    widths = {len(r) for r in values}
    if len(widths) != 1:
        raise DataError(f"{flag}: rows have different numbers of columns ({sorted(widths)})")
    return np.array(values, dtype=np.float64)


def read_lines(path, flag: str) -> list[str]:
    """Non-empty lines of a text file (one stimulus name or label per line)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{flag} {path}: no such file")
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def match_stimuli(names: list[str], images: list[str], flag: str = "--stimuli") -> np.ndarray:
    """The feature row (line of ``images.txt``) of each stimulus name, matched by file name."""
    by_name, dup = index_by_file_name(images)
    rows = []
    for name in names:
        base = Path(name).name
        if base in dup:
            raise DataError(f"{flag}: {base} names several images in images.txt; file names must be unique")
        if base not in by_name:
            raise DataError(f"{flag}: stimulus {name!r} is not in images.txt; the names must be the image files' names")
        rows.append(by_name[base])
    if len(set(rows)) != len(rows):
        raise DataError(f"{flag}: a stimulus is listed twice; give one name per row of the responses")
    return np.array(rows, dtype=np.int64)
