"""Training defaults that fit a CUDA device; on the CPU the config is left exactly as it is.

On CUDA, options the user did not set are chosen here and marked ``(device)`` in the printed config:
``workers`` becomes the concrete count (one per usable core, at most 8), and ``channels_last`` is
turned on with mixed precision, where tensor-core convolutions want NHWC (NVIDIA's Deep Learning
Performance guide and PyTorch's channels_last tutorial). cuDNN's autotuner is enabled: inputs keep one
size throughout a run. Pinned host memory is always used on CUDA (``make_loader``). Batch sizes are
left alone until ``make gpu-check`` has measured which pay.
"""

from __future__ import annotations

import torch

from .config import TrainConfig
from .workers import training_workers


def fit_device(cfg: TrainConfig, device: torch.device) -> TrainConfig:
    if device.type != "cuda":
        return cfg
    chosen = {}
    if cfg.workers is None:
        chosen["workers"] = training_workers()
    if cfg.amp != "none" and not cfg.channels_last and "channels_last" not in cfg.sources:
        chosen["channels_last"] = True
    torch.backends.cudnn.benchmark = True
    if not chosen:
        return cfg
    new = cfg.replace(**chosen)
    new.sources = {**new.sources, **dict.fromkeys(chosen, "device")}
    return new
