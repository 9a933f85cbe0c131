"""Checkpoints that lose nothing: atomic writes, and everything needed for an exact resume.

A ventralkit checkpoint is a dict ``{'format': 'ventralkit', 'model_name', 'config', 'model',
'optimizer', 'scheduler', 'scaler', 'epoch', 'step_in_epoch', 'global_step', 'best_top1', 'rng',
'meters'}``; its ``model`` entry is a plain state dict, so ``create_model(name, checkpoint=...)``
reads it like any other weight file.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError
from ..files import atomic_path
from ..models.weights import read_checkpoint

FORMAT = "ventralkit"


def save_atomic(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, flush, fsync, then rename over ``path``.

    A crash at any moment leaves either the old file or the new one, never a truncated one.
    """
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())  # on disk before the rename makes it the checkpoint
    return path


def rng_state() -> dict:
    """Every generator's state as tensors and plain numbers, so the checkpoint loads with ``weights_only``."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos,
                                                      has_gauss, gauss),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    np.random.set_state((kind, keys.astype(np.uint32), *rest))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_resume(path: str | os.PathLike, trust: bool = False) -> dict:
    """A ventralkit training checkpoint, or a one-line error saying why it cannot resume a run."""
    ckpt = read_checkpoint(path, trust=trust)
    if ckpt.get("format") != FORMAT or "optimizer" not in ckpt:
        raise CheckpointError(
            f"--resume {path} is not a ventralkit training checkpoint (use --checkpoint to start from its weights)"
        )
    return ckpt


def prune_epoch_snapshots(folder: Path, keep: int) -> None:
    """Keep the ``keep`` newest ``epoch_NN.pt`` files (``keep < 0`` keeps all)."""
    if keep < 0:
        return
    snaps = sorted(folder.glob("epoch_*.pt"), key=lambda p: int(re.findall(r"\d+", p.stem)[-1]))
    for old in snaps[: max(0, len(snaps) - keep)]:
        old.unlink(missing_ok=True)
