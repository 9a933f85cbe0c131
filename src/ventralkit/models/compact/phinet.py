"""PhiNet (micromind), in the configuration of the CIFAR-100 head study, with micromind's state-dict names.

Source: Paissan et al., "PhiNets: a scalable backbone for low-power AI at the edge" (ACM TECS 2022);
architecture and configuration as specified in docs/reference/heads.md sections 1.1-1.2 (micromind
``networks/phinet.py``, identical in the study's fork and in PyPI 0.2.1). Written from that
description, without micromind. The module tree keeps micromind's nesting
(``_layers.{i}._layers.{j}``, ``se_conv``/``se_conv2``, ``classifier.2``) and its BatchNorm
settings (eps 1e-3, momentum 0.999), so micromind checkpoints and the study's load directly.

Study configuration (the defaults): alpha 0.9, beta 0.5, t_zero 4, 7 layers, divisor 8,
downsampling at blocks 4, 5, 7, h-swish, squeeze-excitation: 552,267 parameters without the
classifier, a 344 x 3 x 3 feature map at 160 x 160 (x 1 x 1 at 32 x 32).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..heads import build_with_optional_head
from ..registry import WeightsFile, register_model
from .stats import CIFAR100_MEAN, CIFAR100_STD
from .pooled import PooledClassifierModel, pooled_classifier

#: builder keywords that configure the PhiNet itself (everything else goes to the head)
PHINET_OPTIONS = (
    "input_size", "alpha", "beta", "t_zero", "num_layers", "divisor", "downsampling_layers",
    "h_swish", "squeeze_excite", "conv5_percent", "first_conv_stride", "residuals", "dropout",
)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor``, never more than 10% below ``value``."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def correct_pad(resolution: int, kernel_size: int = 3) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zero padding before a stride-2 conv: (0, 1, 0, 1) for even sizes."""
    adjust = 1 - resolution % 2
    half = kernel_size // 2
    return (half - adjust, half, half - adjust, half)


def expansion_factor(t_zero: float, beta: float, block_id: int, num_layers: int) -> float:
    """Linear from ``t_zero`` at block 0 to ``t_zero * beta`` at the last block."""
    return t_zero * beta * block_id / num_layers + t_zero * (num_layers - block_id) / num_layers


def _batchnorm(channels: int) -> nn.BatchNorm2d:
    # the Keras-port settings of micromind; kept so its checkpoints behave the same
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.999)


def _activation(h_swish: bool) -> nn.Module:
    return nn.Hardswish() if h_swish else nn.ReLU6()


class SeparableConv2d(nn.Module):
    """3x3 depthwise conv -> 1x1 pointwise conv -> BN -> activation (no biases), in ``_layers``."""

    def __init__(self, in_channels: int, out_channels: int, h_swish: bool = True, stride: int = 2):
        super().__init__()
        self._layers = nn.ModuleList([
            nn.Conv2d(in_channels, in_channels, 3, stride, padding=0, groups=in_channels, bias=False),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            _batchnorm(out_channels),
            _activation(h_swish),
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self._layers:
            x = layer(x)
        return x


class SEBlock(nn.Module):
    """Squeeze-excitation: global average -> 1x1 conv C->R -> activation -> 1x1 conv R->C -> sigmoid -> scale."""

    def __init__(self, channels: int, reduced: int, h_swish: bool = True):
        super().__init__()
        self.se_conv = nn.Conv2d(channels, reduced, 1, bias=False)
        self.se_conv2 = nn.Conv2d(reduced, channels, 1, bias=False)
        self.activation = _activation(h_swish)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.se_conv2(self.activation(self.se_conv(s))))


class PhiNetConvBlock(nn.Module):
    """Inverted residual: [1x1 expand, BN, act] -> Dropout2d -> depthwise, BN, act -> [SE] -> 1x1 project, BN.

    The expansion is skipped when ``block_id`` is falsy (the first block). The residual is added
    when ``residual`` and the block keeps shape (same channels, stride 1).
    """

    def __init__(
        self,
        in_channels: int,
        expansion: float,
        stride: int,
        filters: int,
        has_se: bool,
        block_id: int | None = None,
        residual: bool = True,
        h_swish: bool = True,
        kernel_size: int = 3,
        dropout: float = 0.05,
        divisor: int = 8,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        expanded = in_channels
        if block_id:
            expanded = make_divisible(int(expansion * in_channels), divisor)
            layers += [nn.Conv2d(in_channels, expanded, 1, bias=False), _batchnorm(expanded), _activation(h_swish)]
        layers.append(nn.Dropout2d(dropout))
        # micromind pads stride-2 depthwise convs by correct_pad(odd, 3) = 1 on each side, whatever the kernel
        padding = kernel_size // 2 if stride == 1 else 1
        layers += [
            nn.Conv2d(expanded, expanded, kernel_size, stride, padding, groups=expanded, bias=False),
            _batchnorm(expanded),
            _activation(h_swish),
        ]
        if has_se:
            layers.append(SEBlock(expanded, make_divisible(max(1, int(expanded / 6)), divisor), h_swish))
        layers += [nn.Conv2d(expanded, filters, 1, bias=False), _batchnorm(filters)]
        self._layers = nn.ModuleList(layers)
        self.residual = residual and in_channels == filters and stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self._layers:
            out = layer(out)
        return out + x if self.residual else out


class PhiNet(PooledClassifierModel):
    """PhiNet backbone; ``classifier`` = avg-pool, flatten, Linear (Identity when ``num_classes=0``).

    ``input_size`` only sets the first zero padding (its parity); any input size runs.
    """


    def __init__(
        self,
        num_classes: int = 1000,
        input_size: int = 160,
        alpha: float = 0.9,
        beta: float = 0.5,
        t_zero: float = 4.0,
        num_layers: int = 7,
        divisor: int = 8,
        downsampling_layers=(4, 5, 7),
        h_swish: bool = True,
        squeeze_excite: bool = True,
        conv5_percent: float = 0.0,
        first_conv_stride: int = 2,
        residuals: bool = True,
        dropout: float = 0.05,
    ):
        super().__init__()
        downsampling_layers = tuple(downsampling_layers)
        self.config = dict(
            input_size=input_size, alpha=alpha, beta=beta, t_zero=t_zero, num_layers=num_layers,
            divisor=divisor, downsampling_layers=downsampling_layers, h_swish=h_swish,
            squeeze_excite=squeeze_excite, conv5_percent=conv5_percent,
            first_conv_stride=first_conv_stride, residuals=residuals, dropout=dropout,
        )

        def t(block_id: int) -> float:
            return expansion_factor(t_zero, beta, block_id, num_layers)

        def block(c_in, expansion, stride, c_out, block_id, kernel_size=3, has_se=squeeze_excite):
            return PhiNetConvBlock(c_in, expansion, stride, c_out, has_se, block_id, residuals, h_swish,
                                   kernel_size, dropout, divisor)

        first = make_divisible(int(48 * alpha), divisor)
        b1 = make_divisible(int(24 * alpha), divisor)
        b2 = make_divisible(int(48 * alpha), divisor)
        layers: list[nn.Module] = [
            nn.ZeroPad2d(correct_pad(input_size, 3)),
            SeparableConv2d(3, first, h_swish, stride=first_conv_stride),
            block(first, 1, 1, b1, None, has_se=False),
            block(b1, t(1), 2, b1, 1),
            block(b1, t(2), 1, b1, 2),
            block(b1, t(3), 2, b2, 3),
        ]
        channels, base = b2, 48
        for block_id in range(4, num_layers + 1):
            down = block_id in downsampling_layers
            if down:
                base *= 2
            c_out = make_divisible(int(base * alpha), divisor)
            kernel = 5 if block_id / num_layers > 1 - conv5_percent else 3
            layers.append(block(channels, t(block_id), 2 if down else 1, c_out, block_id, kernel))
            channels = c_out
        self._layers = nn.ModuleList(layers)
        self.num_features = channels
        self.num_classes = num_classes
        self.classifier = pooled_classifier(nn.AdaptiveAvgPool2d(1), channels, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self._layers:
            x = layer(x)
        return x


def convert_micromind_state_dict(state: dict) -> dict:
    """micromind / study checkpoints -> this PhiNet's keys.

    A plain micromind state dict already matches. The study's checkpoints hold one state dict per
    module: ``feature_extractor`` (the PhiNet) and ``classifier`` (pool, flatten, Linear ->
    ``2.weight``), docs/reference/heads.md section 2.2; they are merged here.
    """
    if isinstance(state.get("feature_extractor"), dict):
        merged = dict(state["feature_extractor"])
        head = state.get("classifier")
        if isinstance(head, dict) and set(head) == {"2.weight", "2.bias"}:
            merged.update({f"classifier.{k}": v for k, v in head.items()})
        return merged
    return state


def _phinet_plain(num_classes: int, **config) -> PhiNet:
    return PhiNet(num_classes, **config)


_INFO = dict(
    family="compact",
    input_size=160,
    mean=CIFAR100_MEAN,
    std=CIFAR100_STD,
)


@register_model(
    "phinet",
    num_classes=1000,
    weights=WeightsFile(
        "micromind_imagenet_v7_state_dict.pth.tar",
        "https://huggingface.co/micromind/ImageNet/resolve/main/v7/state_dict.pth.tar",  # gated: weights_table.json
    ),
    description="PhiNet a0.9 b0.5 t4 L7 (micromind), the CIFAR-100 head study's backbone",
    extra={"spec": "docs/reference/heads.md 1.1-1.2", "backbone": "phinet", "head": "linear"},
    convert_state_dict=convert_micromind_state_dict,
    **_INFO,
)
def phinet(num_classes: int = 1000, head: str | None = None, **kwargs) -> nn.Module:
    """PhiNet; PhiNet options as keywords (``PHINET_OPTIONS``). ``head=...`` attaches a head from
    ``models/heads.py`` (then ``num_classes`` is the head's, other keywords go to the head, and
    ``backbone_pretrained`` / ``backbone_checkpoint`` initialise the PhiNet)."""
    return build_with_optional_head("phinet", _phinet_plain, PHINET_OPTIONS, num_classes, head, kwargs)


def _register_phinet_head(name: str, head: str, description: str, **defaults):
    @register_model(name, num_classes=100, description=description,
                    extra={"spec": "docs/reference/heads.md 2.1-2.2", "backbone": "phinet", "head": head}, **_INFO)
    def builder(num_classes: int = 100, **kwargs) -> nn.Module:
        return phinet(num_classes, head=head, **{**defaults, **kwargs})

    builder.__name__ = name
    return builder


phinet_adaptive = _register_phinet_head(
    "phinet_adaptive", "adaptive", "PhiNet + low-rank head B·dropout(A e), rank 50 (study sweep 10-90)", rank=50)
phinet_nmf = _register_phinet_head(
    "phinet_nmf", "nmf", "PhiNet + non-negative factorised head relu(B) relu(A) relu(e), rank 50", rank=50)
phinet_nmf_sigmoid = _register_phinet_head(
    "phinet_nmf_sigmoid", "nmf_sigmoid", "PhiNet + factorised head with sigmoid(weights), rank 50", rank=50)
phinet_hierarchical10 = _register_phinet_head(
    "phinet_hierarchical10", "hierarchical",
    "PhiNet + 10 parents x 10 children head (the study's merged superclasses)",
    mapping="cifar100_parents10", child_input="features", child_bias=False, shared=True,
)
