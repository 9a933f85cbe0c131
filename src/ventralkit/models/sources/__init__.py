"""Models from elsewhere as ventralkit models: ``torchvision:NAME``, ``timm:NAME``, ``file.py:factory``, ``wrap``.

``build_source`` turns a spec (``model_spec``) into a module with ventralkit's interface, ``info`` (areas,
native preprocessing, provenance in ``info.extra["source"]``) and ``preprocessing``; ``models.loading.
load_model`` calls it, so every command and the Python API take these models as they take registered ones.
``source_info`` gives the ``ModelInfo`` before the weights are loaded (``train`` prepares its data first).
Each library is imported only when one of its models is asked for (timm only for ``timm:``).
"""

from __future__ import annotations

import dataclasses

import torch.nn as nn

from ...errors import ConfigError
from ..model_spec import is_source_spec, parse_spec
from .user import wrap

__all__ = ["build_source", "source_info", "list_source_models", "wrap", "is_source_spec", "SOURCES"]

#: what ``ventralkit models --source`` can list
SOURCES = ("torchvision", "timm")


def build_source(spec: str, *, weights: str | None = None, num_classes: int | None = None) -> nn.Module:
    """The model a source spec names; ``weights``: None = random initialisation (a file's factory: as built),
    ``"DEFAULT"`` = the library's default pretrained weights, or a weights name of that library."""
    parsed = parse_spec(spec)
    if parsed.kind == "torchvision":
        from . import torchvision_source

        return torchvision_source.build(parsed.name, weights, num_classes)
    if parsed.kind == "timm":
        from . import timm_source

        return timm_source.build(parsed.name, weights, num_classes)
    if parsed.kind == "file":
        if weights is not None:
            raise ConfigError(f"--weights applies to torchvision and timm models; {spec} builds its own weights "
                              "(pass a checkpoint with --ckpt_path)")
        from . import user

        return user.build(parsed.path, parsed.name, num_classes)
    raise ConfigError(f"{spec} is a registered model, not a source spec")


_INFO_CACHE: dict[tuple, object] = {}


def source_info(spec: str, weights: str | None = None):
    """The ``ModelInfo`` of a source model with these weights, without loading weights: the architecture is
    built (randomly initialised; a file's factory runs), which for torchvision and timm downloads nothing.
    Cached per (spec, weights), since ``train`` asks before it builds the model."""
    key = (spec, weights)
    if key not in _INFO_CACHE:
        parsed = parse_spec(spec)
        info = build_source(spec).info  # random weights (a file: as its factory builds them)
        if weights is not None and parsed.kind != "file":  # the weights' own preprocessing, read without a download
            pre = _weights_pre(parsed, weights)
            info = dataclasses.replace(info, input_size=pre["image_size"], mean=tuple(pre["mean"]),
                                       std=tuple(pre["std"]), extra={**info.extra, "preprocessing": pre})
        _INFO_CACHE[key] = info
    return _INFO_CACHE[key]


def _weights_pre(parsed, weights: str) -> dict:
    if parsed.kind == "torchvision":
        from .torchvision_source import resolve_weights, weights_preprocessing

        return weights_preprocessing(resolve_weights(parsed.name, weights)).to_dict()
    from .timm_source import config_preprocessing, import_timm, model_name

    timm = import_timm()
    full, _ = model_name(parsed.name, weights)
    cfg = timm.data.resolve_data_config(pretrained_cfg=timm.models.get_pretrained_cfg(full).to_dict())
    return config_preprocessing(cfg, full).to_dict()


def list_source_models(source: str, pattern: str = "*") -> list[str]:
    """Model names of ``source`` (torchvision | timm) matching a shell-style pattern; nothing is built."""
    if source == "torchvision":
        from .torchvision_source import list_names

        return list_names(pattern)
    if source == "timm":
        from .timm_source import list_names

        return list_names(pattern)
    raise ConfigError(f"--source must be one of {', '.join(SOURCES)}, got {source!r}")


def refuse_unnamed_code(saved: str | None, given: str | None, where: str) -> None:
    """A checkpoint or config naming a Python file's factory runs that file: only when the user names it too."""
    if saved and given is None and is_source_spec(saved) and parse_spec(saved).runs_code:
        from ...errors import CheckpointError

        raise CheckpointError(f"{where} holds a model built by {saved}, which runs that Python file; to run it, name "
                              f"it yourself: --model {saved}")


def load_source(spec: str, *, weights: str | None, pretrained: bool, num_classes: int | None,
                reset_classifier: bool, state: dict | None, file_classes: int | None,
                model_kwargs: dict | None = None) -> nn.Module:
    """The source model ``load_model`` asked for, with a classifier that fits the checkpoint ``state`` (if any).

    ``weights`` (or ``pretrained``: the library's default weights) are the library's; a checkpoint's tensors
    replace them, so a model loaded from a checkpoint is built randomly initialised (nothing downloaded)."""
    if model_kwargs:
        raise ConfigError(f"--model {spec}: model options ({', '.join(model_kwargs)}) apply to registered models only")
    if state is not None and (weights is not None or pretrained):
        raise ConfigError("give --weights / --pretrained or --ckpt_path, not both: the checkpoint holds the weights")
    if weights is None and pretrained:
        weights = "DEFAULT"
    wanted = file_classes if state is not None else (None if reset_classifier else num_classes)
    if reset_classifier and state is None and weights is None:
        wanted = num_classes  # random weights: build the new classifier straight away
    model = build_source(spec, weights=weights, num_classes=wanted)
    rows = _classifier_rows(model, state) if state is not None else None
    if rows and rows != model.info.num_classes:  # a plain state dict with another head than the default
        model.reset_classifier(rows)
    if (state is None and wanted is not None and not reset_classifier
            and model.info.num_classes not in (0, wanted)):
        raise ConfigError(f"--model {spec} built a model scoring {model.info.num_classes} classes, not {wanted}; add "
                          "--reset_classifier (a new classifier), or let its factory take num_classes")
    return model


def _classifier_rows(model: nn.Module, state: dict) -> int | None:
    weight = state.get(f"{getattr(model, 'classifier_name', '')}.weight")
    return int(weight.shape[0]) if hasattr(weight, "shape") and weight.dim() in (2, 4) else None


def model_info_for(name: str, weights: str | None = None):
    """``ModelInfo`` of a registered name or a source spec (``source_info``: with these weights' preprocessing)."""
    from ..registry import canonical_name, model_info

    name = canonical_name(name)
    return source_info(name, weights) if is_source_spec(name) else model_info(name)


def run_folder_name(name: str) -> str:
    """A model's name as a folder name: ``torchvision-resnet18``, ``nets-build`` for ``/x/nets.py:build``."""
    if not is_source_spec(name):
        return name
    parsed = parse_spec(name)
    if parsed.kind == "file":
        from pathlib import Path

        return f"{Path(parsed.path).stem}-{parsed.name}"
    return f"{parsed.kind}-{parsed.name}"
