"""Tuned normalisation: each channel divided by a Gaussian-weighted pool over (circular) channel index.

Spec ``v1_resnet.md`` section 1.3b (reference code ``utils/DivisiveNormalization.py``,
``OpponentChannelInhibition``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def opponent_channel_distances(n: int) -> torch.Tensor:
    """The original's ``(n, n)`` distance matrix ``d(i, j) = |((j - i) mod n) - n // 2|``.

    It is 0 for the channel half a circle away and ``n // 2`` on the diagonal (row 0 for n = 8:
    ``[4, 3, 2, 1, 0, 1, 2, 3]``).
    """
    idx = torch.arange(n)
    return ((idx.view(1, -1) - idx.view(-1, 1)) % n - n // 2).abs().to(torch.float32)


class TunedNormalization(nn.Module):
    r"""``y_i = x_i / (sum_j g(i, j) x_j + 1)``: a 1x1 channel pool with per-channel Gaussian widths.

    With ``s_j = max(sigmas_j, 0.5)`` and the fixed channel distances ``d(i, j)``::

        g(i, j)  = 1 / (2.5066 s_j) * exp(-d(i, j)^2 / (2 s_j^2))     (width indexed by column j)
        g^(i, j) = g(i, j) / sum_i' g(i', j)                           (each column sums to 1)

    ``g^`` is the weight ``[o=i, c=j]`` of a 1x1 convolution; the ``+ 1`` in the denominator is a
    constant, not learned. Parameters: ``channel_distances`` ``(n, n)`` frozen (counted in
    ``parameters()`` as in the original), ``sigmas`` ``(n,)`` trainable, init U[0,1) + n/8.

    Quirk reproduced by default: ``d(i, j)`` is the original's "opponent" distance, 0 for
    ``j = i + n/2 (mod n)`` and maximal on the diagonal, so channel ``i`` is normalised mostly by the
    channels half a circle away. ``center_on_self=True`` uses the circular distance
    ``n/2 - d(i, j)`` instead (pool centred on the channel itself). The stored
    ``channel_distances`` keep the original values either way, so loading an original checkpoint
    does not undo the option.
    """

    def __init__(self, channels: int, center_on_self: bool = False):
        super().__init__()
        self.channels = channels
        self.center_on_self = center_on_self
        self.channel_distances = nn.Parameter(opponent_channel_distances(channels), requires_grad=False)
        self.sigmas = nn.Parameter(torch.rand(channels) + channels / 8)

    def distances(self) -> torch.Tensor:
        d = self.channel_distances.detach()
        return (self.channels // 2) - d if self.center_on_self else d

    def pool_weights(self) -> torch.Tensor:
        """The column-normalised pooling matrix ``g^``, ``(n, n)`` (row = output channel)."""
        sigmas = torch.clamp(self.sigmas, min=0.5)
        gauss = (1 / (2.5066 * sigmas)) * torch.exp(-1 * (self.distances() ** 2) / (2 * (sigmas ** 2)))
        return gauss / torch.sum(gauss, dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.pool_weights().view(self.channels, self.channels, 1, 1)
        return x / (F.conv2d(x, weight) + 1)

    def extra_repr(self) -> str:
        return f"{self.channels}" + (", center_on_self=True" if self.center_on_self else "")
