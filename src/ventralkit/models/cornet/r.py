"""CORnet-R (legacy) and CORnet-RT: four recurrent areas with GroupNorm, unrolled for ``times`` steps.

Both share modules and weights layout; they differ only in how time is unrolled:

* R (legacy, "non-biological"): within one time step every area reads the *current* output of
  the area below, so the image crosses all four areas in a single step.
* RT ("biological"): every area reads the area below's output from the *previous* step, so
  information climbs one area per step (V2 sees real input from t=1, V4 from t=2, IT from t=3).

Source: original ``cornet/cornet_r.py`` and ``cornet/cornet_rt.py``. Unlike the original, the
t=0 zero input is sized from the actual input, so any image size works (identical at 224 px).
"""

from __future__ import annotations


import torch
import torch.nn as nn

from ..registry import register_model
from .blocks import CORnetBase, Decoder, Identity, cornet_areas, cornet_weights


def _conv_out(size: int, conv: nn.Conv2d) -> int:
    k, s, p = conv.kernel_size[0], conv.stride[0], conv.padding[0]
    return (size + 2 * p - k) // s + 1


class CORblock_R(nn.Module):
    """One recurrent area: ``state_t = ReLU(GN(conv1(drive_t + state_{t-1})))``.

    ``drive_t = ReLU(GN(conv_input(input)))``; with no input (t=0 above V1) the drive is zeros.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.conv_input = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2)
        self.norm_input = nn.GroupNorm(32, out_channels)
        self.nonlin_input = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(32, out_channels)
        self.nonlin1 = nn.ReLU(inplace=True)
        self.output = Identity()

    def forward(self, inp: torch.Tensor | None = None, state: torch.Tensor | None = None,
                zeros_like_input_of: torch.Tensor | None = None) -> torch.Tensor:
        if inp is None:
            ref = zeros_like_input_of  # the tensor this area would have received
            size = _conv_out(ref.shape[-1], self.conv_input), _conv_out(ref.shape[-2], self.conv_input)
            drive = torch.zeros(ref.shape[0], self.out_channels, size[1], size[0],
                                device=ref.device, dtype=ref.dtype)
        else:
            drive = self.nonlin_input(self.norm_input(self.conv_input(inp)))
        skip = drive + (0 if state is None else state)
        x = self.nonlin1(self.norm1(self.conv1(skip)))
        return self.output(x)


CORblock_RT = CORblock_R  # identical modules; the unrolling lives in the network


class CORnetR(CORnetBase, nn.Module):
    """CORnet-R / CORnet-RT. ``biological=True`` selects RT's previous-step propagation."""

    def __init__(self, num_classes: int = 1000, times: int = 5, biological: bool = False):
        super().__init__()
        if times < 1:
            raise ValueError("times must be >= 1")
        self.times = times
        self.biological = biological
        self.num_classes = num_classes
        self.V1 = CORblock_R(3, 64, kernel_size=7, stride=4)
        self.V2 = CORblock_R(64, 128, stride=2)
        self.V4 = CORblock_R(128, 256, stride=2)
        self.IT = CORblock_R(256, 512, stride=2)
        self.decoder = Decoder(512, num_classes, with_output=False)

    @property
    def area_time_steps(self) -> dict[str, int]:
        return {a: self.times for a in self.areas}

    def forward_features(self, image: torch.Tensor) -> torch.Tensor:
        areas = [self.V1, self.V2, self.V4, self.IT]
        # t = 0: V1 sees the image, the areas above start from a zero drive.
        outputs = [image]
        for i, area in enumerate(areas):
            if i == 0:
                outputs.append(area(image))
            else:
                outputs.append(area(None, None, zeros_like_input_of=outputs[-1]))
        states = outputs[1:]
        for _ in range(1, self.times):
            source = list(outputs) if self.biological else outputs  # RT: freeze last step's outputs
            for i, area in enumerate(areas):
                new = area(source[i], states[i])
                states[i] = new
                outputs[i + 1] = new
        return outputs[-1]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(image))


_R_AREAS = cornet_areas()


@register_model(
    "cornet_r", family="cornet", num_classes=1000, areas=_R_AREAS,
    time_steps={a: 5 for a in ("V1", "V2", "V4", "IT")},
    weights=cornet_weights("r", "5930a990"),
    description="CORnet-R (legacy): recurrent, same-step propagation, times=5",
)
def cornet_r(num_classes: int = 1000, times: int = 5) -> CORnetR:
    return CORnetR(num_classes, times=times, biological=False)


@register_model(
    "cornet_rt", family="cornet", num_classes=1000, areas=_R_AREAS,
    time_steps={a: 5 for a in ("V1", "V2", "V4", "IT")},
    weights=cornet_weights("rt", "933c001c"),
    description="CORnet-RT: recurrent, previous-step propagation, times=5",
)
def cornet_rt(num_classes: int = 1000, times: int = 5) -> CORnetR:
    return CORnetR(num_classes, times=times, biological=True)
