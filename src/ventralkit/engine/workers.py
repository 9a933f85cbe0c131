"""How many DataLoader worker processes to start when the user gives no ``--workers``.

Training and inference want different counts, so there are two functions with two names:
``training_workers`` keeps the training step fed (one per core), ``inference_workers`` leaves the cores to
the forward pass on a small CPU, where decoding in another process only preempts the compute threads.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def training_workers() -> int:
    """One DataLoader worker per usable core, at most 8 (more only add start-up cost)."""
    return max(0, min(8, usable_cores()))


def inference_workers(device) -> int:
    """DataLoader workers for a forward-only pass over images on ``device`` (a ``torch.device``).

    CUDA: many (decoding is the bottleneck). CPU: the forward pass dominates (CORnet-Z ~13 ms per
    224-px image on 2 cores against ~2.7 ms to decode and resize a 256-px JPEG; CORnet-S ~280 ms),
    and on a few cores a decoding process only preempts the compute threads: measured on 2 cores,
    CORnet-Z ran at 69-73 img/s with decoding in the main process and 53-60 img/s with one worker
    (niced or not). So none up to 4 cores; beyond, a few, with the compute threads reduced to match
    (``compute_threads``).
    """
    cpus = usable_cores()
    if device.type == "cuda":
        return max(1, min(16, cpus - 1))
    return 0 if cpus <= 4 else max(1, min(4, cpus // 8))


def compute_threads(workers: int) -> int | None:
    """Intra-op threads for a forward pass beside ``workers`` decoding processes, so that both fit the cores
    (None: torch's count already fits)."""
    import torch

    cpus, threads = usable_cores(), torch.get_num_threads()
    if workers > 0 and threads + workers > cpus:
        return max(1, cpus - workers)
    return None
