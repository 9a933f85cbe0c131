"""Which recording time each time step of a recurrent model stands for: Brain-Score's temporal commitment.

A recurrent model's area runs several times per image (CORnet-S: V2 twice, V4 four times, IT twice);
recordings come in time bins after stimulus onset. Brain-Score's CORnet-S plugin commits each time step
of an area to a window of the recording and, asked for a time bin, answers with the time step whose
window starts nearest the bin's start. The numbers (``brainscore_vision/models/cornet_s/model.py``,
``TIME_MAPPINGS``; expanded by ``_build_time_mappings`` in ``helpers/helpers.py``; docs/reference/time_bins.md)
are (first window's start in ms, window width in ms, time steps)::

    V1 (50, 100, 1):  t0 50-150
    V2 (70, 100, 2):  t0 70-170,  t1 170-270
    V4 (90, 50, 4):   t0 90-140,  t1 140-190, t2 190-240, t3 240-290
    IT (100, 100, 2): t0 100-200, t1 200-300

Brain-Score defines this for CORnet-S only; other models (and CORnet-S100, a ventralkit variant) have no
default: their time steps are scored against every bin and the best one per bin is reported instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .registry import canonical_name

#: model -> area -> (first window's start ms, window width ms, time steps): Brain-Score's CORnet-S plugin
TIME_MAPPINGS: dict[str, dict[str, tuple[int, int, int]]] = {
    "cornet_s": {"V1": (50, 100, 1), "V2": (70, 100, 2), "V4": (90, 50, 4), "IT": (100, 100, 2)},
}
SOURCE = "Brain-Score CORnet-S plugin (brainscore_vision/models/cornet_s/model.py TIME_MAPPINGS)"


def time_windows(model: str | None, area: str | None) -> dict[int, tuple[float, float]] | None:
    """Time step -> (start, end) ms of ``area`` in ``model``'s default mapping; None when it has none."""
    if not model or not area:
        return None
    spec = TIME_MAPPINGS.get(canonical_name(model), {}).get(area)
    if spec is None:
        return None
    start, width, steps = spec
    return {k: (float(start + k * width), float(start + (k + 1) * width)) for k in range(steps)}


def nearest_time_step(windows: dict[int, tuple[float, float]], bin_start: float) -> int:
    """The time step whose window starts nearest ``bin_start`` (the earliest one on a tie), as Brain-Score picks."""
    steps = sorted(windows)
    starts = np.array([windows[k][0] for k in steps])
    return steps[int(np.argmin(np.abs(starts - float(bin_start))))]


def steps_for_bins(windows: dict[int, tuple[float, float]], bins: Sequence[tuple[float, float]]) -> list[int]:
    """The committed time step of each (start, end) bin."""
    return [nearest_time_step(windows, b[0]) for b in bins]
