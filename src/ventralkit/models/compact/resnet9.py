"""ResNet-9 for 32 x 32 CIFAR images, last stage widened to 1028 channels, as the head study trained it.

Source: docs/reference/heads.md section 1.3 (the study's "ResNet1028" notebooks, the well-known ResNet-9
CIFAR net with 1028 instead of 1024 final channels), trained from scratch on CIFAR-100; no
published weights. 30,441,528 parameters with the 100-way head, of which the Linear has 102,900.
The embedding is the global max of the last 1028 x 2 x 2 map (the study's MaxPool2d(2) at 32 x 32;
an adaptive max-pool here, so other input sizes run too).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..heads import build_with_optional_head
from ..registry import register_model
from .pooled import PooledClassifierModel, pooled_classifier

RESNET9_OPTIONS = ("channels",)


def conv_block(in_channels: int, out_channels: int, pool: bool = False) -> nn.Sequential:
    """3x3 conv (with bias) -> BN -> ReLU [-> 2x2 max-pool]."""
    layers = [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class ResNet9(PooledClassifierModel):
    """conv1, conv2 (pool), res1, conv3 (pool), conv4 (pool), res2, conv5 (pool), res3, classifier.

    ``res*`` are two conv blocks whose output is added to their input.
    """

    stages = ("conv1", "conv2", "res1", "conv3", "conv4", "res2", "conv5", "res3")

    def __init__(self, num_classes: int = 100, channels=(64, 128, 256, 512, 1028)):
        super().__init__()
        c1, c2, c3, c4, c5 = channels
        self.conv1 = conv_block(3, c1)
        self.conv2 = conv_block(c1, c2, pool=True)
        self.res1 = nn.Sequential(conv_block(c2, c2), conv_block(c2, c2))
        self.conv3 = conv_block(c2, c3, pool=True)
        self.conv4 = conv_block(c3, c4, pool=True)
        self.res2 = nn.Sequential(conv_block(c4, c4), conv_block(c4, c4))
        self.conv5 = conv_block(c4, c5, pool=True)
        self.res3 = nn.Sequential(conv_block(c5, c5), conv_block(c5, c5))
        self.num_features = c5
        self.num_classes = num_classes
        self.classifier = pooled_classifier(nn.AdaptiveMaxPool2d(1), c5, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.stages:
            stage = getattr(self, name)
            x = stage(x) + x if name.startswith("res") else stage(x)
        return x


def _resnet9_plain(num_classes: int, **config) -> ResNet9:
    return ResNet9(num_classes, **config)


#: the ResNet notebooks fed unnormalised [0, 1] images (their Normalize lines are commented out)
_INFO = dict(family="compact", input_size=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
#: ``extra`` key read by ``data.cifar100.cifar100_datasets(info=...)``: the notebooks' crop + flip
_AUGMENT = {"cifar100_augment": "resnet9"}


@register_model(
    "resnet9",
    num_classes=100,
    description="ResNet-9 for CIFAR, last stage 1028 wide (the head study's ResNet backbone)",
    extra={"spec": "docs/reference/heads.md 1.3", "backbone": "resnet9", "head": "linear", **_AUGMENT},
    **_INFO,
)
def resnet9(num_classes: int = 100, head: str | None = None, **kwargs) -> nn.Module:
    """ResNet-9; ``channels`` as a keyword; ``head=...`` attaches a head as for ``phinet``."""
    return build_with_optional_head("resnet9", _resnet9_plain, RESNET9_OPTIONS, num_classes, head, kwargs)


@register_model(
    "resnet9_hierarchical20",
    num_classes=100,
    description="ResNet-9 + 20 CIFAR superclasses, per-superclass 20->5 child heads on relu(parent logits)",
    extra={"spec": "docs/reference/heads.md 2.3", "backbone": "resnet9", "head": "hierarchical", **_AUGMENT},
    **_INFO,
)
def resnet9_hierarchical20(num_classes: int = 100, **kwargs) -> nn.Module:
    defaults = dict(mapping="cifar100_coarse20", child_input="parent_logits", child_bias=True,
                    shared=True, shared_weight=1.5)
    return resnet9(num_classes, head="hierarchical", **{**defaults, **kwargs})


@register_model(
    "resnet9_adaptive",
    num_classes=100,
    description="ResNet-9 + factorised head B relu(A e), rank 50 (the study's ResNet sweep, 10-90)",
    extra={"spec": "docs/reference/heads.md 2.3", "backbone": "resnet9", "head": "adaptive", **_AUGMENT},
    **_INFO,
)
def resnet9_adaptive(num_classes: int = 100, **kwargs) -> nn.Module:
    defaults = dict(rank=50, dropout=0.0, hidden_activation="relu")
    return resnet9(num_classes, head="adaptive", **{**defaults, **kwargs})
