"""Cortical magnification: a fixed polar resampling that over-represents the centre of the map.

Spec ``v1_resnet.md`` section 1.4 (reference code ``utils/PolarTransform.py``). The stem's
``32 x 32`` feature map is pooled into rings (1 pixel wide near the centre, widening outwards) and
angular sectors; rows of the result are rings (fovea at the top), columns are polar angle.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ....errors import ConfigError

#: ring edges of the original: 1-pixel rings out to the foveal radius 12, then widening
RADIUS_EDGES = tuple(range(12)) + (12, 13, 14, 16, 18, 20, 23)
N_SECTORS = 30
SECTOR_FILLS = ("stretch", "angular", "none")


def polar_coordinates(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance and angle in [0, 2 pi) of each pixel from the centre ``(size // 2, size // 2)``.

    ``x = column - c``, ``y = c - row`` (y up), float32 as in the original.
    """
    centre = size // 2
    cols = torch.arange(size, dtype=torch.float32).view(1, -1).expand(size, size)
    rows = torch.arange(size, dtype=torch.float32).view(-1, 1).expand(size, size)
    x, y = cols - centre, centre - rows
    dist = torch.sqrt(x ** 2 + y ** 2)
    angle = torch.atan2(y, x)
    angle = torch.where(y < 0, angle + 2 * math.pi, angle)
    return dist, angle


def _angular_fill(ring: torch.Tensor, nonempty: torch.Tensor) -> torch.Tensor:
    """Fill each empty sector with the linear blend of its nearest non-empty neighbours (circularly)."""
    n = ring.shape[0]
    have = nonempty.nonzero().flatten().tolist()
    out = ring.clone()
    if len(have) == 1:
        return ring[have[0]].expand_as(ring).clone()
    for s in range(n):
        if nonempty[s]:
            continue
        before = max((h for h in have if h < s), default=have[-1] - n)
        after = min((h for h in have if h > s), default=have[0] + n)
        t = (s - before) / (after - before)
        out[s] = (1 - t) * ring[before % n] + t * ring[after % n]
    return out


def polar_pooling_masks(
    size: int = 32,
    radius_edges: Sequence[float] = RADIUS_EDGES,
    n_sectors: int = N_SECTORS,
    sector_fill: str = "stretch",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(rings * sectors, size, size)`` pooling masks (ring-major) and their sums, in float32.

    Each pixel belongs to the mask of its ring ``[edge_r, edge_r+1)`` and sector of width
    ``2 pi / n_sectors``. Near the centre many sectors hold no pixel; for every ring whose inner
    edge is at most ``size // 2`` they are filled according to ``sector_fill``:

    - ``"stretch"`` (the original): the ring's non-empty masks, in sector order, are linearly
      resampled to ``n_sectors`` masks (``F.interpolate(mode="linear")``). This ignores *which*
      sectors were empty: the single centre pixel is copied to every sector, and ring 1's eight
      pixels are spread evenly over the 30 sectors, shifting them away from their true angles.
    - ``"angular"`` (corrected): non-empty sectors keep their own mask; an empty sector is the
      linear blend of the nearest non-empty sectors on either side (circularly), weighted by
      angular distance.
    - ``"none"``: empty sectors stay empty (their pooled value is 0).

    Sums that are 0 (empty masks of the outer rings, which lie partly outside the map) become 1.
    """
    if sector_fill not in SECTOR_FILLS:
        raise ConfigError(f"sector_fill must be one of {', '.join(SECTOR_FILLS)}, got {sector_fill!r}")
    dist, angle = polar_coordinates(size)
    angle_edges = np.linspace(0, 2 * np.pi, n_sectors + 1).tolist()
    in_ring = torch.stack([(dist >= lo) & (dist < hi) for lo, hi in zip(radius_edges, radius_edges[1:])])
    in_sector = torch.stack([(angle >= lo) & (angle < hi) for lo, hi in zip(angle_edges, angle_edges[1:])])
    masks = (in_ring[:, None] & in_sector[None]).to(torch.float32)  # (rings, sectors, size, size)
    if sector_fill != "none":
        for r, inner in enumerate(radius_edges[:-1]):
            if inner > size // 2:
                continue  # outer rings: empty sectors lie outside the map
            ring = masks[r]
            nonempty = ring.sum(dim=(1, 2)) > 0
            if sector_fill == "stretch":
                kept = ring[nonempty].permute(1, 2, 0)  # (size, size, m): resample along the sector axis
                masks[r] = F.interpolate(kept, size=n_sectors, mode="linear").permute(2, 0, 1)
            else:
                masks[r] = _angular_fill(ring, nonempty)
    masks = masks.reshape(-1, size, size)
    counts = masks.sum(dim=(1, 2))
    counts[counts == 0] = 1
    return masks, counts


class PolarTransform(nn.Module):
    r"""Weighted-mean pooling into (ring, sector) cells, then a bilinear resize to ``output_size``.

    ``pooled[n, c, r, s] = sum_{h,w} x[n, c, h, w] M_{r,s}[h, w] / count_{r,s}`` with the masks of
    :func:`polar_pooling_masks` (one matmul of the flattened map with the mask matrix); the
    ``(rings, sectors)`` map is reflect-padded by one column on each side of the angle axis and
    resized to ``output_size`` (bilinear, ``align_corners=False``). No learnable parameters.

    Buffers, as in the original's state dict: ``pooling_masks`` ``(rings*sectors, size, size)`` and
    ``pooling_mask_counts`` ``(rings*sectors,)``, both **float16**. The masks are a fixed function
    of the geometry: with a non-default ``sector_fill`` a loaded checkpoint's masks are replaced by
    this module's own, so the option stays in effect.

    Options: ``antialias`` (default False) for the resize. The original calls
    ``torchvision.transforms.Resize`` without pinning it, whose tensor default changed from off to
    on in torchvision 0.17; False matches the torchvision of the paper (2023). ``pad_radius=True``
    also reflect-pads the ring axis by one row on each side, as the Brain-Score copy of the model
    (``resnet50_primary_visual_cortex``) does; the GitHub code does not.
    """

    def __init__(
        self,
        input_size: int = 32,
        output_size: int = 16,
        radius_edges: Sequence[float] = RADIUS_EDGES,
        n_sectors: int = N_SECTORS,
        sector_fill: str = "stretch",
        antialias: bool = False,
        pad_radius: bool = False,
    ):
        super().__init__()
        self.input_size = input_size
        self.output_size = output_size
        self.n_rings = len(radius_edges) - 1
        self.n_sectors = n_sectors
        self.sector_fill = sector_fill
        self.antialias = antialias
        self.pad_radius = pad_radius
        masks, counts = polar_pooling_masks(input_size, radius_edges, n_sectors, sector_fill)
        self.register_buffer("pooling_masks", masks.half())
        self.register_buffer("pooling_mask_counts", counts.half())

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, size, size) -> (N, C, rings, sectors)`` weighted means."""
        n, c, h, w = x.shape
        if (h, w) != (self.input_size, self.input_size):
            raise ConfigError(
                f"PolarTransform expects {self.input_size}x{self.input_size} maps, got {h}x{w}; "
                "V1-ResNet models run only at their 64x64 input size"
            )
        masks = self.pooling_masks.reshape(-1, h * w).to(x.dtype)
        pooled = torch.matmul(x.reshape(n * c, h * w), masks.t())
        pooled = pooled / self.pooling_mask_counts.to(pooled.dtype)
        return pooled.view(n, c, self.n_rings, self.n_sectors)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(x)
        pad = (1, 1, 1, 1) if self.pad_radius else (1, 1, 0, 0)
        pooled = F.pad(pooled, pad, mode="reflect")
        return F.interpolate(pooled, size=(self.output_size, self.output_size), mode="bilinear",
                             align_corners=False, antialias=self.antialias)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if self.sector_fill != "stretch":
            for name in ("pooling_masks", "pooling_mask_counts"):
                key = prefix + name
                if key in state_dict and tuple(state_dict[key].shape) == tuple(getattr(self, name).shape):
                    state_dict[key] = getattr(self, name).clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return (f"{self.input_size} -> {self.output_size}, rings={self.n_rings}, sectors={self.n_sectors}, "
                f"sector_fill={self.sector_fill!r}, antialias={self.antialias}, pad_radius={self.pad_radius}")
