"""Center-surround antagonism: a convolution whose kernels are learnable differences of Gaussians.

Spec ``v1_resnet.md`` section 1.1 (reference code ``utils/DoG.py``). Each of the
``out_channels * in_channels`` kernels has its own excitatory width, inhibitory width and gain;
the kernel shape is fixed (``2k + 1`` square), only those three scalars per kernel are learned.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

_INV_PI = 1.0 / math.pi


class DoGConv2d(nn.Module):
    r"""Dense convolution with difference-of-Gaussians kernels (``in_channels -> out_channels``).

    For kernel ``i = o * in_channels + c`` and tap ``(x, y)`` of the ``(2k+1) x (2k+1)`` grid, with
    ``d2 = (x - k - 1)^2 + (y - k - 1)^2`` (1-based coordinates; buffer-like ``kernel_dists``)::

        s1 = max(sigma1_i, 0.1)                         excitatory (center) width
        s2 = s1 * max(sigma2_scale_i, 1 + 1e-4)         inhibitory (surround) width, always > s1
        E  = p(s1) * exp(-d2 / s1)
        I  = p(s2) * exp(-d2 / max(s2, 1e-6))
        K_i = (E - I) * total_scale_i

    The original writes the prefactor as ``1/torch.pi*sigma``, i.e. ``p(s) = s / pi``; with
    ``normalized_prefactor=True`` it is ``p(s) = 1 / (pi * s)``, which makes each Gaussian
    ``exp(-d2 / s)`` sum to about 1 over the plane (``s`` plays the role of ``2 * variance``).

    The kernels are then L2-normalised. The original normalises the stacked ``(O*C, K, K)`` tensor
    along dim 0, i.e. *across all kernels at each tap* (every tap's vector of ``O*C`` values gets
    unit norm, individual kernels keep arbitrary norms, and all kernels of the layer are coupled).
    ``per_kernel_norm=True`` normalises each kernel over its own taps instead. Both corrections
    change the function computed by trained weights, so the defaults reproduce the original.

    Parameters (state-dict names of the original): ``kernel_dists`` (K, K) frozen;
    ``sigma1``, ``sigma2_scale``, ``total_scale`` (O*C, 1, 1) trainable, initialised U[0,1) + k/2,
    U[0,1) + k/2 and 2 N(0,1); ``bias`` (O,) trainable N(0,1) if ``bias`` else a frozen zero vector.
    Frozen tensors are detached in ``forward``, so they stay fixed even if a caller flips their
    ``requires_grad``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        k: int = 2,
        stride: int = 1,
        padding: int = 2,
        dilation: int = 1,
        bias: bool = False,
        normalized_prefactor: bool = False,
        per_kernel_norm: bool = False,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.k = int(k)
        self.kernel_size = 2 * self.k + 1
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.normalized_prefactor = normalized_prefactor
        self.per_kernel_norm = per_kernel_norm

        taps = torch.arange(1, self.kernel_size + 1, dtype=torch.float32) - (self.k + 1)
        dists = taps.view(1, -1) ** 2 + taps.view(-1, 1) ** 2
        n_kernels = out_channels * in_channels
        self.kernel_dists = nn.Parameter(dists, requires_grad=False)
        self.sigma1 = nn.Parameter(torch.rand(n_kernels, 1, 1) + self.k / 2)
        self.sigma2_scale = nn.Parameter(torch.rand(n_kernels, 1, 1) + self.k / 2)
        self.total_scale = nn.Parameter(torch.randn(n_kernels, 1, 1) * 2.0)
        self.learn_bias = bias
        if bias:
            self.bias = nn.Parameter(torch.randn(out_channels))
        else:
            self.bias = nn.Parameter(torch.zeros(out_channels), requires_grad=False)

    def _prefactor(self, sigma: torch.Tensor) -> torch.Tensor:
        if self.normalized_prefactor:
            return 1.0 / (math.pi * sigma)
        return _INV_PI * sigma  # the original's ``1/torch.pi*sigma``

    def gaussians(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The excitatory and inhibitory Gaussians ``(E, I)``, each ``(O*C, K, K)``."""
        d2 = self.kernel_dists.detach()
        sigma1 = torch.clamp(self.sigma1, min=0.1)
        excite = self._prefactor(sigma1) * torch.exp(-d2 / sigma1)
        sigma2 = sigma1 * torch.clamp(self.sigma2_scale, min=1 + 1e-4)
        inhibit = self._prefactor(sigma2) * torch.exp(-d2 / torch.clamp(sigma2, min=1e-6))
        return excite, inhibit

    def raw_kernels(self) -> torch.Tensor:
        """``(E - I) * total_scale`` before normalisation, ``(O*C, K, K)``."""
        excite, inhibit = self.gaussians()
        return (excite - inhibit) * self.total_scale

    def kernels(self) -> torch.Tensor:
        """The normalised convolution weight, ``(O, C, K, K)`` (kernel ``o * C + c`` is ``[o, c]``)."""
        raw = self.raw_kernels()
        if self.per_kernel_norm:
            flat = F.normalize(raw.flatten(1), dim=1)
            normed = flat.view_as(raw)
        else:
            normed = F.normalize(raw, dim=0)
        return normed.view(self.out_channels, self.in_channels, self.kernel_size, self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias if self.learn_bias else self.bias.detach()
        return F.conv2d(x, self.kernels(), bias, stride=self.stride, padding=self.padding, dilation=self.dilation)

    def extra_repr(self) -> str:
        extras = [f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}",
                  f"stride={self.stride}, padding={self.padding}"]
        if self.normalized_prefactor:
            extras.append("normalized_prefactor=True")
        if self.per_kernel_norm:
            extras.append("per_kernel_norm=True")
        return ", ".join(extras)


class DoGLayer(nn.Module):
    """Applies a :class:`DoGConv2d` to the first ``dog_channels`` channels; the rest pass unchanged.

    Output = ``concat(dog_conv(x[:, :dog_channels]), x[:, dog_channels:])`` (DoG channels first,
    channel order preserved). In every V1-ResNet use, ``dog_channels`` is 16 of 64 and the DoG
    is a dense 16 -> 16 convolution with 5x5 kernels (``k = 2``), stride 1, padding 2.
    """

    def __init__(self, dog_channels: int, k: int = 2, stride: int = 1, padding: int = 2, bias: bool = False,
                 **dog_options):
        super().__init__()
        self.dog_channels = dog_channels
        self.dog_conv = DoGConv2d(dog_channels, dog_channels, k=k, stride=stride, padding=padding, bias=bias,
                                  **dog_options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        center_surround = self.dog_conv(x[:, : self.dog_channels])
        return torch.cat([center_surround, x[:, self.dog_channels:]], dim=1)


class ConvDoG(nn.Module):
    """A 3x3 convolution followed by a :class:`DoGLayer` on a quarter of its output channels.

    The drop-in for a bottleneck's ``conv2`` in the composite models (children ``conv``, ``dog``:
    the original's state-dict names).
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int = 1, **dog_options):
        super().__init__()
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.dog = DoGLayer(in_planes // 4, k=2, stride=1, padding=2, bias=False, **dog_options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dog(self.conv(x))
