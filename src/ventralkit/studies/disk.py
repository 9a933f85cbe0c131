"""The disk a study's runs need, said before the first run starts, and refused in one line when it is not there.

A run's checkpoints are most of what it writes (CORnet-S100: ``last.pt`` ~404 MB, ``best.pt`` ~202 MB; a
20-run study kept both for every run: 12 GB). While a run trains it holds ``last.pt`` and ``best.pt``, and for
a moment a second ``last.pt`` (the atomic write: the new file is complete before it replaces the old one).
Once the run is finished and its records are written, ``--keep`` says what stays:

* ``best`` (default): ``best.pt`` only (``last.pt`` is deleted once the run's record and ``best.pt`` are safe);
* ``last``: ``last.pt`` and ``best.pt``, as a training run leaves them;
* ``none``: neither (the records, curves and tables stay).

The need is what every run still to train keeps once finished, plus what the runs that train at the same time
hold beyond that, less what their folders already hold (a run resumed from its ``last.pt``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..files import RunPaths

KEEP_CHOICES = ("best", "last", "none")
#: bytes per checkpoint file on top of its tensors (pickle, names; measured ~0.1 MB for CORnet-S100)
FILE_MARGIN = 1 << 20


@dataclass(frozen=True)
class RunDisk:
    """One run's checkpoint sizes in bytes (``engine.checkpoint.checkpoint_bytes`` plus the margin)."""

    last: int
    best: int

    def kept(self, keep: str) -> int:
        return {"best": self.best, "last": self.last + self.best, "none": 0}[keep]

    def peak(self) -> int:
        """While training: best.pt, last.pt and the next last.pt being written."""
        return 2 * self.last + self.best


def check_keep(keep: str) -> str:
    if keep not in KEEP_CHOICES:
        raise ConfigError(f"--keep must be one of {', '.join(KEEP_CHOICES)}, got {keep}")
    return keep


def held_bytes(run_dir: Path) -> int:
    """Bytes the run's checkpoints hold now (a partial run being resumed)."""
    folder = RunPaths(run_dir).checkpoints
    return sum(p.stat().st_size for p in folder.glob("*.pt")) if folder.is_dir() else 0


def study_need(sizes: list[RunDisk], held: list[int], keep: str, at_once: int) -> int:
    """Bytes the runs still to train add to their disk (see the module's docstring)."""
    kept = sum(s.kept(keep) for s in sizes)
    while_training = sorted((s.peak() - s.kept(keep) for s in sizes), reverse=True)[:max(1, at_once)]
    return max(0, kept + sum(while_training) - sum(held))


def free_bytes(path: Path) -> int:
    """Free bytes on the disk that holds ``path`` (or would: its nearest existing parent)."""
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def check_disk(output: Path, sizes: list[RunDisk], held: list[int], keep: str, at_once: int, say=print) -> int:
    """Say what the runs to train need; refuse (one line) when their disk has less free. Returns the need."""
    if not sizes:
        return 0
    need, free = study_need(sizes, held, keep, at_once), free_bytes(output)
    big = max(sizes, key=lambda s: s.last)
    kept = {"best": f"best.pt ~{_size(big.best)} kept", "last": "last.pt and best.pt kept",
            "none": "no checkpoint kept"}[keep]
    say(f"disk: {len(sizes)} run{'s' if len(sizes) != 1 else ''} to train need ~{_size(need)} (per run: last.pt "
        f"~{_size(big.last)} while it trains, {kept} (--keep {keep}); {min(at_once, len(sizes))} at a time); "
        f"{_size(free)} free")
    if need > free:
        smaller = [k for k in KEEP_CHOICES if k != keep and study_need(sizes, held, k, at_once) <= free]
        hint = f", or --keep {smaller[0]} (~{_size(study_need(sizes, held, smaller[0], at_once))})" if smaller else ""
        raise ConfigError(f"--output {output}: the study's runs need ~{_size(need)} on its disk and {_size(free)} "
                          f"are free; free space, or choose an --output on a larger disk{hint}")
    return need


def checkpoint_intact(path: Path) -> bool:
    """Whether a checkpoint file is whole: torch.save writes a zip archive with a CRC per entry, checked here."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile):
        return False


def apply_keep(run_dir: Path, keep: str) -> str | None:
    """Delete a finished run's checkpoints that ``keep`` does not keep (the caller has written the run's records).

    ``best``: ``last.pt`` (and epoch snapshots) go only when ``best.pt`` is intact; else everything stays and the
    returned note says why. ``none``: both go. ``last``: nothing is deleted."""
    paths = RunPaths(run_dir)
    if keep == "last":
        return None
    if keep == "best" and not checkpoint_intact(paths.best):
        return f"{paths.last} kept: {paths.best} is missing or damaged"
    doomed = [paths.last, *paths.checkpoints.glob("epoch_*.pt")] + ([paths.best] if keep == "none" else [])
    for path in doomed:
        path.unlink(missing_ok=True)
    return None
