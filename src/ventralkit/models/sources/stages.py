"""Default stages of a model from elsewhere: the modules whose outputs end each processing stage.

A torchvision, timm or user model commits to no brain area; what it has are stages, and those are what
``features`` extracts by default and what ``info.areas`` lists, labelled ``stage1`` ... ``stageN`` (not V1..IT:
calling a ResNet block "V4" is a claim, and Brain-Score's published claims, where they exist, come from
``commitments``). The rules, first that applies:

1. timm models: their own ``feature_info`` (the modules ``features_only=True`` returns).
2. ResNet-like (``layer1`` ... ``layer4`` children, torchvision's ResNet/ResNeXt/Wide ResNet): those four.
3. AlexNet/VGG-like (a ``features`` Sequential of plain layers with max-pools): each block ending at a max-pool.
4. Any other module: a shape trace. The trunk (the model without its classifier, descended into while one
   child holds nearly all the parameters) runs once on the meta device (shapes only) at the input size;
   of consecutive children with the same spatial size the last is a stage end (globally pooled 1 x 1
   outputs are no stage). Children with token outputs
   (N x L x D, transformers) all share one size, so four evenly spaced ones are taken, the last included.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

#: a child that holds at least this share of the trunk's parameters is descended into (the trunk is in it)
_DESCEND_SHARE = 0.9
#: stages taken from a run of equally shaped token blocks (a transformer's encoder)
_TOKEN_STAGES = 4


def default_stages(model: nn.Module, input_size: int, classifier: str | None = None) -> list[str]:
    """The stage-ending module names of ``model``, in processing order (see the module docstring)."""
    modules = _timm_feature_modules(getattr(model, "feature_info", None))  # timm's own stages first
    if modules:
        return modules
    children = dict(model.named_children())
    if all(f"layer{i}" in children for i in range(1, 5)):
        return [f"layer{i}" for i in range(1, 5)]
    features = children.get("features")
    if _pool_ended_blocks(features):
        return [f"features.{n}" for n, m in features.named_children() if isinstance(m, nn.MaxPool2d)]
    return traced_stages(model, input_size, classifier)


def _pool_ended_blocks(features) -> bool:
    """AlexNet/VGG's ``features``: plain layers (no nested blocks) with at least two max-pools."""
    return (isinstance(features, nn.Sequential) and not any(list(m.children()) for m in features)
            and sum(isinstance(m, nn.MaxPool2d) for m in features) >= 2)


def _timm_feature_modules(info) -> list[str]:
    if isinstance(info, (list, tuple)) and info and all(isinstance(i, dict) and i.get("module") for i in info):
        return [str(i["module"]) for i in info]
    if hasattr(info, "module_name"):  # timm's FeatureInfo object
        try:
            return list(info.module_name())
        except Exception:  # noqa: BLE001 - a model without stages: fall back to the trace
            return []
    return []


def trunk(model: nn.Module, classifier: str | None) -> tuple[str, list[tuple[str, nn.Module]]]:
    """(prefix, children) of the part of the model that does the work: the classifier's top-level branch
    left out, descended into while one child holds nearly all of the remaining parameters."""
    head = classifier.split(".")[0] if classifier else None
    prefix, children = "", [(n, m) for n, m in model.named_children() if n != head]
    while True:
        counts = [sum(p.numel() for p in m.parameters()) for _, m in children]
        total = sum(counts)
        big = [(n, m) for (n, m), c in zip(children, counts) if total and c >= _DESCEND_SHARE * total]
        if not big or not list(big[0][1].children()):
            return prefix, children
        name, module = big[0]
        prefix = f"{prefix}{name}."
        children = list(module.named_children())


def traced_stages(model: nn.Module, input_size: int, classifier: str | None = None) -> list[str]:
    """Stage ends from the output shapes of the trunk's children (one forward on the meta device)."""
    prefix, children = trunk(model, classifier)
    shapes = _output_shapes(model, [f"{prefix}{n}" for n, _ in children], input_size)
    named = [(n, s) for n, s in shapes.items() if s is not None]
    if not named:
        return [f"{prefix}{n}" for n, _ in children][-1:]
    stages, tokens = [], []
    for i, (name, shape) in enumerate(named):
        if len(shape) == 3:
            tokens.append(name)
            continue
        nxt = named[i + 1][1] if i + 1 < len(named) else None
        if len(shape) == 4 and _spatial(shape) != (1, 1) and (nxt is None or len(nxt) != 4
                                                           or _spatial(nxt) != _spatial(shape)):
            stages.append(name)
    if tokens:
        step = len(tokens) / _TOKEN_STAGES
        picks = {tokens[min(len(tokens) - 1, round((k + 1) * step) - 1)] for k in range(_TOKEN_STAGES)}
        order = [n for n, _ in named]
        stages = sorted(set(stages) | picks, key=order.index)
    return stages or [named[-1][0]]


def _spatial(shape: tuple[int, ...]) -> tuple[int, int]:
    """The spatial size of an N x C x H x W or N x H x W x C output (square inputs: H == W, C differs)."""
    _, a, b, c = shape
    return (a, b) if a == b and c != a else (b, c)


def _output_shapes(model: nn.Module, names: list[str], size: int) -> dict[str, tuple[int, ...] | None]:
    """Output shape of each named module for one 1 x 3 x size x size image (None: not a tensor, or not run)."""
    shapes: dict[str, tuple[int, ...] | None] = dict.fromkeys(names)
    memo = {id(t): torch.empty_like(t, device="meta") for t in (*model.parameters(), *model.buffers())}
    try:
        probe = copy.deepcopy(model, memo).to("meta").eval()
        device = "meta"
    except Exception:  # noqa: BLE001 - a module that cannot be copied: trace the real one on the CPU
        probe, device = model, "cpu"
    handles = []
    for name in names:
        def hook(_m, _i, out, name=name):
            shapes[name] = tuple(out.shape) if torch.is_tensor(out) else None

        handles.append(probe.get_submodule(name).register_forward_hook(hook))
    was_training = probe.training
    probe.eval()
    try:
        with torch.no_grad():
            probe(torch.zeros(1, 3, size, size, device=device))
    except Exception:  # noqa: BLE001 - what ran before the failure still tells the stages
        pass
    finally:
        for h in handles:
            h.remove()
        probe.train(was_training)
    return shapes
