"""Batched evaluation: loss, top-1, top-5, per-class accuracy and the confusion matrix.

Counts accumulate on the device and are read once at the end, so there is no per-batch host sync.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .amp import autocast
from .progress import progress_bar


@dataclass
class EvalResult:
    loss: float
    top1: float
    top5: float
    n: int
    per_class: np.ndarray = field(repr=False)
    confusion: np.ndarray = field(repr=False)
    predictions: np.ndarray = field(repr=False)
    super_top1: float | None = None  # superclass accuracy of hierarchical heads
    #: images the loader could not read (``--on_bad_image skip``): in no count, not in ``predictions``
    skipped: list = field(default_factory=list, repr=False)

    def record(self) -> dict:
        """The CORnet-100 ``val`` record keys (plus ``super_top1`` for hierarchical heads)."""
        rec = {"loss": self.loss, "top1": self.top1, "top5": self.top5}
        if self.super_top1 is not None:
            rec["super_top1"] = self.super_top1
        return rec


def logits_of(output) -> torch.Tensor:
    return output["logits"] if isinstance(output, dict) else output


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks=(1, 5)) -> list[torch.Tensor]:
    """Number of samples whose target is among the top-k logits, for each k (device tensors)."""
    kmax = min(max(ks), logits.shape[1])
    pred = logits.topk(kmax, dim=1).indices
    hit = pred.eq(target[:, None])
    return [hit[:, : min(k, kmax)].any(dim=1).sum() for k in ks]


def default_device() -> torch.device:
    from .distributed import resolve_device

    return resolve_device("auto")


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device | str | None = None,
    amp: str = "none",
    desc: str | None = "eval",
    progress: bool = True,
    num_classes: int | None = None,
    channels_last: bool = False,
) -> EvalResult:
    """Evaluate ``model`` on every batch of ``loader`` (``(images, labels)`` pairs).

    Images the loader dropped as unreadable (``data.folders.collate_readable``) are in no count;
    they are returned in ``EvalResult.skipped`` and ``predictions`` has one entry per image read."""
    from ..data.folders import skipped_in

    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    core = getattr(model, "module", getattr(model, "_orig_mod", model))  # unwrap DDP / torch.compile
    n_cls = num_classes or getattr(getattr(core, "info", None), "num_classes", None)
    parent_targets = getattr(core, "parent_targets", None)
    super_hits = None
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros(2, device=device, dtype=torch.long)
    confusion = None
    preds = []
    skipped = []
    try:
        for batch in progress_bar(loader, desc=desc, enabled=progress, leave=False):
            skipped += skipped_in(batch)
            images, target = batch
            if len(target) == 0:  # every image of this batch was unreadable
                continue
            images = images.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            target = target.to(device, non_blocking=True)
            with autocast(device, amp):
                output = model(images)
            logits = logits_of(output).float()
            if parent_targets is not None and isinstance(output, dict) and "parent_logits" in output:
                hits = output["parent_logits"].argmax(1).eq(parent_targets(target)).sum()
                super_hits = hits if super_hits is None else super_hits + hits
            loss_sum += F.cross_entropy(logits, target, reduction="sum")
            correct += torch.stack(topk_correct(logits, target))
            if confusion is None:
                n_cls = n_cls or logits.shape[1]
                confusion = torch.zeros(n_cls, n_cls, device=device, dtype=torch.long)
            pred = logits.argmax(1)
            confusion.view(-1).index_add_(0, target * n_cls + pred, torch.ones_like(pred))
            preds.append(pred)
    finally:
        model.train(was_training)
    if confusion is None:
        if skipped:
            from ..errors import DataError

            raise DataError(f"none of the {len(skipped)} images could be read (e.g. {skipped[0].path}: "
                            f"{skipped[0].reason}); fix or replace the image files")
        raise ValueError("evaluate() got an empty loader")
    conf = confusion.cpu().numpy()
    n = int(conf.sum())
    c1, c5 = correct.tolist()
    support = conf.sum(1)
    per_class = np.divide(np.diag(conf), support, out=np.full(len(support), np.nan), where=support > 0)
    return EvalResult(
        loss=float(loss_sum) / n,
        top1=c1 / n,
        top5=c5 / n,
        n=n,
        per_class=per_class,
        confusion=conf,
        predictions=torch.cat(preds).cpu().numpy(),
        super_top1=None if super_hits is None else super_hits.item() / n,
        skipped=skipped,
    )
