"""Features on several devices: ``torchrun --nproc_per_node K -m ventralkit.cli features ...``.

Each rank extracts a share of the images and rank 0 writes the same files one process writes (``<layer>-t<k>.npy``
or ``features.h5``, ``images.txt``, ``features.json``, ``skipped.txt``), through ``features``' own commit, so the
names, the manifest and the row order are those of one process.

* Shares are whole loader batches (``batch_size`` images): rank r takes the r-th of K runs of consecutive
  batches of the sorted listing. The forward passes are then exactly those of one process, so the numbers are
  too (on the CPU identical up to the thread count's effect on the arithmetic, well within 1e-6).
* Before any long work the ranks agree (``engine.ranks.agree``): the output folder (checked by rank 0 as one
  process checks it: another run's features are refused unless ``--overwrite``), the options, the layers and
  time steps (one forward pass of a blank image), and the image listing (the same on every rank). A mistake
  found there is one line from rank 0, with nothing written.
* Each rank extracts into its own folder under ``OUT/.ventralkit-ranks-<id>/`` (temporary names, renamed when
  complete, as always); the ranks then wait for each other (bounded, ``engine.ranks.wait_for_peers``) and
  rank 0 copies the blocks, in rank order, into the output files (written under temporary names and renamed at
  the end) and removes the staging folder, also when it fails. The staging costs one more copy of the
  features on disk while the run lasts.
* A rank that fails during its share (an unreadable image, a full disk) reports its own line and exits; torchrun
  stops the others, whose clean-up removes their part (``stop_on_sigterm``). No feature file is half-written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import torch.nn as nn

from ..data.folders import Unreadable
from ..engine.distributed import DistInfo
from ..engine.ranks import agree, gather, refuse, stop_on_sigterm, wait_for_peers
from ..errors import DataError
from ..files import ensure_writable_dir
from .features import (Features, _check_options, _commit, _info_of, _Output, _preprocessing, _Writer,
                       claim_output_dir, extract_features, image_paths)

STAGING_PREFIX = ".ventralkit-ranks-"
#: rows copied at a time when rank 0 merges the shares (bounded memory, whatever N x D is)
_COPY_BYTES = 64 << 20


def batch_blocks(n: int, batch_size: int, world: int) -> list[tuple[int, int]]:
    """``(start, stop)`` rows of each rank: consecutive whole batches of ``batch_size``, as even as they come."""
    batches = -(-int(n) // int(batch_size))
    edges = [min(int(n), (batches * r // world) * int(batch_size)) for r in range(world + 1)]
    return list(zip(edges[:-1], edges[1:]))


def extract_features_ranks(model: nn.Module, data, output_dir, info: DistInfo, *, overwrite: bool = False,
                           batch_size: int = 64, progress: bool = True, **options) -> Features | None:
    """``extract_features`` over ``info.world_size`` ranks into ``output_dir`` (see the module docstring).

    Every rank calls it with the same arguments (and the same weights: ``engine.ranks.broadcast_weights``);
    ``options`` are ``extract_features``' (layers, time_steps, workers, image_size, transform, device, format,
    channels_last, amp, dtype, on_bad_image). Returns the features on rank 0, None on the others."""
    out = Path(output_dir)
    created = not out.exists()
    try:
        with stop_on_sigterm():
            return _run(model, data, out, info, overwrite, batch_size, progress, options)
    except BaseException:
        if created and info.is_main:
            with contextlib.suppress(OSError):
                out.rmdir()  # a folder this run made and left empty (only succeeds when empty)
        raise


def _run(model, data, out: Path, info: DistInfo, overwrite: bool, batch_size: int, progress: bool,
         options: dict) -> Features | None:
    """extract_features_ranks inside its clean-up."""
    paths, earlier, staging = agree(lambda: _prepare(model, data, out, overwrite, batch_size, info, options),
                                    info, "checking the inputs")
    digests = gather(hashlib.sha256("\n".join(map(str, paths)).encode()).hexdigest(), "comparing the images")
    if len(set(digests)) > 1:
        other = next(r for r, d in enumerate(digests) if d != digests[0])
        refuse(info, DataError(f"rank {other} lists other images in {data} than rank 0; give every rank the "
                               "same --data_path contents (a folder on a shared file system)"))
    staging = Path(gather(staging, "naming the staging folder")[0])
    blocks = batch_blocks(len(paths), batch_size, info.world_size)
    start, stop = blocks[info.rank]
    began = time.perf_counter()
    try:
        if stop > start:
            extract_features(model, paths[start:stop], output_dir=staging / f"rank{info.rank}", overwrite=False,
                             batch_size=batch_size, progress=progress and info.is_main, **options)
        wait_for_peers(time.perf_counter() - began, "its share of the images", info)
        if info.is_main:
            return _merge(staging, blocks, model, out, earlier, time.perf_counter() - began)
        return None
    except BaseException:  # this rank's share goes (its own error, or SIGTERM after another rank's)
        shutil.rmtree(staging / f"rank{info.rank}", ignore_errors=True)
        with contextlib.suppress(OSError):
            staging.rmdir()  # once every share is gone
        raise
    finally:
        if info.is_main:
            shutil.rmtree(staging, ignore_errors=True)


def _prepare(model, data, out: Path, overwrite: bool, batch_size: int, info: DistInfo, options: dict):
    """Every check one process makes before its long pass, on every rank: (image paths, the earlier run's files to
    replace (rank 0), the staging folder's name (rank 0))."""
    _check_options(options.get("format", "npy"), options.get("dtype", "float32"), batch_size, options.get("workers"),
                   None)
    earlier, staging = [], None
    if info.is_main:  # the others write their shares below it (their own folders, checked as they are made)
        earlier = claim_output_dir(out, overwrite)
        ensure_writable_dir(out)
    paths = image_paths(data)
    _probe(model, options)
    if info.is_main:
        for stale in out.glob(f"{STAGING_PREFIX}*"):  # an earlier run's, killed before its clean-up
            shutil.rmtree(stale, ignore_errors=True)
        staging = str(out / f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}")
    return paths, earlier, staging


def _probe(model, options: dict) -> None:
    """One forward pass of a blank image with the run's layers, time steps, device and precision: their mistakes
    (a layer that does not exist, a time step out of range) are found on every rank before the long pass."""
    import torch
    from torch.utils.data import TensorDataset

    pre = _preprocessing(model, _info_of(model), options.get("image_size"))
    blank = TensorDataset(torch.zeros(1, 3, pre.image_size, pre.image_size))
    keys = ("layers", "time_steps", "device", "channels_last", "amp", "dtype")
    extract_features(model, blank, batch_size=1, workers=0, progress=False, **{k: options[k] for k in keys
                                                                                if k in options})


def _merge(staging: Path, blocks: list[tuple[int, int]], model, out: Path, earlier: list[Path],
           elapsed: float) -> Features:
    """Rank 0: every share, in rank order, into the output files, committed as one process commits them."""
    parts = [(start, json.loads((staging / f"rank{r}" / "features.json").read_text()), staging / f"rank{r}")
             for r, (start, stop) in enumerate(blocks) if stop > start]
    first = parts[0][1]
    n = sum(manifest["n_images"] for _, manifest, _ in parts)
    writer = _Writer(n, np.dtype(first["dtype"]), out, first["format"])
    try:
        outputs = {}
        for name, meta in first["features"].items():
            o = _Output(name, meta["layer"], meta["time_step"], tuple(meta["unflattened_shape"]), meta["shape"][1])
            writer.allocate(o)
            outputs[(o.layer, o.step)] = o
        _copy_shares(parts, list(outputs.values()), first["format"])
        names = [line for _, _, folder in parts for line in (folder / "images.txt").read_text().splitlines()]
        skipped = [Unreadable(start + s["input_index"], s["image"], s["reason"])
                   for start, manifest, _ in parts for s in manifest["skipped"]]
        return _commit(writer, outputs, names, _info_of(model), first["layers"], first["time_steps_fired"],
                       first["image_size"], first["transform"], elapsed, n, skipped, earlier)
    except BaseException:
        writer.discard()
        raise


def _copy_shares(parts: list, outputs: list[_Output], fmt: str) -> None:
    """Each share's rows into the pre-allocated outputs, a bounded block at a time."""
    row = 0
    for _, manifest, folder in parts:
        with contextlib.ExitStack() as files:
            if fmt == "npy":
                sources = {o.name: np.load(folder / f"{o.name}.npy", mmap_mode="r") for o in outputs}
            else:
                import h5py

                h5 = files.enter_context(h5py.File(folder / "features.h5", "r"))
                sources = {o.name: h5[o.name] for o in outputs}
            k = manifest["n_images"]
            for o in outputs:
                step = max(1, _COPY_BYTES // max(1, o.dim * np.dtype(manifest["dtype"]).itemsize))
                for a in range(0, k, step):
                    z = min(k, a + step)
                    o.sink[row + a:row + z] = sources[o.name][a:z]
        row += k


__all__ = ["batch_blocks", "extract_features_ranks"]
