"""CORnet-Z: four conv-ReLU-maxpool areas and a linear decoder, purely feed-forward.

Source: Kubilius et al. 2018 (bioRxiv 10.1101/408385); original ``cornet/cornet_z.py``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from ..registry import register_model
from .blocks import CORnetBase, Decoder, Identity, cornet_areas, cornet_weights


class CORblock_Z(nn.Module):
    """conv (bias) -> ReLU -> maxpool(3, 2, 1) -> output."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2)
        self.nonlin = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.output = Identity()

    def forward(self, x):
        return self.output(self.pool(self.nonlin(self.conv(x))))


class CORnetZ(CORnetBase, nn.Sequential):
    """``nn.Sequential`` of V1, V2, V4, IT, decoder: the original module tree and state-dict keys."""

    area_time_steps = {"V1": 1, "V2": 1, "V4": 1, "IT": 1}

    def __init__(self, num_classes: int = 1000):
        super().__init__(
            OrderedDict(
                V1=CORblock_Z(3, 64, kernel_size=7, stride=2),
                V2=CORblock_Z(64, 128),
                V4=CORblock_Z(128, 256),
                IT=CORblock_Z(256, 512),
                decoder=Decoder(512, num_classes),
            )
        )
        self.num_classes = num_classes
        for m in self.modules():  # original init: xavier-uniform weights, zero biases
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.IT(self.V4(self.V2(self.V1(x))))


@register_model(
    "cornet_z",
    family="cornet",
    num_classes=1000,
    areas=cornet_areas(),
    time_steps=CORnetZ.area_time_steps,
    weights=cornet_weights("z", "5c427c9c"),
    description="CORnet-Z: feed-forward, 4 conv areas (Kubilius et al. 2018)",
)
def cornet_z(num_classes: int = 1000) -> CORnetZ:
    return CORnetZ(num_classes)
