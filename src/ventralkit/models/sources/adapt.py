"""Giving a module from elsewhere ventralkit's model interface, in place, without renaming a single layer.

A registered model offers ``forward_features``, ``forward_head``, ``get_classifier``, ``reset_classifier``
and carries ``info`` (``ModelInfo``). A torchvision, timm or user module becomes such a model by ``adopt``:
its class is swapped for a subclass that adds the ``SourceModelMixin`` methods the module lacks (a timm
model keeps its own), so its parameters, module names (``features.2``, ``layer4``) and outputs stay exactly
what the library defines: a layer name means the same in ventralkit, thingsvision and Brain-Score.

Where a module has no methods of its own, the classifier is its last ``nn.Linear`` (or a 1 x 1 ``Conv2d``
producing the class scores, SqueezeNet's), ``forward_features`` is what enters the classifier, and
``forward_head`` applies it: ``forward_head(forward_features(x))`` equals ``model(x)`` for the models whose
classifier is their last operation (every torchvision classification model).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from ...errors import ConfigError


def find_classifier(model: nn.Module) -> str | None:
    """The dotted name of the module that produces the class scores: the last ``Linear`` in module order, else
    the last 1 x 1 ``Conv2d`` of a ``classifier``/``head`` (SqueezeNet's ``classifier.1``); None if there is none."""
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if linear:
        return linear[-1]
    convs = [n for n, m in model.named_modules()
             if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and n.split(".")[0] in ("classifier", "head")]
    return convs[-1] if convs else None


def classifier_outputs(module: nn.Module | None) -> int:
    """How many classes a classifier module scores (0 when there is none, e.g. ``nn.Identity``)."""
    if isinstance(module, nn.Linear):
        return int(module.out_features)
    if isinstance(module, nn.Conv2d):
        return int(module.out_channels)
    return 0


class SourceModelMixin:
    """The ventralkit interface for a module of another library; a method the module's own class defines
    (timm's ``forward_features``...) wins over these (``adopt`` puts this class after it)."""

    classifier_name: str = ""

    def get_classifier(self) -> nn.Module:
        if not self.classifier_name:
            return nn.Identity()
        return self.get_submodule(self.classifier_name)

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh classifier with ``num_classes`` outputs (0: identity), initialised as PyTorch initialises it."""
        name = self.classifier_name
        if not name:
            raise ConfigError(f"{self.info.name} has no classifier (no final Linear layer) to replace; build it "
                              "with its class count instead (a factory that takes num_classes)")
        old = self.get_submodule(name)
        in_features = old.in_features if isinstance(old, nn.Linear) else old.in_channels
        if num_classes <= 0:
            new = nn.Identity()
        elif isinstance(old, nn.Conv2d):
            new = nn.Conv2d(in_features, num_classes, kernel_size=1)
        else:
            new = nn.Linear(in_features, num_classes)
        parent_name, _, child = name.rpartition(".")
        parent = self.get_submodule(parent_name) if parent_name else self
        device = next(self.parameters()).device
        setattr(parent, child, new.to(device))
        set_num_classes(self, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """What enters the classifier (pooled, flattened features for a torchvision model)."""
        if not self.classifier_name:
            return self(x)
        seen: list[torch.Tensor] = []
        handle = self.get_submodule(self.classifier_name).register_forward_pre_hook(
            lambda _m, args: seen.append(args[0]))
        try:
            self(x)
        finally:
            handle.remove()
        return seen[-1]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x if pre_logits else self.get_classifier()(x)


def set_num_classes(model: nn.Module, num_classes: int) -> None:
    """Keep ``model.info.num_classes`` true after the classifier changed."""
    info = getattr(model, "info", None)
    if info is not None and info.num_classes != num_classes:
        model.info = dataclasses.replace(info, num_classes=int(num_classes))


_ADOPTED: dict[type, type] = {}


def adopt(model: nn.Module, info, classifier_name: str | None) -> nn.Module:
    """Give ``model`` (in place) the ventralkit interface and its ``info``; returns the same object.

    The class becomes ``<Class>`` again, a subclass of the original with ``SourceModelMixin`` behind it, so
    ``isinstance`` and every method of the original hold, and nothing is copied."""
    cls = type(model)
    if not isinstance(model, SourceModelMixin):
        adopted = _ADOPTED.get(cls)
        if adopted is None:
            adopted = type(cls.__name__, (cls, SourceModelMixin), {"__module__": cls.__module__,
                                                                  "__qualname__": cls.__qualname__})
            _ADOPTED[cls] = adopted
        model.__class__ = adopted
    if classifier_name is not None:
        model.classifier_name = classifier_name
    model.info = info
    return model
