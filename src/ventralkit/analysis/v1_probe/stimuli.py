"""Sine-grating stimuli for in-silico V1 electrophysiology.

Geometry. The model's input image spans ``visual_degrees`` of visual angle (Brain-Score's default
for a model is 8 degrees), so ``image_size / visual_degrees`` pixels make one degree and a spatial
frequency in cycles per degree becomes a frequency in cycles per pixel. Coordinates are in degrees
from the image centre, x to the right and y downwards (image rows).

A grating of orientation ``theta`` (degrees) has its luminance modulated along the unit vector
``(cos theta, sin theta)``: ``theta = 0`` gives vertical bars, ``theta = 90`` horizontal bars.
This is the convention of the Marques et al. (2021) stimulus generator, so preferred orientations
can be compared with the published histograms binned the same way.

Luminance in [0, 1]: ``0.5 + 0.5 * contrast * sin(2 pi sf (x cos theta + y sin theta) + phase)``
inside a circular aperture of the given radius (grey, 0.5, outside); ``radius=None`` is a full-field
grating. Pixels are area-averaged analytically (the sinusoid is multiplied by
``sinc(fx) * sinc(fy)``, fx/fy in cycles per pixel, and the aperture edge gets a one-pixel linear
ramp), and a grating at or beyond the grid's Nyquist limit (|fx| or |fy| >= 0.5) is left out (grey), so high
spatial frequencies are attenuated and never alias to coarser gratings. Images are then normalised with the
model's mean/std, all three channels equal.

Resolution limit. A model whose input has ``ppd`` pixels per degree can represent gratings only below
``ppd / 2`` cycles/degree (its Nyquist frequency) at every orientation, so ``limit_to_resolution``
drops the frequencies at or above it from every set before the probe draws anything: otherwise the
spatial-frequency curve would run on into grey images and its cut-offs would measure the pixel grid,
not the model. The limit is strict: a grating exactly at Nyquist falls on the pixel centres at one
phase as all zeros and at another as a full-contrast checker of +-1 pixels, so its contrast would
depend on the phase, an artefact of sampling.

The benchmark stimulus sets follow (``docs/reference/ecosystem.md`` section 7.1, from the
Marques2020 stimulus packaging in brain-score/vision): 12 orientations (0-165 deg), 8 phases
(0-315 deg), 22 log-spaced spatial frequencies 2**-1.375 ... 2**3.875 cpd, 12 log-spaced radii
2**-2.25/2 ... 2**3.25/2 deg, contrast 1. A contrast series (not part of that benchmark) is added
by the probe at each unit's preferred orientation and spatial frequency.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from typing import Iterator, Sequence

import numpy as np
import torch

#: 12 orientations, degrees
ORIENTATIONS = tuple(float(o) for o in range(0, 180, 15))
#: 8 phases, degrees (a drifting grating sampled at 8 positions)
PHASES = tuple(float(p) for p in range(0, 360, 45))
#: 22 spatial frequencies, cycles/degree, 0.39 ... 14.7
SPATIAL_FREQUENCIES = tuple(float(2.0 ** e) for e in np.arange(-1.375, 3.875 + 1e-9, 0.25))
#: 12 radii, degrees, 0.105 ... 4.76
RADII = tuple(float(2.0 ** e / 2) for e in np.arange(-2.25, 3.25 + 1e-9, 0.5))
#: the four spatial frequencies of the orientation and size sets (0.77, 1.54, 3.08, 6.17 cpd)
SET_SPATIAL_FREQUENCIES = tuple(SPATIAL_FREQUENCIES[i] for i in (4, 8, 12, 16))
#: contrast series used for the contrast response function (ventralkit's addition)
CONTRASTS = (0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0)

GREY = 0.5


@dataclass(frozen=True)
class StimulusConfig:
    """Which gratings the probe shows. The defaults reproduce the Marques et al. (2021) grids.

    ``orientation_cycles``: the orientation set's aperture radius is ``k / (2 sf)`` for each k, i.e.
    k cycles of the grating across the aperture's diameter.
    """

    visual_degrees: float = 8.0
    orientations: tuple[float, ...] = ORIENTATIONS
    phases: tuple[float, ...] = PHASES
    # orientation set: orientations x phases x (sf, radius = k / (2 sf)) conditions
    orientation_sfs: tuple[float, ...] = SET_SPATIAL_FREQUENCIES
    orientation_cycles: tuple[float, ...] = (2.0, 3.0, 4.0)
    # spatial-frequency set
    spatial_frequencies: tuple[float, ...] = SPATIAL_FREQUENCIES
    sf_orientations: tuple[float, ...] = tuple(float(o) for o in range(0, 180, 30))
    sf_radii: tuple[float, ...] = (0.75, 2.25)
    # size set
    radii: tuple[float, ...] = RADII
    size_sfs: tuple[float, ...] = SET_SPATIAL_FREQUENCIES
    size_orientations: tuple[float, ...] = tuple(float(o) for o in range(0, 180, 30))
    # contrast series (at each unit's preferred orientation-set condition)
    contrasts: tuple[float, ...] = CONTRASTS
    contrast_phases: tuple[float, ...] = (0.0, 90.0, 180.0, 270.0)

    @classmethod
    def quick(cls, visual_degrees: float = 8.0) -> "StimulusConfig":
        """About 1/6 of the stimuli: 4 phases (2 for contrast), one radius per SF condition, half the SFs,
        2 SFs x 4 orientations for size, 4 contrasts."""
        return cls(
            visual_degrees=visual_degrees,
            phases=(0.0, 90.0, 180.0, 270.0),
            orientation_cycles=(3.0,),
            spatial_frequencies=SPATIAL_FREQUENCIES[::2],
            sf_radii=(2.25,),
            size_sfs=SET_SPATIAL_FREQUENCIES[1:3],
            size_orientations=(0.0, 45.0, 90.0, 135.0),
            contrasts=(0.04, 0.12, 0.35, 1.0),
            contrast_phases=(0.0, 180.0),
        )

    def with_options(self, **kw) -> "StimulusConfig":
        return replace(self, **{k: v for k, v in kw.items() if v is not None})


@dataclass
class StimulusSet:
    """A grid of gratings: the product of ``axes``, each a list of parameter dicts.

    Images are enumerated in C order over the axes (the last axis varies fastest), so a response
    vector over the set reshapes to ``(*self.shape)``. Parameters not set by any axis come from
    ``defaults`` (contrast 1, full field, centred).
    """

    name: str
    axes: list[tuple[str, list[dict]]]
    defaults: dict = field(default_factory=lambda: {"contrast": 1.0, "radius": float("inf"), "phase": 0.0,
                                                    "x": 0.0, "y": 0.0})

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for _, v in self.axes)

    @property
    def axis_names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.axes)

    def __len__(self) -> int:
        return int(np.prod(self.shape)) if self.axes else 1

    def axis_values(self, axis: str, key: str | None = None) -> np.ndarray:
        """The values of parameter ``key`` (default: the axis name) along ``axis``."""
        for name, values in self.axes:
            if name == axis:
                return np.array([v[key or axis] for v in values], dtype=float)
        raise KeyError(axis)

    def params(self) -> dict[str, np.ndarray]:
        """Per-image parameters, each an array of length ``len(self)``."""
        rows = []
        for combo in itertools.product(*(values for _, values in self.axes)):
            p = dict(self.defaults)
            for d in combo:
                p.update(d)
            rows.append(p)
        keys = ("orientation", "sf", "phase", "contrast", "radius", "x", "y")
        return {k: np.array([r.get(k, np.nan) for r in rows], dtype=float) for k in keys}

    def render(self, image_size: int, visual_degrees: float, mean=(0.5,) * 3, std=(0.5,) * 3,
               batch_size: int = 64, device="cpu") -> Iterator[torch.Tensor]:
        """Yield normalised image batches ``(B, 3, image_size, image_size)``."""
        p = self.params()
        n = len(self)
        for start in range(0, n, batch_size):
            sl = slice(start, min(n, start + batch_size))
            yield render_gratings(
                {k: v[sl] for k, v in p.items()}, image_size, visual_degrees, mean=mean, std=std, device=device
            )


#: the spatial-frequency fields of ``StimulusConfig`` and the stimulus set each one feeds
SF_FIELDS = {"spatial_frequencies": "spatial-frequency set", "orientation_sfs": "orientation set",
             "size_sfs": "size set"}


@dataclass(frozen=True)
class FrequencyLimit:
    """The highest spatial frequency a model's input can represent, and the grating frequencies left out.

    ``nyquist_cpd`` = ``pixels_per_degree / 2``; a frequency is kept only if strictly below it (see the
    module docstring). ``dropped`` maps each ``SF_FIELDS`` name to the frequencies removed from it.
    """

    image_size: int
    visual_degrees: float
    dropped: dict[str, tuple[float, ...]]
    kept: dict[str, tuple[float, ...]]

    @property
    def pixels_per_degree(self) -> float:
        return self.image_size / self.visual_degrees

    @property
    def nyquist_cpd(self) -> float:
        return self.pixels_per_degree / 2.0

    def record(self) -> dict:
        """What ``run.json`` keeps under ``spatial_frequency_limit``."""
        return {"pixels_per_degree": round(self.pixels_per_degree, 6), "nyquist_cpd": round(self.nyquist_cpd, 6),
                "rule": "gratings drawn only below nyquist_cpd = pixels_per_degree / 2 (strictly: at Nyquist the "
                        "sampled contrast depends on the phase)",
                "dropped_cpd": {k: [round(f, 4) for f in v] for k, v in self.dropped.items()}}

    def message(self) -> str | None:
        """One line for the user when frequencies were left out (None when every grating is drawn)."""
        every = sorted(f for v in self.dropped.values() for f in v)
        if not every:
            return None
        counts = "; ".join(f"{len(v)} of the {SF_FIELDS[k]}'s {len(v) + len(self.kept[k])}"
                           for k, v in self.dropped.items() if v)
        span = f"{every[0]:.3g}" if every[0] == every[-1] else f"{every[0]:.3g}-{every[-1]:.3g}"
        return (f"{self.image_size} px over {self.visual_degrees:g} deg is {self.pixels_per_degree:.3g} px/deg, "
                f"which can represent gratings only below {self.nyquist_cpd:.3g} cycles/deg (Nyquist): left out "
                f"those at {span} cycles/deg ({counts}; listed in run.json), so spatial-frequency tuning is "
                f"measured below {self.nyquist_cpd:.3g} cycles/deg only")


def limit_to_resolution(cfg: StimulusConfig, image_size: int) -> tuple[StimulusConfig, FrequencyLimit]:
    """``cfg`` without the spatial frequencies at or above the input's Nyquist frequency, and what was dropped.

    Raises a one-line ``ConfigError`` with the smallest ``--imsize`` that keeps one frequency in each
    set when a set would be left without any.
    """
    from ...errors import ConfigError

    nyquist = image_size / cfg.visual_degrees / 2.0
    kept, dropped, empty = {}, {}, []
    for name, label in SF_FIELDS.items():
        values = tuple(getattr(cfg, name))
        kept[name] = tuple(f for f in values if f < nyquist)
        dropped[name] = tuple(f for f in values if f >= nyquist)
        if values and not kept[name]:
            empty.append((min(values), label))
    if empty:
        lowest, label = max(empty)  # the set whose lowest frequency needs the finest pixels
        need = math.floor(2.0 * cfg.visual_degrees * lowest) + 1  # smallest size with lowest < size / (2 deg)
        degrees = math.floor(image_size / (2.0 * lowest) * 100 - 1e-9) / 100  # 2 decimals, rounded down
        raise ConfigError(
            f"--imsize {image_size} over {cfg.visual_degrees:g} deg can represent gratings only below {nyquist:.3g} "
            f"cycles/deg (Nyquist), and the {label}'s lowest is {lowest:.3g} cycles/deg: give --imsize {need} or more "
            f"(or --visual_degrees {degrees:g} or less)")
    return replace(cfg, **kept), FrequencyLimit(int(image_size), float(cfg.visual_degrees), dropped, kept)


def _grid(image_size: int, visual_degrees: float, device, dtype) -> tuple[torch.Tensor, torch.Tensor, float]:
    ppd = image_size / float(visual_degrees)  # pixels per degree
    c = (torch.arange(image_size, device=device, dtype=dtype) + 0.5 - image_size / 2) / ppd
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return xx, yy, ppd


def grating_luminance(params: dict, image_size: int, visual_degrees: float, device="cpu",
                      dtype=torch.float64) -> torch.Tensor:
    """Luminance images in [0, 1], shape ``(B, H, W)``, for arrays of grating parameters.

    ``params`` holds equal-length arrays ``orientation`` (deg), ``sf`` (cycles/deg), ``phase`` (deg),
    ``contrast`` (0-1), ``radius`` (deg, ``inf`` = full field) and optionally ``x``/``y`` (centre, deg).
    """
    xx, yy, ppd = _grid(image_size, visual_degrees, device, dtype)

    def col(key, default):
        v = params.get(key)
        v = np.full(len(params["orientation"]), default, float) if v is None else np.asarray(v, float)
        return torch.as_tensor(v, dtype=dtype, device=device).view(-1, 1, 1)

    theta = torch.deg2rad(col("orientation", 0.0))
    sf = col("sf", 1.0)
    phase = torch.deg2rad(col("phase", 0.0))
    contrast = col("contrast", 1.0)
    radius = col("radius", float("inf"))
    x0, y0 = col("x", 0.0), col("y", 0.0)
    dx, dy = xx - x0, yy - y0
    cos, sin = torch.cos(theta), torch.sin(theta)
    wave = torch.sin(2 * math.pi * sf * (dx * cos + dy * sin) + phase)
    # pixel-area average of a sinusoid = sinusoid x sinc of its frequency in cycles/pixel along x and y;
    # a component beyond the pixel grid's Nyquist limit (0.5 cycles/pixel) would alias to a coarser
    # grating, so it is removed, as an ideal anti-aliasing filter would (the image is then grey there);
    fx, fy = sf * cos / ppd, sf * sin / ppd
    # removed too exactly at Nyquist, where the sampled contrast would depend on the phase
    attenuation = torch.sinc(fx) * torch.sinc(fy) * ((fx.abs() < 0.5) & (fy.abs() < 0.5))
    # aperture with a one-pixel linear edge (approximate pixel coverage)
    dist_px = torch.sqrt(dx * dx + dy * dy) * ppd
    mask = torch.clamp(radius * ppd - dist_px + 0.5, 0.0, 1.0)
    mask = torch.where(torch.isinf(radius), torch.ones_like(mask), mask)
    return GREY + 0.5 * contrast * attenuation * wave * mask


def render_gratings(params: dict, image_size: int, visual_degrees: float, mean=(0.5,) * 3, std=(0.5,) * 3,
                    device="cpu", dtype=torch.float32) -> torch.Tensor:
    """Model-ready tensors ``(B, 3, H, W)``: grating luminance normalised per channel by ``mean``/``std``."""
    lum = grating_luminance(params, image_size, visual_degrees, device=device, dtype=dtype)
    m = torch.as_tensor(mean, dtype=dtype, device=device).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=dtype, device=device).view(1, 3, 1, 1)
    return (lum.unsqueeze(1).expand(-1, 3, -1, -1) - m) / s


def grating(orientation: float, sf: float, phase: float = 0.0, contrast: float = 1.0,
            radius: float | None = None, diameter: float | None = None, image_size: int = 224,
            visual_degrees: float = 8.0, position: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """One grating as a luminance image in [0, 1] (``H x W`` float array).

    ``orientation`` and ``phase`` in degrees, ``sf`` in cycles/degree, ``radius`` or ``diameter`` in
    degrees (neither: full field), ``position`` = (x, y) of the aperture centre in degrees.
    """
    if radius is not None and diameter is not None:
        raise ValueError("give radius or diameter, not both")
    r = diameter / 2 if diameter is not None else (float("inf") if radius is None else radius)
    p = {"orientation": [orientation], "sf": [sf], "phase": [phase], "contrast": [contrast], "radius": [r],
         "x": [position[0]], "y": [position[1]]}
    return grating_luminance(p, image_size, visual_degrees)[0].numpy()


def blank_image(image_size: int, mean=(0.5,) * 3, std=(0.5,) * 3, dtype=torch.float32) -> torch.Tensor:
    """The grey screen (spontaneous activity), normalised, shape ``(1, 3, H, W)``."""
    return render_gratings({"orientation": [0.0], "contrast": [0.0]}, image_size, 1.0, mean, std, dtype=dtype)


def _axis(name: str, values: Sequence[float], key: str | None = None) -> tuple[str, list[dict]]:
    return name, [{key or name: float(v)} for v in values]


def orientation_set(cfg: StimulusConfig) -> StimulusSet:
    """Orientation set: (sf, radius = k / (2 sf)) conditions x orientations x phases (Marques 2021).

    Default 12 conditions x 12 orientations x 8 phases = 1,152 images.
    """
    conds = [{"sf": sf, "radius": k / (2.0 * sf)} for sf in cfg.orientation_sfs for k in cfg.orientation_cycles]
    return StimulusSet("orientation", [("condition", conds), _axis("orientation", cfg.orientations),
                                       _axis("phase", cfg.phases)])


def spatial_frequency_set(cfg: StimulusConfig) -> StimulusSet:
    """Spatial-frequency set: radii x SFs x orientations x phases (default 2 x 22 x 6 x 8 = 2,112)."""
    return StimulusSet("spatial_frequency", [_axis("radius", cfg.sf_radii), _axis("sf", cfg.spatial_frequencies),
                                             _axis("orientation", cfg.sf_orientations), _axis("phase", cfg.phases)])


def size_set(cfg: StimulusConfig) -> StimulusSet:
    """Size set: radii x SFs x orientations x phases (default 12 x 4 x 6 x 8 = 2,304)."""
    return StimulusSet("size", [_axis("radius", cfg.radii), _axis("sf", cfg.size_sfs),
                                _axis("orientation", cfg.size_orientations), _axis("phase", cfg.phases)])


def contrast_set(conditions: Sequence[dict], cfg: StimulusConfig) -> StimulusSet:
    """Contrast series for a list of grating conditions (dicts with orientation, sf, radius)."""
    conds = [{k: float(c[k]) for k in ("orientation", "sf", "radius")} for c in conditions]
    return StimulusSet("contrast", [("condition", conds), _axis("contrast", cfg.contrasts),
                                    _axis("phase", cfg.contrast_phases)])


def benchmark_sets(cfg: StimulusConfig | None = None) -> dict[str, StimulusSet]:
    """The three grating sets of the benchmark: orientation, spatial frequency, size."""
    cfg = cfg or StimulusConfig()
    return {"orientation": orientation_set(cfg), "spatial_frequency": spatial_frequency_set(cfg),
            "size": size_set(cfg)}
