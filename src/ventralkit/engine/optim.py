"""Optimizers and learning-rate schedules.

Schedules are closed-form functions of the fractional epoch and are stepped once per batch, as
CORnet's ``run.py`` does (``StepLR.step(epoch=(global_step + 1) / nsteps)`` before each batch,
docs/reference/cornet.md section 3.3): batch ``g`` trains with ``lr * factor((g + 1) / nsteps)``.
"""

from __future__ import annotations

import bisect
import math

import torch

from .config import TrainConfig


def build_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.nesterov)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(cfg: TrainConfig, epoch: float) -> float:
    """Multiplier of the base learning rate at fractional ``epoch``."""
    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
        return epoch / cfg.warmup_epochs
    if cfg.scheduler == "step":
        return cfg.gamma ** math.floor(epoch / cfg.step_size)
    if cfg.scheduler == "multistep":
        return cfg.gamma ** bisect.bisect_right(sorted(cfg.milestones), epoch)
    if cfg.scheduler == "cosine":
        span = max(cfg.epochs - cfg.warmup_epochs, 1e-8)
        progress = min(max((epoch - cfg.warmup_epochs) / span, 0.0), 1.0)
        return 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


def build_scheduler(optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """Per-batch schedule. ``onecycle`` is PyTorch's ``OneCycleLR`` itself (with ``--lr`` as max_lr, cosine
    phases, div_factor 25, final_div_factor 1e4 and momentum / Adam-beta1 cycling 0.85-0.95), as the
    CIFAR-100 head study's ResNet notebooks use it (docs/reference/heads.md 3.2); the others are closed forms."""
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, epochs=cfg.epochs,
                                                   steps_per_epoch=steps_per_epoch, pct_start=cfg.pct_start)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(cfg, (step + 1) / steps_per_epoch)
    )
