"""``corrupt --merge DST``: check that the shards of a sharded corruption wrote everything, write one manifest.

Why a separate step: shards on different nodes never write a shared file (``shards.py``), so the manifest,
which ``robustness`` and a later resume read, is written once, here, after every shard has finished. The merge
writes nothing unless every check passes:

* every shard ``0..N-1`` has a record, all made with the same pinned options (seed, size, JPEG quality,
  corruptions, severities, shard count, source listing, imagecorruptions version) and marked finished;
* the source folder still lists the images the shards listed;
* each ``<corruption>/<severity>/`` folder holds exactly the expected outputs: none missing, no temporary
  file of an interrupted write, no file that no shard was to write.

The manifest is then what one unsharded run writes (same keys, same order, the redraws of every shard), the
shard records are removed, and the tree is byte for byte that of one unsharded run. On a DST without shard
records but with a manifest, ``--merge`` is a check run: it verifies the outputs the manifest describes.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ...data.imagenet_c import resolve_corruptions, resolve_severities
from ...engine.progress import progress_bar
from ...errors import ConfigError, DataError
from ...files import write_json
from .generate import MANIFEST, _read_manifest, _record_manifest, _source_images
from .shards import SHARD_DIR, Shard, describe, disagreement, listing_digest, read_records


@dataclass
class MergeResult:
    """What ``merge_shards`` found and wrote."""

    dst: Path
    shards: int  # 0: a check of an already merged (or unsharded) DST
    outputs: int
    images: int
    corruptions: list[str]
    severities: list[int]
    redrawn: int


def merge_shards(dst: str | os.PathLike, src: str | os.PathLike | None = None, *, corruptions=None,
                 severities=None, seed: int | None = None, size: int | None = None, jpeg_quality: int | None = None,
                 progress: bool = True) -> MergeResult:
    """Verify the shards in ``dst`` and write its manifest (see the module docstring).

    src: the clean source folder; None = the one the shards recorded.
    corruptions, severities, seed, size, jpeg_quality: when given, checked against what the shards recorded
        (so the same command line with ``--merge`` appended checks the options too).
    """
    dst = Path(dst)
    if not dst.is_dir():
        raise DataError(f"{dst} does not exist; give the DST the shards wrote into")
    asked = {"seed": seed, "size": size, "jpeg_quality": jpeg_quality,
             "corruptions": None if corruptions is None else resolve_corruptions(corruptions),
             "severities": None if severities is None else resolve_severities(severities)}
    records = read_records(dst)
    if not records:
        return _check_merged(dst, src, asked, progress)
    reference = _consistent(dst, records)
    _check_asked(reference, asked, "the shards were")
    source = Path(src) if src is not None else Path(reference["source"])
    rels = _source_images(source)
    if listing_digest(rels) != reference["listing"]:
        raise DataError(f"{source} now lists {len(rels)} images, not the {reference['images']} the shards listed; "
                        "the source changed since they ran: corrupt it into a new DST")
    corr, sevs = reference["corruptions"], reference["severities"]
    outputs = verify_outputs(dst, rels, corr, sevs, Shard(0, reference["count"]), progress)
    settings = {k: reference[k] for k in ("seed", "size", "jpeg_quality")}
    earlier = _read_manifest(dst, settings)  # an earlier (unsharded or merged) run's, with the same settings
    manifest = _record_manifest(dst, earlier, settings, corr, sevs, source.resolve(), reference["imagecorruptions"])
    redrawn = dict(manifest.get("redrawn", {}))
    for record in records.values():  # a finished shard has folded its redraw log into its record
        redrawn.update(record.get("redrawn", {}))
    manifest["redrawn"] = dict(sorted(redrawn.items()))
    write_json(dst / MANIFEST, manifest)
    shutil.rmtree(dst / SHARD_DIR, ignore_errors=True)
    return MergeResult(dst, reference["count"], outputs, len(rels), corr, sevs, len(manifest["redrawn"]))


def _consistent(dst: Path, records: dict[Shard, dict]) -> dict:
    """The shards' common record; one line naming the first problem otherwise."""
    counts = sorted({shard.count for shard in records})
    if len(counts) > 1:
        raise ConfigError(f"{dst} holds shards of {counts[0]} and of {counts[1]} ({SHARD_DIR}/); shards made with "
                          "different --shard N cannot be merged: run every shard with one N into a new DST")
    count = counts[0]
    first, reference = next(iter(records.items()))
    for shard, record in records.items():
        if not record:
            raise DataError(f"the record of shard {shard} in {dst / SHARD_DIR} cannot be read; run shard {shard} "
                            "again (it resumes), then --merge")
        key = disagreement(reference, record)
        if key is not None:
            raise ConfigError(f"shards made with different options cannot be merged: shard {first} has "
                              f"{describe(key, reference.get(key))}, shard {shard} {describe(key, record.get(key))}; "
                              "run every shard with the same options into a new DST")
    missing = [f"{i}/{count}" for i in range(count) if Shard(i, count) not in records]
    if missing:
        raise DataError(f"{dst} has no record of shard {missing[0]}" + (f" (and {len(missing) - 1} more)"
                        if len(missing) > 1 else "") + f": run `ventralkit corrupt SRC {dst} --shard {missing[0]} "
                        "...` with the options of the others, then --merge")
    unfinished = [str(shard) for shard, record in records.items() if not record.get("finished")]
    if unfinished:
        raise DataError(f"shard {unfinished[0]} has not finished (still running, or its job stopped); run it again "
                        "(it resumes), then --merge")
    return reference


def _check_asked(reference: dict, asked: dict, who: str) -> None:
    """Options given with --merge must be those the shards (or the merged DST) were made with."""
    for key, value in asked.items():
        if value is not None and value != reference.get(key):
            raise ConfigError(f"{who} made with {describe(key, reference.get(key))}, not "
                              f"{describe(key, value)}; leave the option out of --merge or give theirs")


def verify_outputs(dst: Path, rels: list[str], corruptions: list[str], severities: list[int], shards: Shard,
                   progress: bool = True) -> int:
    """The number of outputs, after checking every ``<corruption>/<severity>/`` folder holds exactly one file per
    source image: one line naming a missing output (and the shard that writes it) or a stray file otherwise."""
    expected = set(rels)
    position = {rel: i for i, rel in enumerate(rels)}
    count = 0
    with progress_bar(total=len(corruptions) * len(severities), desc="check", enabled=progress, unit="folder") as bar:
        for corruption in corruptions:
            for severity in severities:
                top = dst / corruption / str(severity)
                found = _files_below(top)
                missing = sorted(expected - found, key=position.get)
                stray = sorted(found - expected)
                if missing:
                    owners = sorted({shards.owner(position[r]) for r in missing})
                    who = (f"shard {owners[0]}/{shards.count}" + (f" and {len(owners) - 1} more" if len(owners) > 1
                           else "")) if shards.count > 1 else "the run"
                    raise DataError(f"{len(missing)} outputs of {top} are missing (e.g. {top / missing[0]}, written "
                                    f"by {who}); run {'it' if len(owners) == 1 else 'them'} again (finished images "
                                    "are kept), then check again")
                if stray:
                    what = "a temporary file of an interrupted write" if stray[0].rsplit("/", 1)[-1].startswith(".") \
                        else "a file no source image gives"
                    raise DataError(f"{top / stray[0]} is {what}; delete it (or rerun its shard, which removes "
                                    "its temporary files), then check again")
                count += len(found)
                bar.update(1)
    return count


def _files_below(top: Path) -> set[str]:
    """Relative posix paths of every file under ``top``."""
    found = set()
    for dirpath, _, names in os.walk(top):
        rel = Path(dirpath).relative_to(top).as_posix()
        found.update(name if rel == "." else f"{rel}/{name}" for name in names)
    return found


def _check_merged(dst: Path, src, asked: dict, progress: bool) -> MergeResult:
    """A DST without shard records: verify what its manifest describes (a check run)."""
    path = dst / MANIFEST
    if not path.is_file():
        raise DataError(f"{dst} has neither shard records ({SHARD_DIR}/) nor a manifest ({MANIFEST}); run "
                        f"`ventralkit corrupt SRC {dst} --shard I/N` for every shard first")
    try:
        manifest = json.loads(path.read_text())
        corr, sevs = list(manifest["corruptions"]), [int(s) for s in manifest["severities"]]
    except (OSError, ValueError, KeyError, TypeError):
        raise DataError(f"{path} cannot be read; run the corruption again to rewrite it") from None
    _check_asked({**manifest, "corruptions": corr, "severities": sevs}, asked, f"{dst} was")
    source = Path(src) if src is not None else Path(manifest.get("source", ""))
    rels = _source_images(source)
    outputs = verify_outputs(dst, rels, corr, sevs, Shard(0, 1), progress)
    return MergeResult(dst, 0, outputs, len(rels), corr, sevs, len(manifest.get("redrawn", {})))


__all__ = ["MergeResult", "merge_shards", "verify_outputs"]
