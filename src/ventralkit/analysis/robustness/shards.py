"""Sharded corruption: ``corrupt SRC DST --shard I/N`` writes a disjoint part of the outputs.

Why: corrupting ImageNet-val (50,000 images x 19 corruptions x 5 severities) on one node takes days; a SLURM
array job (``--array=0-N-1``, one task per shard) spreads it over nodes, all writing into one DST on a
shared file system, and ``corrupt --merge DST`` (``merge.py``) checks the result and writes the one manifest.

* Disjoint and complete: shard ``I`` of ``N`` takes the source images at positions ``I, I + N, I + 2N, ...``
  of the sorted listing (round robin, so every shard gets a share of every class folder), with every
  corruption and severity of each. Each output is seeded from (seed, corruption, severity, path) alone, so
  the union of the shards is byte for byte what one unsharded run writes.
* No shared file is written by two shards: a shard keeps its settings, progress and redraws in
  ``DST/.ventralkit_shards/I-of-N.json`` (and ``I-of-N.redrawn.jsonl``), never in the manifest, and removes
  only the temporary files of its own images (another shard may be writing beside them).
* Options are pinned: a shard whose settings differ from a record already in DST (another seed, size,
  corruptions, shard count or source listing) is refused before it writes anything; the merge checks all
  records again.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ...errors import ConfigError
from ...files import write_json

#: the folder in DST holding one record per shard (hidden: ``robustness`` and the folder scans skip it)
SHARD_DIR = ".ventralkit_shards"
_SPEC = re.compile(r"^\s*(-?\d+)\s*/\s*(-?\d+)\s*$")
_RECORD = re.compile(r"^(\d+)-of-(\d+)\.json$")
#: the keys of a record that every shard of one DST must share (what the bytes of an output depend on)
PINNED = ("count", "seed", "size", "jpeg_quality", "corruptions", "severities", "listing", "imagecorruptions")
_FLAGS = {"count": "--shard I/N", "seed": "--seed", "size": "--size", "jpeg_quality": "--jpeg_quality",
          "corruptions": "--corruptions", "severities": "--severities"}


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based, as ``SLURM_ARRAY_TASK_ID`` with ``--array=0-N-1``)."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def stem(self) -> str:
        return f"{self.index}-of-{self.count}"

    def select(self, items: list) -> list:
        """This shard's part of ``items`` (positions index, index + count, ...)."""
        return items[self.index::self.count]

    def owner(self, position: int) -> int:
        """The shard index that writes the item at ``position``."""
        return position % self.count

    def record_path(self, dst: Path) -> Path:
        return Path(dst) / SHARD_DIR / f"{self.stem}.json"

    @property
    def redraw_log(self) -> str:
        """The redraw log's path relative to DST (workers append to it)."""
        return f"{SHARD_DIR}/{self.stem}.redrawn.jsonl"


def parse_shard(spec) -> Shard | None:
    """``"I/N"`` (or a ``Shard``, or ``(I, N)``) as a ``Shard``; None stays None. Out of range: one line."""
    if spec is None or isinstance(spec, Shard):
        return spec
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        index, count = spec
    else:
        match = _SPEC.match(str(spec))
        if not match:
            raise ConfigError(f"--shard {spec!r} is not I/N (shard I of N, e.g. --shard 0/4; in a SLURM array job "
                              "--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)")
        index, count = match.groups()
    index, count = int(index), int(count)
    if count < 1:
        raise ConfigError(f"--shard {index}/{count}: N must be 1 or more (the number of shards)")
    if not 0 <= index < count:
        raise ConfigError(f"--shard {index}/{count}: the index must be in 0..{count - 1} (shards count from 0; "
                          f"a SLURM array for {count} shards is --array=0-{count - 1})")
    return Shard(index, count)


def listing_digest(rels: list[str]) -> str:
    """A fingerprint of the source listing: shards that listed other images cannot be merged."""
    return hashlib.sha256("\n".join(rels).encode()).hexdigest()[:16]


def read_records(dst: Path) -> dict[Shard, dict]:
    """Every shard record in DST (an unreadable one, e.g. cut short by a full disk, is read as empty)."""
    folder = Path(dst) / SHARD_DIR
    records: dict[Shard, dict] = {}
    if not folder.is_dir():
        return records
    for path in sorted(folder.iterdir()):
        match = _RECORD.match(path.name)
        if not match:
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            record = {}
        records[Shard(int(match.group(1)), int(match.group(2)))] = record
    return records


def new_record(shard: Shard, settings: dict, corruptions: list[str], severities: list[int], source: Path,
               rels: list[str], version: str) -> dict:
    """What a shard records when it starts (``finished`` and ``redrawn`` are filled in as it goes)."""
    return {"shard": str(shard), "index": shard.index, "count": shard.count, **settings, "source": str(source),
            "imagecorruptions": version, "corruptions": list(corruptions), "severities": list(severities),
            "images": len(rels), "listing": listing_digest(rels), "shard_images": len(shard.select(rels)),
            "finished": False, "redrawn": {}}


def disagreement(a: dict, b: dict) -> str | None:
    """The first pinned key on which two records differ, else None."""
    return next((key for key in PINNED if a.get(key) != b.get(key)), None)


def describe(key: str, value) -> str:
    """``key=value`` as the user set it (the flag's spelling where there is one)."""
    if key == "count":
        return f"{value} shards"
    if key == "listing":
        return "another source listing"
    if key == "imagecorruptions":
        return str(value)
    if key in ("corruptions", "severities"):
        return f"{_FLAGS[key]} {' '.join(map(str, value or []))}"
    return f"{key}={value}"


def check_against_records(dst: Path, record: dict) -> None:
    """Refuse to start a shard whose pinned settings differ from a record already in DST (before anything is
    written, so the refusal changes nothing)."""
    for shard, other in read_records(dst).items():
        if not other:
            continue
        key = disagreement(other, record)
        if key is None:
            continue
        if key == "count":
            advice = f"use --shard I/{other.get('count')} for every shard of {dst}, or choose a new DST"
        elif key == "listing":
            advice = "the source folder changed since then; corrupt it into a new DST"
        elif key in _FLAGS:
            advice = f"run every shard with the same options ({describe(key, other.get(key))}), or choose a new DST"
        else:
            advice = "run every shard with the same imagecorruptions version, or choose a new DST"
        raise ConfigError(f"{dst} has shard {shard} made with {describe(key, other.get(key))} but this shard has "
                          f"{describe(key, record.get(key))}; {advice}")


def write_record(dst: Path, shard: Shard, record: dict) -> None:
    write_json(shard.record_path(dst), record)


__all__ = ["PINNED", "SHARD_DIR", "Shard", "check_against_records", "describe", "disagreement", "listing_digest",
           "new_record", "parse_shard", "read_records", "write_record"]
