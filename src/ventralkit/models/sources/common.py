"""What every model source gives a built module: its ``ModelInfo`` (areas, preprocessing, provenance).

A source (torchvision, timm, a user's file or module) builds an ``nn.Module``; ``finish`` turns it into a
ventralkit model: the interface (``adapt.adopt``), ``info.areas`` (Brain-Score's published commitment where
there is one, else the stages labelled ``stage1`` ... ``stageN``), ``info.extra["preprocessing"]`` (how the
weights were trained to be fed: ``native_preprocessing`` reads it) and ``info.extra["source"]`` (the
provenance every ``run.json`` and ``config.json`` records: library and version, weights name, file, sha256).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch.nn as nn

from ..preprocessing import Preprocessing
from ..registry import ModelInfo
from .adapt import adopt, classifier_outputs, find_classifier
from .stages import default_stages


@dataclass
class SourceRecord:
    """Where a model from elsewhere came from: enough to rebuild it and to compare two runs."""

    spec: str  # torchvision:resnet18, timm:resnet18.a1_in1k, /abs/path/nets.py:build, python:Net
    library: str  # torchvision | timm | file | python
    library_version: str | None = None
    weights: str | None = None  # the weights' name (IMAGENET1K_V1, a1_in1k), None = as built (random init)
    weights_url: str | None = None
    weights_file: str | None = None
    weights_sha256: str | None = None
    preprocessing_from: str = ""  # what the preprocessing was read from
    commitment: dict | None = None  # Brain-Score's published region -> layer map, with its source
    code_sha256: str | None = None  # a factory file's (file.py:factory): the code that built the model
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def stage_areas(model: nn.Module, input_size: int, classifier: str | None) -> dict[str, str]:
    """``stage1`` ... ``stageN`` -> module name (``stages.default_stages``)."""
    return {f"stage{i + 1}": name for i, name in enumerate(default_stages(model, input_size, classifier))}


def finish(model: nn.Module, record: SourceRecord, pre: Preprocessing, *, family: str,
           classifier: str | None = None, areas: dict[str, str] | None = None, description: str = "") -> nn.Module:
    """``model`` with the ventralkit interface and a ``ModelInfo`` (see the module docstring); in place."""
    if classifier is None:
        classifier = find_classifier(model) or ""
    head = model.get_submodule(classifier) if classifier else None
    stages = stage_areas(model, pre.image_size, classifier)
    if areas is None:
        areas = dict(record.commitment["areas"]) if record.commitment else dict(stages)
    info = ModelInfo(name=record.spec, family=family, num_classes=classifier_outputs(head),
                     input_size=pre.image_size, mean=pre.mean, std=pre.std, areas=dict(areas),
                     time_steps=dict.fromkeys(areas, 1), description=description,
                     extra={"source": record.to_dict(), "stages": stages, "preprocessing": pre.to_dict()})
    adopt(model, info, classifier)
    model.preprocessing = pre
    return model


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a weights file: the one the weights folder already recorded for it (``download``,
    when that module knows the file), else hashed here in 1 MiB reads."""
    try:
        from ..download import known_sha256  # the weights folder's records (same size and time: not rehashed)

        known = known_sha256(path)
        if known:
            return known
    except (ImportError, OSError, ValueError):
        pass
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def offline() -> bool:
    """``VENTRALKIT_OFFLINE``: never touch the network (the weights folder's rule, ``download.offline``)."""
    try:
        from ..download import offline as weights_offline
    except ImportError:
        return os.environ.get("VENTRALKIT_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return weights_offline()


def download_timeout() -> float:
    """Seconds a download may wait at any one read (the weights folder's setting, ``download.timeout_s``)."""
    try:
        from ..download import timeout_s
    except ImportError:
        return 60.0
    return timeout_s()


def close_names(name: str, names, n: int = 5) -> str:
    """``" (did you mean a, b?)"`` for the names closest to ``name``, or ``""``."""
    import difflib

    close = difflib.get_close_matches(name, list(names), n=n, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def existing_file(path: str | os.PathLike) -> Path | None:
    p = Path(path)
    return p if p.is_file() else None
