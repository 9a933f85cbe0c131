"""The uniform model interface and per-time-step activation recording.

Every registered model offers ``forward_features``, ``forward_head(x, pre_logits=False)``,
``get_classifier`` and ``reset_classifier`` (the timm convention), so fine-tuning, feature
extraction and probing work the same for every architecture.

Recurrent models call the same module several times per forward pass. ``record_activations``
attaches one forward hook per module and keeps every call, so ``V4.output`` of CORnet-S gives four
tensors (t0..t3); names follow Brain-Score's ``<module>-t<k>`` convention.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator

import torch
import torch.nn as nn

from ..errors import ConfigError


class ClassifierMixin:
    """Default ``get_classifier``/``reset_classifier`` for models whose classifier is a Linear.

    A model sets ``classifier_name`` (dotted path, e.g. ``"decoder.linear"``).
    """

    classifier_name: str = ""

    def get_classifier(self) -> nn.Module:
        return self.get_submodule(self.classifier_name)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a fresh one with ``num_classes`` outputs (0: identity)."""
        old = self.get_classifier()
        in_features = old.in_features if isinstance(old, nn.Linear) else self.num_features
        new = nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()
        parent_name, _, child = self.classifier_name.rpartition(".")
        parent = self.get_submodule(parent_name) if parent_name else self
        setattr(parent, child, new.to(next(self.parameters()).device))
        self.num_classes = num_classes
        if getattr(self, "info", None) is not None:
            import dataclasses

            self.info = dataclasses.replace(self.info, num_classes=num_classes)


def resolve_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule at a dotted path, or a one-line error listing close names."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        import difflib

        names = [n for n, _ in model.named_modules() if n]
        close = difflib.get_close_matches(name, names, n=4, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        model_name = getattr(getattr(model, "info", None), "name", type(model).__name__)
        raise ConfigError(f"{model_name} has no layer {name!r}{hint}") from None


@contextlib.contextmanager
def record_activations(
    model: nn.Module,
    names: Iterable[str],
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Collect the output of each named module at every call during the ``with`` block.

    ``transform`` (e.g. flatten, select units, move to CPU) is applied to each output when it is
    recorded; what it returns is kept, and ``None`` keeps nothing (for a hook that writes the output
    somewhere itself). Whatever is kept holds its memory until the caller drops it: a slice or view
    of the output (even ``out[:0]``) keeps the whole output alive, so a transform that keeps a part
    must copy it (``.clone()``, or ``.to(..., copy=True)``). Without a transform the full outputs are
    kept; the caller clears the lists between batches (``for v in acts.values(): v.clear()``) so
    that at most one batch of activations is held.
    """
    names = list(dict.fromkeys(names))
    store: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    handles = []
    for n in names:
        module = resolve_module(model, n)

        def hook(_mod, _inp, out, n=n):
            out = out.detach()
            kept = transform(out) if transform is not None else out
            if kept is not None:
                store[n].append(kept)

        handles.append(module.register_forward_hook(hook))
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


def time_step_names(store: dict[str, list[torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Flatten a recording into Brain-Score style names: ``{"V4.output-t0": tensor, ...}``."""
    return {f"{n}-t{k}": t for n, outs in store.items() for k, t in enumerate(outs)}


def count_calls(model: nn.Module, names: Iterable[str], x: torch.Tensor) -> dict[str, int]:
    """How many times each named module runs in one forward pass (its number of time steps)."""
    with torch.no_grad(), record_activations(model, names, transform=lambda t: torch.empty(0)) as store:
        model(x)
    return {n: len(v) for n, v in store.items()}


def check_input_size(model: nn.Module, size: int) -> None:
    """Refuse an input size the model cannot take, before any work: one forward on the meta device.

    The meta device runs shapes only (no memory, no arithmetic), so a map that shrinks to nothing or a
    polar grid that does not fit fails here, in one line, rather than inside the first training step."""
    import copy

    name = getattr(getattr(model, "info", None), "name", type(model).__name__)
    # the copy gets meta stand-ins for the weights straight away (deepcopy's memo): copying the values
    # first would cost what the check saves (CORnet-S: 212 MB, 0.17 s of a 0.23 s check on 2 cores)
    memo = {id(t): _meta_like(t) for t in (*model.parameters(), *model.buffers())}
    try:
        probe = copy.deepcopy(model, memo).to("meta").eval()
        with torch.no_grad():
            probe(torch.empty(1, 3, size, size, device="meta"))
    except NotImplementedError:
        return  # an operation without a meta kernel: nothing can be concluded here
    except (RuntimeError, ValueError, IndexError) as err:
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        native = getattr(getattr(model, "info", None), "input_size", None)
        raise ConfigError(f"--imsize {size} does not fit {name} ({first}); use a larger size"
                          + (f" (it was designed for {native} px)" if native else "")) from None


def _meta_like(t: torch.Tensor) -> torch.Tensor:
    """An empty tensor of ``t``'s shape and dtype on the meta device (a Parameter stays a Parameter)."""
    meta = torch.empty_like(t, device="meta")
    return nn.Parameter(meta, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else meta


def unused_parameters(model: nn.Module, size: int, device) -> list[str]:
    """Names of trainable parameters that get no gradient from a forward pass in this configuration.

    DistributedDataParallel must be told about them (``find_unused_parameters``), e.g. CORnet-S100's
    ``V4_to_V1`` at ``outer_times=1``. One forward/backward of a 2-image batch in eval mode: BatchNorm
    statistics, dropout and the global random state are left untouched."""
    was_training = model.training
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(2, 3, size, size, generator=gen).to(device)
    model.eval()
    try:
        out = model(x)
        tensors = [t for t in (out.values() if isinstance(out, dict) else [out]) if torch.is_tensor(t)]
        sum(t.float().sum() for t in tensors).backward()
        unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return unused
