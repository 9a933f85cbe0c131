"""torchrun / DistributedDataParallel set-up and rank-0 helpers.

``torchrun --nproc_per_node N -m ventralkit.cli train ...`` (or ``--nnodes`` for several machines)
sets RANK / WORLD_SIZE / LOCAL_RANK; everything else here reads them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: torch.device, timeout_s: float | None = None, backend: str | None = None) -> DistInfo:
    """Join the process group torchrun describes (nothing to do in one process).

    timeout_s: how long any collective may wait for the other ranks (default torch's); backend: default nccl on
    CUDA, gloo on the CPU (commands that only exchange small objects, ``engine.ranks``, ask for gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = backend or ("nccl" if device.type == "cuda" else "gloo")
        kwargs = {} if timeout_s is None else {"timeout": timedelta(seconds=float(timeout_s))}
        dist.init_process_group(backend=backend, **kwargs)
    return info


def resolve_device(name: str | None = "auto") -> torch.device:
    """The one device resolver of every command: ``auto``/None is CUDA when present; a device that is not
    there (CUDA without CUDA, cuda:3 on a 2-GPU machine) is a one-line error, not a traceback."""
    from ..errors import ConfigError

    if name in (None, "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} (or --ngpus >= 1) asks for CUDA, but no CUDA device is available here; "
                          "use --device cpu (--ngpus 0)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA devices")
    return device


def pick_device(name: str, dist_info: DistInfo | None = None) -> torch.device:
    """``resolve_device`` for training: under torchrun, CUDA means this process's GPU (LOCAL_RANK)."""
    return rank_device(resolve_device(name))


def rank_device(device: torch.device) -> torch.device:
    """A resolved device for this process: CUDA without an index is the GPU of LOCAL_RANK (made current)."""
    if device.type == "cuda" and device.index is None:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    return device


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics), the ones rank 0 saves."""
    if dist.is_available() and dist.is_initialized():
        for buf in model.buffers():
            dist.broadcast(buf, src=0)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
