"""CORnet-S: a V1 stem and three recurrent bottleneck areas with per-time-step BatchNorms.

Source: Kubilius et al., NeurIPS 2019 (arXiv 1909.06161); original ``cornet/cornet_s.py``.
Inside an area, step t's output is step t+1's input; conv weights are shared across steps but
each step has its own BatchNorms. Step 0 downsamples by 2 (3x3 conv and a 1x1 projection skip);
later steps use the identity skip.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from ..registry import register_model
from .blocks import (
    CORnetBase,
    Decoder,
    Identity,
    StridedConv2d,
    StridedMaxPool2d,
    cornet_areas,
    cornet_weights,
    he_fan_out_init,
)


class V1Stem(nn.Module):
    """conv 7x7/2 -> BN -> ReLU -> maxpool 3/2 -> conv 3x3 -> BN -> ReLU -> output (not recurrent).

    ``stride=1`` (feedback passes of CORnet-S100) runs conv1 and the pool without downsampling;
    ``pass_index`` > 0 selects that pass's own BatchNorms when the model has them.
    """

    def __init__(self, passes: int = 1):
        super().__init__()
        self.conv1 = StridedConv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.norm1 = nn.BatchNorm2d(64)
        self.nonlin1 = nn.ReLU(inplace=True)
        self.pool = StridedMaxPool2d(kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(64, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(64)
        self.nonlin2 = nn.ReLU(inplace=True)
        self.output = Identity()
        for p in range(1, passes):
            self.add_module(f"norm1_p{p}", nn.BatchNorm2d(64))
            self.add_module(f"norm2_p{p}", nn.BatchNorm2d(64))

    def _norm(self, which: str, pass_index: int) -> nn.Module:
        return getattr(self, which if pass_index == 0 else f"{which}_p{pass_index}")

    def forward(self, x: torch.Tensor, stride: int | None = None, pass_index: int = 0) -> torch.Tensor:
        x = self.nonlin1(self._norm("norm1", pass_index)(self.conv1(x, stride=stride)))
        x = self.pool(x, stride=stride)
        x = self.nonlin2(self._norm("norm2", pass_index)(self.conv2(x)))
        return self.output(x)


class CORblock_S(nn.Module):
    """A recurrent bottleneck area (expansion 4) unrolled for ``times`` steps.

    ``downsample=False`` (feedback passes of CORnet-S100) makes every step use the identity skip
    and stride 1, as the original's ``V4_to_V1`` flag does. ``passes`` > 1 adds per-pass BatchNorms
    ``norm{1,2,3}_{t}_p{p}`` after the original ones, so pass 0 keeps the original keys; ``skip_norms``
    passes (at most ``passes``) also get their own skip BatchNorm ``norm_skip_p{p}``, the others share
    ``norm_skip``.
    """

    scale = 4

    def __init__(self, in_channels: int, out_channels: int, times: int = 1, passes: int = 1, skip_norms: int = 1):
        super().__init__()
        self.times = times
        self.skip_norms = skip_norms
        wide = out_channels * self.scale
        self.conv_input = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.skip = StridedConv2d(out_channels, out_channels, kernel_size=1, stride=2, bias=False)
        self.norm_skip = nn.BatchNorm2d(out_channels)
        self.conv1 = nn.Conv2d(out_channels, wide, kernel_size=1, bias=False)
        self.nonlin1 = nn.ReLU(inplace=True)
        self.conv2 = StridedConv2d(wide, wide, kernel_size=3, stride=2, padding=1, bias=False)
        self.nonlin2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(wide, out_channels, kernel_size=1, bias=False)
        self.nonlin3 = nn.ReLU(inplace=True)
        self.output = Identity()
        for p in range(passes):
            suffix = "" if p == 0 else f"_p{p}"
            for t in range(times):
                self.add_module(f"norm1_{t}{suffix}", nn.BatchNorm2d(wide))
                self.add_module(f"norm2_{t}{suffix}", nn.BatchNorm2d(wide))
                self.add_module(f"norm3_{t}{suffix}", nn.BatchNorm2d(out_channels))
        for p in range(1, skip_norms):
            self.add_module(f"norm_skip_p{p}", nn.BatchNorm2d(out_channels))

    def forward(self, inp: torch.Tensor, downsample: bool = True, pass_index: int = 0) -> torch.Tensor:
        suffix = "" if pass_index == 0 else f"_p{pass_index}"
        x = self.conv_input(inp)
        norm_skip = getattr(self, f"norm_skip{suffix}") if pass_index < self.skip_norms else self.norm_skip
        for t in range(self.times):
            if t == 0 and downsample:
                skip = norm_skip(self.skip(x, stride=2))
                stride = 2
            else:
                skip = x
                stride = 1
            x = self.nonlin1(getattr(self, f"norm1_{t}{suffix}")(self.conv1(x)))
            x = self.nonlin2(getattr(self, f"norm2_{t}{suffix}")(self.conv2(x, stride=stride)))
            x = getattr(self, f"norm3_{t}{suffix}")(self.conv3(x))
            x += skip
            x = self.nonlin3(x)
            x = self.output(x)
        return x


class CORnetS(CORnetBase, nn.Sequential):
    """``nn.Sequential`` of V1, V2 (2 steps), V4 (4 steps), IT (2 steps), decoder."""

    area_time_steps = {"V1": 1, "V2": 2, "V4": 4, "IT": 2}

    def __init__(self, num_classes: int = 1000):
        super().__init__(
            OrderedDict(
                V1=V1Stem(),
                V2=CORblock_S(64, 128, times=2),
                V4=CORblock_S(128, 256, times=4),
                IT=CORblock_S(256, 512, times=2),
                decoder=Decoder(512, num_classes),
            )
        )
        self.num_classes = num_classes
        he_fan_out_init(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.IT(self.V4(self.V2(self.V1(x))))


@register_model(
    "cornet_s",
    family="cornet",
    num_classes=1000,
    areas=cornet_areas(),
    time_steps=CORnetS.area_time_steps,
    weights=cornet_weights("s", "1d3f7974"),
    description="CORnet-S: recurrent bottleneck areas, V2/V4/IT run 2/4/2 steps (NeurIPS 2019)",
)
def cornet_s(num_classes: int = 1000) -> CORnetS:
    return CORnetS(num_classes)
