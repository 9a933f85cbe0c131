"""Pieces shared by the CORnet models: the hookable identity, the flatten, the decoder head.

Module names are public interface (Brain-Score and feature extraction address them by name),
so they follow the original CORnet code exactly.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..interface import ClassifierMixin


class Identity(nn.Module):
    """Returns its input. Exists so a forward hook can be attached by name (``V4.output``)."""

    def forward(self, x):
        return x


class Flatten(nn.Module):
    """``x.view(batch, -1)``, as the original (a view, never a copy)."""

    def forward(self, x):
        return x.view(x.size(0), -1)


class Decoder(nn.Sequential):
    """avgpool -> flatten -> linear [-> output]. R/RT have no ``output`` identity."""

    def __init__(self, in_features: int, num_classes: int, with_output: bool = True):
        layers = OrderedDict(
            avgpool=nn.AdaptiveAvgPool2d(1),
            flatten=Flatten(),
            linear=nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity(),
        )
        if with_output:
            layers["output"] = Identity()
        super().__init__(layers)

    def head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.flatten(self.avgpool(x))
        if pre_logits:
            return x
        x = self.linear(x)
        return self.output(x) if "output" in self._modules else x


class StridedConv2d(nn.Conv2d):
    """A Conv2d whose stride can be chosen per call, so recurrent blocks never mutate module state.

    The original CORnet-S sets ``conv2.stride`` inside forward; passing it per call computes the
    same thing and stays safe under torch.compile and DistributedDataParallel. Hooks still fire.
    """

    def forward(self, x: torch.Tensor, stride: int | None = None) -> torch.Tensor:
        if stride is None:
            return super().forward(x)
        return F.conv2d(x, self.weight, self.bias, stride, self.padding, self.dilation, self.groups)


class StridedMaxPool2d(nn.MaxPool2d):
    """A MaxPool2d whose stride can be chosen per call (CORnet-S100 feedback passes)."""

    def forward(self, x: torch.Tensor, stride: int | None = None) -> torch.Tensor:
        if stride is None:
            return super().forward(x)
        return F.max_pool2d(
            x, self.kernel_size, stride, self.padding, self.dilation, self.ceil_mode, self.return_indices
        )


class CORnetBase(ClassifierMixin):
    """The uniform interface for CORnets: features = IT output map, head = the decoder."""

    classifier_name = "decoder.linear"
    decoder_name = "decoder"
    num_features = 512
    areas = ("V1", "V2", "V4", "IT")

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return getattr(self, self.decoder_name).head(x, pre_logits=pre_logits)


def cornet_areas(decoder: str = "decoder", with_output: bool = True) -> dict[str, str]:
    """Brain-area commitments: each area's ``output`` identity, plus the decoder's pooled features."""
    areas = {a: f"{a}.output" for a in ("V1", "V2", "V4", "IT")}
    areas["decoder"] = f"{decoder}.avgpool"
    return areas


def cornet_weights(letter: str, digest: str):
    from ..registry import WeightsFile

    fname = f"cornet_{letter}-{digest}.pth"
    return WeightsFile(fname, f"https://s3.amazonaws.com/cornet-models/{fname}")


def he_fan_out_init(model: nn.Module) -> None:
    """CORnet-S init: conv ~ N(0, sqrt(2/(k*k*out))), BN 1/0; Linear keeps PyTorch's default.

    (The original forgot to initialise the Linear; kept so training from scratch matches.)
    """
    import math

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            m.weight.data.normal_(0, math.sqrt(2.0 / n))
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.data.fill_(1)
            m.bias.data.zero_()
