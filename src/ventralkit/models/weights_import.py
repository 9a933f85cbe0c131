"""Importing a weights file obtained elsewhere (a gated download, a colleague's copy, a machine with internet)
into the weights folder under its registered name, after checking it.

Separate from ``download.py`` because the check loads the file into its model (``loading.load_model``), and
the loader itself depends on the downloader.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import CheckpointError
from .download import (NO_SPACE, FileCheck, check_file, file_lock, hash_file, lock_path, make_writable_folder,
                       megabytes, record, wait_s, weights_dir)
from .weights_table import WeightsEntry


def import_file(source: str | os.PathLike, entry: WeightsEntry, folder: Path | None = None,
                force: bool = False) -> tuple[FileCheck, bool]:
    """Copy a file obtained elsewhere into the weights folder under its registered name, after checking it:
    a ``torch.save`` file, the hash policy (a full-hash mismatch refuses it; nothing is copied), and that it
    loads into the model. Returns the check and whether a copy was made (False: the same file was there)."""
    from .weights import check_checkpoint_file

    source = Path(source)
    folder = Path(folder) if folder is not None else weights_dir()
    check_checkpoint_file(source)
    check = check_file(entry, source)
    if check.refused:
        raise CheckpointError(f"{source} is not the published {entry.filename}: {check.detail}; nothing imported")
    _check_fits(entry, source)
    final = folder / entry.filename
    if final.is_file() and not force:
        there = hash_file(final)[0]
        if there == check.sha256:
            return FileCheck(final, check.sha256, check.status, check.detail), False
        raise CheckpointError(f"{final} already holds another file (sha256 {there}); pass --force to replace it")
    make_writable_folder(folder)
    _copy(source, final, wait_s())
    check = FileCheck(final, check.sha256, check.status, check.detail)
    record(check, f"imported from {source.resolve()}")
    return check, True


def _check_fits(entry: WeightsEntry, source: Path) -> None:
    """The file loads into the entry's model (one line naming the keys when it is another architecture)."""
    from .loading import load_model

    load_model(entry.models[0], checkpoint=source)


def _copy(source: Path, final: Path, wait: float) -> None:
    from ..files import atomic_path

    with file_lock(lock_path(final), wait, f"another process is writing {final}; run again when it is done"):
        try:
            with atomic_path(final) as tmp:
                shutil.copyfile(source, tmp)
        except OSError as err:
            if err.errno not in NO_SPACE:
                raise CheckpointError(f"cannot copy {source} to {final} ({err.strerror or err})") from None
            raise CheckpointError(f"no space left in {final.parent} to import {source.name} "
                                  f"({megabytes(source.stat().st_size)}); free space there or set VENTRALKIT_WEIGHTS "
                                  "to a folder with room") from None
