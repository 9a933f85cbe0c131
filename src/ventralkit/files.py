"""Writing result files so that a crash never leaves a half-written one behind.

Every output file (JSON, CSV, text, figures) is written to a hidden ``.<name>.partial`` beside its
final path and renamed over it only when complete; ``os.replace`` is atomic on one file system, so a
reader sees the old file or the new one, never a truncated mix. Checkpoints use the same path and
also fsync before the rename (``engine.checkpoint.save_atomic``), because losing one costs hours.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import DataError

_UMASK = os.umask(0)
os.umask(_UMASK)

__all__ = ["RunPaths", "atomic_path", "ensure_writable_dir", "link_or_copy", "write_csv", "write_json",
           "write_records", "write_text"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds, else delete it.

    The temporary name is unique (``tempfile.mkstemp``), so two writers of the same file never touch
    each other's half-written data; the last one to finish wins.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results should be as readable as any other
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def link_or_copy(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Make ``target`` hold the bytes of ``source`` without a second copy where the file system allows: a hard
    link, else (no hard links, another device) a copy; atomically, like every result file. ``source`` may
    later be replaced by a rename (``last.pt``) and ``target`` keeps these bytes."""
    import shutil

    with atomic_path(target) as tmp:
        tmp.unlink()  # os.link needs a free name
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
    return Path(target)


class RunPaths:
    """The files of a training run folder, named in one place.

    Every layer asks this object for a run's paths (the engine writing them, the loader's hint for a
    folder given as a checkpoint, the studies and the demo reading them), so the layout is spelled once."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunPaths({str(self.root)!r})"

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        """Everything to resume the run from its latest save."""
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        """The weights of the best validation top-1 so far."""
        return self.checkpoints / "best.pt"

    def epoch(self, epoch: int) -> Path:
        """The snapshot of ``last.pt`` at the end of ``epoch`` (counted from 1)."""
        return self.checkpoints / f"epoch_{epoch:02d}.pt"

    @property
    def curves(self) -> Path:
        return self.root / "plots" / "curves.png"


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, data, **kwargs) -> Path:
    """Write ``data`` as indented JSON with a final newline, atomically (``kwargs`` go to ``json.dumps``)."""
    return write_text(path, json.dumps(data, indent=2, **kwargs) + "\n")


def write_csv(path: str | os.PathLike, rows: Iterable[Iterable]) -> Path:
    """Write ``rows`` (the header first) as CSV with ``\\n`` line ends, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    return Path(path)


def write_records(path: str | os.PathLike, columns: list[str], records: Iterable[dict]) -> Path:
    """Write dicts as CSV rows under the header ``columns``; missing keys and ``None`` become empty cells."""
    rows = ([("" if r.get(c) is None else r.get(c)) for c in columns] for r in records)
    return write_csv(path, [columns, *rows])


def ensure_writable_dir(path: str | os.PathLike, flag: str = "-o/--output_path") -> bool:
    """Create the folder ``path`` if needed and check a file can be written in it, before any slow work.

    Returns True when the folder was created here (so a caller that fails later can remove it again).
    Raises a one-line ``DataError`` naming the folder and ``flag`` otherwise.
    """
    path = Path(path)
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".ventralkit-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise DataError(f"output folder {path} cannot be written ({err.strerror or err}); "
                        f"choose another {flag}") from None
    return created
