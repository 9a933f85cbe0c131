"""Brain-area commitments: which module of a model stands for V1, V2, V4 and IT, and at which time steps.

One map, read from ``ModelInfo.areas`` and ``ModelInfo.time_steps`` (the registry), serves the V1
probe (its default layer), feature extraction (its default layers) and the Brain-Score adapter
(its region -> layer map), so the three can never disagree about what "V4" of a model is.
"""

from __future__ import annotations

from typing import NamedTuple

from .registry import canonical_name, model_info

#: the areas of the ventral stream a model can commit to, in processing order
BRAIN_AREAS = ("V1", "V2", "V4", "IT")


class AreaCommitment(NamedTuple):
    """The module a model commits to a brain area, and the time steps (call indices) it has there."""

    module: str
    time_steps: tuple[int, ...]


def _info(model_or_name):
    if isinstance(model_or_name, str):
        return model_info(canonical_name(model_or_name))
    return getattr(model_or_name, "info", None)


def area_commitments(model_or_name) -> dict[str, AreaCommitment]:
    """Brain area -> ``AreaCommitment(module, time_steps)`` for a registered name or a built model.

    The module names come from ``ModelInfo.areas`` (e.g. CORnet-S: ``V1 -> V1.output``), the number
    of time steps from ``ModelInfo.time_steps`` (1 when not given): CORnet-S gives
    ``V4 -> ("V4.output", (0, 1, 2, 3))``. Besides the four areas, ``decoder`` names the module whose
    output a behavioural read-out uses. A model without ``info`` (a plain ``nn.Module``) commits to nothing.
    """
    info = _info(model_or_name)
    if info is None:
        return {}
    areas = dict(getattr(info, "areas", {}) or {})
    steps = dict(getattr(info, "time_steps", {}) or {})
    return {a: AreaCommitment(m, tuple(range(int(steps.get(a, 1))))) for a, m in areas.items()}


def brainscore_layers(commitments: dict[str, AreaCommitment]) -> dict[str, list[str]]:
    """Area -> Brain-Score style layer names, one per time step (``V4.output-t0`` ... ``-t3``)."""
    return {a: [f"{c.module}-t{t}" for t in c.time_steps] for a, c in commitments.items()}
