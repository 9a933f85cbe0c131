"""A ventralkit model as a Brain-Score model (``brainscore_vision``), with its area commitments.

Brain-Score scores a ``ModelCommitment``: an activations extractor (``PytorchWrapper``) plus a map
from brain region to layer name. ventralkit builds both from the registry, so the region map is the
same one the V1 probe and feature extraction use (``models.commitments``). Recurrent models
(CORnet R/RT/S/S100) run a module several times per image; a layer name ``<module>-t<k>`` selects
call *k* (Brain-Score's naming), and each region commits to its last time step unless
``time_steps`` says otherwise.

``brainscore-vision`` is an optional extra. It installs next to the pinned torch 2.14.1 /
torchvision 0.29.1, but pins ``numpy<2`` (every release 2.1.0-2.4.2), so installing it downgrades
numpy (to 1.26.x) and scikit-learn in that environment. Its benchmark data are downloaded from
Brain-Score's servers at scoring time; without network only construction works.
"""

from __future__ import annotations

import functools
import re

import torch.nn as nn

from ..errors import ConfigError
from ..models.commitments import BRAIN_AREAS, area_commitments, brainscore_layers
from ..models.loading import create_model
from ..models.preprocessing import preprocessing_of

_STEP = re.compile(r"^(?P<module>.+)-t(?P<step>\d+)$")


def _import_brainscore():
    try:
        from brainscore_vision.model_helpers.activations.pytorch import PytorchWrapper, load_preprocess_images
        from brainscore_vision.model_helpers.brain_transformation import ModelCommitment
    except ImportError as err:
        raise ConfigError(f"brainscore-vision is not installed ({err}); install the extra with "
                          "`pip install 'ventralkit[brainscore]'` (it downgrades numpy to 1.26)") from None
    return PytorchWrapper, load_preprocess_images, ModelCommitment


def split_layer(name: str) -> tuple[str, int | None]:
    """``"V4.output-t3"`` -> ``("V4.output", 3)``; a name without a step -> ``(name, None)`` (last call)."""
    m = _STEP.match(name)
    return (m["module"], int(m["step"])) if m else (name, None)


def region_layer_map(model: nn.Module, time_steps: dict[str, int] | None = None) -> dict[str, str]:
    """Region -> Brain-Score layer name for every area the model commits to (last time step by default)."""
    commits = area_commitments(model)
    chosen = dict(time_steps or {})
    unknown = sorted(set(chosen) - set(commits))
    if unknown:
        raise ConfigError(f"time_steps names {', '.join(unknown)}, but the model commits only "
                          f"{', '.join(commits) or 'no areas'}")
    out = {}
    for area in BRAIN_AREAS:
        if area not in commits:
            continue
        steps = commits[area].time_steps
        step = chosen.get(area, steps[-1])
        if step not in steps:
            raise ConfigError(f"time_steps[{area!r}] = {step}, but {commits[area].module} runs at steps "
                              f"{steps[0]}..{steps[-1]}")
        out[area] = f"{commits[area].module}-t{step}"
    return out


def commitment_region_map(model: nn.Module, commitments) -> dict[str, str]:
    """Region -> Brain-Score layer name from a commitment file (``--areas``; a path, paths or ``Commitments``).

    Each committed layer must be a module of ``model`` (else one line with close names); a time step the
    registry bounds (a committed area's module) must be within its steps. ``null`` (-1) is the last call:
    the plain module name, which the wrapper records at its last call.
    """
    from ..models.commitment_file import Commitments, check_modules, check_steps, read_commitments

    if not isinstance(commitments, Commitments):
        commitments = read_commitments(commitments, flag="commitment")
    what = f"model {getattr(getattr(model, 'info', None), 'name', 'the model')}"
    check_modules(commitments, (n for n, _ in model.named_modules()), what)
    bounds = {c.module: len(c.time_steps) for c in area_commitments(model).values()}
    check_steps(commitments, bounds, what)
    out = {}
    for area, c in commitments.areas.items():
        step = c.time_steps[0]
        if step < -1 and c.module not in bounds:
            raise ConfigError(f"commitment {commitments.source.get(area, '')}: area {area!r} commits {c.module} at "
                              f"time step {step}, counted from the last call, which is not known for this module; "
                              "give the step from the first call (0, 1, ...) or null for the last")
        if step < -1:  # counted from the last: a Brain-Score layer name needs the step itself
            step += bounds[c.module]
        out[area] = c.module if step == -1 else f"{c.module}-t{step}"
    return out


def _wrapper_class(PytorchWrapper):
    class TimeStepWrapper(PytorchWrapper):
        """PytorchWrapper that understands ``<module>-t<k>`` layer names (call k of a module)."""

        def get_layer(self, layer_name):
            return super().get_layer(split_layer(layer_name)[0])

        def register_hook(self, layer, layer_name, target_dict):
            step = split_layer(layer_name)[1]
            calls = [0]

            def hook(_module, _input, output):
                if step is None or calls[0] == step:
                    target_dict[layer_name] = self._tensor_to_numpy(output)
                calls[0] += 1

            return layer.register_forward_hook(hook)

    return TimeStepWrapper


def brainscore_model(
    model: str | nn.Module,
    identifier: str | None = None,
    *,
    checkpoint: str | None = None,
    pretrained: bool = False,
    visual_degrees: float = 8,
    time_steps: dict[str, int] | None = None,
    commitment=None,
    **model_kwargs,
):
    """A Brain-Score ``ModelCommitment`` for a registered name or a model built by ``create_model``.

    Preprocessing is the model's own (its ``preprocessing``: the size it was trained at for a checkpoint,
    else ``info.input_size``; its mean/std; Brain-Score's resize-to-square); ``visual_degrees`` is the
    field of view the input spans (Brain-Score's default 8);
    the behavioural read-out is the model's ``decoder`` commitment (the pooled features).
    ``commitment``: a commitment file (``neural --commit``'s commitment.json; a path, paths or ``Commitments``)
    whose area -> layer x time step replaces the registry's region map (not with ``time_steps``).
    """
    PytorchWrapper, load_preprocess_images, ModelCommitment = _import_brainscore()
    if isinstance(model, str):
        model = create_model(model, checkpoint=checkpoint, pretrained=pretrained, **model_kwargs)
    info = getattr(model, "info", None)
    if info is None:
        raise ConfigError("the model has no .info (input size, normalisation, areas); build it with "
                          "ventralkit.create_model")
    if commitment is not None and time_steps:
        raise ConfigError("give time_steps or a commitment file, not both: the file names each area's time step")
    regions = commitment_region_map(model, commitment) if commitment is not None else region_layer_map(model, time_steps)
    if not regions:
        raise ConfigError(f"{info.name} commits no module to {', '.join(BRAIN_AREAS)}; nothing to score")
    identifier = identifier or info.name
    pre = preprocessing_of(model)
    preprocessing = functools.partial(load_preprocess_images, image_size=pre.image_size,
                                      normalize_mean=tuple(pre.mean), normalize_std=tuple(pre.std))
    wrapper = _wrapper_class(PytorchWrapper)(model=model.eval(), preprocessing=preprocessing, identifier=identifier)
    wrapper.image_size = pre.image_size  # Brain-Score places stimuli using the wrapper's image size
    names = brainscore_layers(area_commitments(model))
    layers = [name for area in (*BRAIN_AREAS, "decoder") for name in names.get(area, [])]
    layers += [name for name in regions.values() if name not in layers]  # committed layers outside the registry's
    readout = names["decoder"][-1] if "decoder" in names else None
    return ModelCommitment(identifier=identifier, activations_model=wrapper, layers=layers,
                           behavioral_readout_layer=readout, region_layer_map=regions,
                           visual_degrees=visual_degrees)
