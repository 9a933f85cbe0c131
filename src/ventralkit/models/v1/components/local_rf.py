"""Local receptive fields: a locally connected (unshared-weight) convolution.

Spec ``v1_resnet.md`` section 1.2 (reference code ``utils/LocallyConnected2d.py``). Every output
location has its own ``in_channels x k x k`` filter per output channel, like a V1 neuron whose
receptive field is not a copy of its neighbours'.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

from ....errors import ConfigError


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the incoming gradient contiguous in one copy.

    The gradient of the ``(locations, N, O) -> (N, O, H, W)`` permute arrives strided; batched
    matmul backward would otherwise copy it location by location (2x slower on CPU).
    """

    @staticmethod
    def forward(ctx, t):
        return t

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous()


class LocallyConnected2d(nn.Module):
    r"""Convolution without weight sharing: ``y[n,o,i,j] = sum_{c,t} W[0,o,c,i,j,t] * P[n,c,i,j,t] (+ b[0,o,i,j])``.

    ``P[n,c,i,j,t]`` is tap ``t = ky * k + kx`` (row-major) of the ``k x k`` patch of the
    zero-padded input whose top-left corner is ``(i * stride, j * stride)``. Parameters, with the
    original's shapes and init (plain N(0,1), no fan-in scaling): ``weight``
    ``(1, out_channels, in_channels, H_out, W_out, k*k)``, ``bias`` ``(1, out_channels, H_out, W_out)``
    or none. The layer only accepts inputs whose output map is ``output_size``.

    Computed as ``unfold`` + one ``einsum`` (a batched matmul over the output locations), never a
    loop over pixels and without the original's ``(N, O, C, H, W, k*k)`` broadcast product
    (4.8 GB at batch 128). Equal to the original up to float32 summation order.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        output_size: int | tuple[int, int],
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = False,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.output_size = _pair(output_size)
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        h, w = self.output_size
        taps = self.kernel_size[0] * self.kernel_size[1]
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, h, w, taps))
        if bias:
            self.bias = nn.Parameter(torch.randn(1, out_channels, h, w))
        else:
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h_in, w_in = x.shape
        h, w = self.output_size
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        h_out = (h_in + 2 * ph - kh) // sh + 1
        w_out = (w_in + 2 * pw - kw) // sw + 1
        if (h_out, w_out) != (h, w) or c != self.in_channels:
            raise ConfigError(
                f"LocallyConnected2d has weights for {self.in_channels} channels and a {h}x{w} output map, "
                f"got a {c}x{h_in}x{w_in} input; V1-ResNet models run only at their 64x64 input size"
            )
        taps = kh * kw
        # patches (n, h*w, c*taps) and weight (h*w, o, c*taps): the contraction runs as one batched
        # matmul over locations whose operands need no per-location copies
        patches = F.unfold(x, (kh, kw), padding=(ph, pw), stride=(sh, sw)).transpose(1, 2).contiguous()
        weight = self.weight.view(self.out_channels, c, h * w, taps).permute(2, 0, 1, 3)
        weight = weight.reshape(h * w, self.out_channels, c * taps)
        out = _ContiguousGrad.apply(torch.einsum("nlk,lok->lno", patches, weight))
        out = out.permute(1, 2, 0).reshape(n, self.out_channels, h, w)
        if self.bias is not None:
            out = out + self.bias
        return out

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, output_size={self.output_size}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"bias={self.bias is not None}")
