"""Corruption names, groups and severities of ImageNet-C (Hendrycks & Dietterich, ICLR 2019).

The canonical order (noise, blur, weather, digital, then the four held-out extras) is the one of
Hendrycks' ``ImageNet-C/test.py`` and of ``imagecorruptions.get_corruption_names('all')``.
The V1-ResNet Tiny-ImageNet-C script writes its CSV rows in a different order, kept here so our CSV
matches it row for row.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from ..errors import ConfigError

GROUPS: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
    "extra": ("speckle_noise", "gaussian_blur", "spatter", "saturate"),
}

#: the 15 corruptions that mCE averages over
BENCHMARK = GROUPS["noise"] + GROUPS["blur"] + GROUPS["weather"] + GROUPS["digital"]
#: the 4 held-out corruptions (reported, never part of mCE)
EXTRA = GROUPS["extra"]
ALL = BENCHMARK + EXTRA

#: group aliases accepted wherever a list of corruptions is asked for
ALIASES: dict[str, tuple[str, ...]] = {
    "all": ALL,
    "benchmark": BENCHMARK,
    "common": BENCHMARK,  # imagecorruptions' name for the 15
    "validation": EXTRA,  # imagecorruptions' name for the 4 extras
    **GROUPS,
}

#: row order of eval/tiny_imagenet_c_eval.py (docs/reference/v1_resnet.md section 5); extras follow it
ORIGINAL_CSV_ORDER = (
    "brightness", "defocus_blur", "fog", "gaussian_noise", "impulse_noise", "motion_blur",
    "shot_noise", "zoom_blur", "contrast", "elastic_transform", "frost", "glass_blur",
    "jpeg_compression", "pixelate", "snow",
    "gaussian_blur", "saturate", "spatter", "speckle_noise",
)

SEVERITIES = (1, 2, 3, 4, 5)


def group_of(name: str) -> str:
    for group, members in GROUPS.items():
        if name in members:
            return group
    raise KeyError(name)


def resolve_corruptions(names: Iterable[str] | str | None) -> list[str]:
    """Corruption names (or group aliases such as ``noise``, ``extra``, ``all``) -> canonical list.

    The result follows the canonical order and has no duplicates; an unknown name is a ConfigError.
    """
    if names is None:
        return list(ALL)
    if isinstance(names, str):
        names = [names]
    chosen: set[str] = set()
    for raw in names:
        for name in str(raw).replace(",", " ").split():
            key = name.strip().lower().replace("-", "_")
            if key in ALIASES:
                chosen.update(ALIASES[key])
            elif key in ALL:
                chosen.add(key)
            else:
                close = difflib.get_close_matches(key, list(ALL) + list(ALIASES), n=3, cutoff=0.6)
                hint = (f"did you mean {', '.join(close)}?" if close
                        else f"choose from {', '.join(ALL)} or a group ({', '.join(ALIASES)})")
                raise ConfigError(f"unknown corruption {name!r}: {hint}")
    if not chosen:
        raise ConfigError("no corruption given; pass names such as gaussian_noise or a group such as all")
    return [c for c in ALL if c in chosen]


def resolve_severities(severities: Iterable[int] | int | None) -> list[int]:
    """Sorted unique severities, each an integer in 1..5 (ConfigError otherwise)."""
    if severities is None:
        return list(SEVERITIES)
    if isinstance(severities, (int, str)):
        severities = [severities]
    out: set[int] = set()
    for s in severities:
        try:
            value = int(s)
            if isinstance(s, float) and s != value:
                raise ValueError
        except (TypeError, ValueError):
            raise ConfigError(f"severity {s!r} is not an integer; severities are 1, 2, 3, 4, 5") from None
        if value not in SEVERITIES:
            raise ConfigError(f"severity {value} is outside 1..5; severities are 1, 2, 3, 4, 5")
        out.add(value)
    if not out:
        raise ConfigError("no severity given; severities are 1, 2, 3, 4, 5")
    return sorted(out)
