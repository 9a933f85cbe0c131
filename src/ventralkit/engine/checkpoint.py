"""Checkpoints that lose nothing: atomic writes, and everything needed for an exact resume.

A ventralkit checkpoint is a dict ``{'format': 'ventralkit', 'model_name', 'config', 'preprocessing',
'model', 'optimizer', 'scheduler', 'scaler', 'epoch', 'step_in_epoch', 'global_step', 'best_top1', 'rng',
'meters'}``; its ``model`` entry is a plain state dict, so ``create_model(name, checkpoint=...)``
reads it like any other weight file, and ``preprocessing`` (``models.preprocessing.Preprocessing.to_dict()``:
the size and evaluation preprocessing the run trained with) is what ``load_model`` gives the model.
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
from ..models.weights import CHECKPOINT_FORMAT, read_checkpoint


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


def write_checkpoint(state: dict, path: Path) -> Path:
    """``save_atomic`` that turns a failed write (disk full, permissions) into one line; the old file stays."""
    try:
        return save_atomic(state, path)
    except (OSError, RuntimeError) as err:  # torch.save reports a full disk as a RuntimeError
        why = getattr(err, "strerror", None) or str(err).strip().splitlines()[0][:120]
        raise CheckpointError(f"could not write {path} ({why}); the previous checkpoint is intact. Free space or "
                              f"fix permissions, then resume with: ventralkit train --resume {path.parent / 'last.pt'}"
                              ) from None


def check_finite(model: torch.nn.Module, what: str) -> None:
    """Refuse weights with NaN or inf (a checkpoint saved by a diverged run of an older version)."""
    bad = [n for n, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(f"{what} holds non-finite weights ({bad[0]}{' ...' if len(bad) > 1 else ''}); "
                              "resume from an earlier checkpoint")


def checkpoint_bytes(model: torch.nn.Module, optimizer: str, momentum: float) -> tuple[int, int]:
    """``(last.pt, best.pt)`` sizes in bytes, from the tensors they hold (the weights; ``last.pt`` also the
    optimiser's per-parameter slots). The files add ~0.1 MB of pickle and names; a model built on the meta
    device gives the same numbers without allocating."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    slots = {"sgd": 1 if momentum else 0, "adam": 2, "adamw": 2}.get(optimizer, 2)
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return weights + slots * trainable, weights


def disk_note(model: torch.nn.Module, optimizer: torch.optim.Optimizer, cfg) -> str:
    """The disk a run's checkpoints need, printed at the start (epoch snapshots are hard links of last.pt)."""
    last, weights = checkpoint_bytes(model, cfg.optimizer, cfg.momentum)
    keep = cfg.keep_epochs if cfg.keep_epochs >= 0 else cfg.epochs
    snaps = min(keep, cfg.epochs)
    mb = 1 / 2**20
    if snaps == 0:
        kept = "no epoch snapshots (--keep_epochs 0)"
    elif snaps == 1:
        kept = f"1 epoch snapshot, a hard link of last.pt (~{last * mb:.0f} MB once last.pt moves on)"
    else:
        kept = f"up to {snaps} epoch snapshots as hard links of last.pt (~{last * mb:.0f} MB each once last.pt moves on)"
    return (f"checkpoints: last.pt ~{last * mb:.0f} MB, best.pt (weights) ~{weights * mb:.0f} MB, {kept}: "
            f"at most ~{(last * (1 + snaps) + weights) * mb:.0f} MB")


def seed_everything(seed: int) -> None:
    """Seed every global generator a run draws from: torch's (CPU and every CUDA device), numpy's and
    Python's. ``rng_state`` saves the same three and ``set_rng_state`` restores them, so two runs with
    one seed, and a resumed run and a straight one, hold the same states."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


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
    if "cuda" in state and torch.cuda.is_available():  # saved with more GPUs visible: restore those there are
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


def read_resume(path: str | os.PathLike, trust: bool = False) -> dict:
    """A ventralkit training checkpoint, or a one-line error saying why it cannot resume a run."""
    ckpt = read_checkpoint(path, trust=trust)
    if ckpt.get("format") != CHECKPOINT_FORMAT or "optimizer" not in ckpt:
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
