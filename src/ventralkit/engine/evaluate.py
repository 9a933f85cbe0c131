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


def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device | str | None = None,
    amp: str = "none",
    desc: str | None = "eval",
    progress: bool = True,
    num_classes: int | None = None,
    channels_last: bool | None = None,
) -> EvalResult:
    """Evaluate ``model`` on every batch of ``loader`` (``(images, labels)`` pairs).

    The forward passes go through ``engine.inference.InferenceRunner`` (eval mode, device, ``amp``, the
    channels_last rule unless ``channels_last`` forces a layout; all given back afterwards).
    Images the loader dropped as unreadable (``data.folders.collate_readable``) are in no count;
    they are returned in ``EvalResult.skipped`` and ``predictions`` has one entry per image read."""
    from .inference import InferenceRunner

    core = getattr(model, "module", getattr(model, "_orig_mod", model))  # unwrap DDP / torch.compile
    with InferenceRunner(model, device, amp=amp, channels_last=channels_last) as runner:
        tally = _Tally(runner.device, num_classes or getattr(getattr(core, "info", None), "num_classes", None),
                       getattr(core, "parent_targets", None))
        for step in runner.run(progress_bar(loader, desc=desc, enabled=progress, leave=False)):
            tally.add(step.output, step.take(1))
    return tally.result(runner.skipped)


class _Tally:
    """Loss, top-1/top-5 hits, the confusion matrix and predictions summed on the device (read once at the end)."""

    def __init__(self, device: torch.device, num_classes: int | None, parent_targets=None):
        self.device, self.n_cls, self.parent_targets = device, num_classes, parent_targets
        self.super_hits = None
        self.loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        self.correct = torch.zeros(2, device=device, dtype=torch.long)
        self.confusion = None
        self.preds: list[torch.Tensor] = []

    def add(self, output, target: torch.Tensor) -> None:
        logits = logits_of(output).float()
        if self.parent_targets is not None and isinstance(output, dict) and "parent_logits" in output:
            hits = output["parent_logits"].argmax(1).eq(self.parent_targets(target)).sum()
            self.super_hits = hits if self.super_hits is None else self.super_hits + hits
        self.loss_sum += F.cross_entropy(logits, target, reduction="sum")
        self.correct += torch.stack(topk_correct(logits, target))
        if self.confusion is None:
            self.n_cls = self.n_cls or logits.shape[1]
            self.confusion = torch.zeros(self.n_cls, self.n_cls, device=self.device, dtype=torch.long)
        pred = logits.argmax(1)
        self.confusion.view(-1).index_add_(0, target * self.n_cls + pred, torch.ones_like(pred))
        self.preds.append(pred)

    def result(self, skipped: list) -> EvalResult:
        if self.confusion is None:
            if skipped:
                from ..errors import DataError

                raise DataError(f"none of the {len(skipped)} images could be read (e.g. {skipped[0].path}: "
                                f"{skipped[0].reason}); fix or replace the image files")
            raise ValueError("evaluate() got an empty loader")
        conf = self.confusion.cpu().numpy()
        n = int(conf.sum())
        c1, c5 = self.correct.tolist()
        support = conf.sum(1)
        per_class = np.divide(np.diag(conf), support, out=np.full(len(support), np.nan), where=support > 0)
        return EvalResult(
            loss=float(self.loss_sum) / n,
            top1=c1 / n,
            top5=c5 / n,
            n=n,
            per_class=per_class,
            confusion=conf,
            predictions=torch.cat(self.preds).cpu().numpy(),
            super_top1=None if self.super_hits is None else self.super_hits.item() / n,
            skipped=skipped,
        )
