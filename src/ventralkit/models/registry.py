"""One registry for every model family: ``register_model``, ``create_model``, ``list_models``.

A builder is a plain function returning an ``nn.Module``; the decorator attaches the metadata a
user needs to feed the model (input size, normalisation) and to probe it (which module commits to
which brain area, and how many time steps each area runs).
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from ..errors import ModelNotFoundError

if TYPE_CHECKING:  # only in annotations: the names and metadata are usable without importing torch
    import torch.nn as nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class WeightsFile:
    """An original published weight file: its file name in the weights folder and where to get it."""

    filename: str
    url: str


@dataclass(frozen=True)
class ModelInfo:
    """What a registered model expects and commits to. ``areas`` maps a brain area to a module name."""

    name: str
    family: str
    num_classes: int
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    areas: dict[str, str] = field(default_factory=dict)
    time_steps: dict[str, int] = field(default_factory=dict)
    weights: WeightsFile | None = None
    description: str = ""
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _Entry:
    builder: Callable[..., nn.Module]
    info: ModelInfo
    convert_state_dict: Callable[[dict], dict] | None


_REGISTRY: dict[str, _Entry] = {}


def register_model(
    name: str,
    *,
    family: str,
    num_classes: int,
    convert_state_dict: Callable[[dict], dict] | None = None,
    **info_fields,
):
    """Decorator: register ``builder(num_classes=..., **kwargs) -> nn.Module`` under ``name``.

    ``convert_state_dict`` maps a foreign checkpoint's keys onto this model's (e.g. micromind names).
    """

    def decorate(builder):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        info = ModelInfo(name=name, family=family, num_classes=num_classes, **info_fields)
        _REGISTRY[name] = _Entry(builder, info, convert_state_dict)
        return builder

    return decorate


def _ensure_families_loaded() -> None:
    from . import families  # noqa: F401  (importing registers every built-in family)


#: CORnet's one-letter names (``run.py --model S``), accepted wherever a registered name is
MODEL_ALIASES = {"Z": "cornet_z", "R": "cornet_r", "RT": "cornet_rt", "S": "cornet_s", "S100": "cornet_s100"}


def canonical_name(name: str) -> str:
    """The registered name for ``name`` or a CORnet letter (``"S"``, ``"rt"``); a source spec
    (``torchvision:NAME``, ``timm:NAME``, ``file.py:factory``: ``model_spec``) with a file's path made
    absolute; other names unchanged."""
    if ":" in name:
        from .model_spec import canonical_spec

        return canonical_spec(name)
    return MODEL_ALIASES.get(name, MODEL_ALIASES.get(name.upper(), name))


def _entry(name: str) -> _Entry:
    _ensure_families_loaded()
    name = canonical_name(name)
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=5, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}?" if close else "see `ventralkit models`."
        raise ModelNotFoundError(f"unknown model {name!r}: {hint}")
    return _REGISTRY[name]


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted."""
    _ensure_families_loaded()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def model_info(name: str) -> ModelInfo:
    """The static metadata of a registered model (before keyword arguments change it)."""
    return _entry(name).info


def state_dict_converter(name: str) -> Callable[[dict], dict] | None:
    return _entry(name).convert_state_dict


def build_model(name: str, num_classes: int | None = None, **kwargs) -> nn.Module:
    """A registered model with its initial weights and ``model.info`` (a ``ModelInfo`` adjusted to the kwargs).

    The family's builder only: weights from a file go through ``loading.load_model`` (or the public
    ``create_model``, which delegates to it), which reads the file first and builds the model through this.
    """
    entry = _entry(name)
    n_classes = entry.info.num_classes if num_classes is None else int(num_classes)
    model = entry.builder(num_classes=n_classes, **kwargs)
    model.info = dataclasses.replace(
        entry.info,
        num_classes=n_classes,
        time_steps=dict(getattr(model, "area_time_steps", entry.info.time_steps)),
    )
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
