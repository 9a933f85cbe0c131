"""Standard divisive normalisation: each unit divided by a learned Gaussian pool of its neighbours.

Spec ``v1_resnet.md`` section 1.3a (reference code ``utils/DivisiveNormalization.py``,
``DivisiveNormalizationCirincione``, after Cirincione et al., openreview KAAbo44qhJV).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

_TWO_PI = 2.0 * math.pi


class DivisiveNormalization(nn.Module):
    r"""``y = x / (conv2d(x, G) + |bias|)`` with an oriented, learnable Gaussian ``G`` per channel pair.

    For output channel ``o``, input channel ``c`` and tap ``(x, y)`` of the ``kernel_size`` square
    (``x`` = column, ``y`` = row)::

        x' =  x cos(theta) + y sin(theta)
        y' = -x sin(theta) + y cos(theta)
        D  = (x' - v)^2 / max(rho^2, 0.1) + (y' - w)^2 / max(sigma^2, 0.1)
        G  = | A / max(2 pi rho sigma, 0.1) | * exp(-D / 2)

    and the pool is a dense ``channels -> channels`` convolution with zero padding
    ``kernel_size // 2``. ``A, rho, sigma, theta, v, w`` are ``(C, C, 1, 1)`` (init U[0,1),
    U[0,1)+1, U[0,1)+1, 2 pi U[0,1), N(0,1)+1, N(0,1)+1); ``bias`` is ``(1,)`` (init U[0,1)+1).

    Quirk reproduced by default: the tap coordinates (buffers ``x_coords``, ``y_coords``) run
    ``1..kernel_size``, not centred on the kernel, so ``theta`` rotates about a point outside the
    kernel's top-left corner. ``centered_coords=True`` uses ``-(k//2)..k//2`` (rotation about the
    centre tap, and ``v, w`` initialised around 0). The stored buffers keep the original values
    either way, so loading an original checkpoint does not undo the option.

    With ``bias = 0`` the output is invariant to the input's scale (``y(a x) = y(x)``); with a bias
    it approaches that for large inputs.
    """

    def __init__(self, channels: int, kernel_size: int = 3, centered_coords: bool = False):
        super().__init__()
        self.channels = channels
        self.kernel_size = kernel_size
        self.padding = kernel_size // 2
        self.centered_coords = centered_coords
        taps = torch.arange(1, kernel_size + 1, dtype=torch.float32)
        self.register_buffer("x_coords", taps.repeat(kernel_size, 1))
        self.register_buffer("y_coords", taps.view(-1, 1).repeat(1, kernel_size))
        shape = (channels, channels, 1, 1)
        offset = 0.0 if centered_coords else float(kernel_size // 2)
        self.A = nn.Parameter(torch.rand(shape))
        self.rho = nn.Parameter(torch.rand(shape) + 1.0)
        self.sigma = nn.Parameter(torch.rand(shape) + 1.0)
        self.theta = nn.Parameter(torch.rand(shape) * _TWO_PI)
        self.v = nn.Parameter(torch.randn(shape) + offset)
        self.w = nn.Parameter(torch.randn(shape) + offset)
        self.bias = nn.Parameter(torch.rand(1) + 1.0)

    def pool_kernels(self) -> torch.Tensor:
        """The Gaussian pooling weights ``G``, ``(C, C, k, k)``."""
        xs, ys = self.x_coords, self.y_coords
        if self.centered_coords:
            centre = float(self.kernel_size // 2 + 1)
            xs, ys = xs - centre, ys - centre
        cos, sin = torch.cos(self.theta), torch.sin(self.theta)
        x_rot = xs * cos + ys * sin
        y_rot = -1 * xs * sin + ys * cos
        dist = ((x_rot - self.v) ** 2) / torch.clamp(self.rho ** 2, min=0.1) \
            + ((y_rot - self.w) ** 2) / torch.clamp(self.sigma ** 2, min=0.1)
        gain = torch.abs(self.A / torch.clamp(_TWO_PI * self.rho * self.sigma, 0.1))
        return gain * torch.exp(-0.5 * dist)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normalizer = F.conv2d(x, self.pool_kernels(), padding=self.padding)
        return x / (normalizer + torch.abs(self.bias))

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}" + (
            ", centered_coords=True" if self.centered_coords else "")
