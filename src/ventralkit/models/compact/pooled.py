"""The head layout both compact backbones share: ``classifier = Sequential(pool, Flatten, Linear)``.

The layout is micromind's (``classifier.2`` is the Linear), kept so original checkpoints load; the
pooled, flattened vector before the Linear is the embedding every head in ``models/heads.py`` reads.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..interface import ClassifierMixin


def pooled_classifier(pool: nn.Module, channels: int, num_classes: int) -> nn.Sequential:
    """``pool -> Flatten -> Linear(channels, num_classes)`` (Identity instead of the Linear when 0 classes)."""
    return nn.Sequential(pool, nn.Flatten(),
                         nn.Linear(channels, num_classes) if num_classes > 0 else nn.Identity())


class PooledClassifierModel(ClassifierMixin, nn.Module):
    """``forward_head``/``forward`` for a model with ``forward_features`` and a ``pooled_classifier``."""

    classifier_name = "classifier.2"

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.classifier[1](self.classifier[0](x))
        return x if pre_logits else self.classifier[2](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
