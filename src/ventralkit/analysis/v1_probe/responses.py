"""Record the responses of a model layer's central units to stimulus sets, and turn them into rates.

* ``resolve_layer`` turns an area name (``"V1"``) or nothing into the module the model commits there
  (``models.commitments``, the map feature extraction and the Brain-Score adapter use too).
* ``record_units`` shows a ``StimulusSet`` to the model in batches through the inference runner
  (``engine.inference``: eval mode, inference mode, the one channels_last rule), records the chosen
  call (time step) of one module and keeps only the units at the centre of the visual field (all
  channels; optionally a small central window of positions). The forward pass stops as soon as that
  call has been recorded, so probing V1 of a deep network costs little more than its V1.
* ``FiringRateMap`` is the per-region affine map from rectified activations to "spikes/s" of
  Marques et al. (2021) (``docs/reference/ecosystem.md`` section 7.2, step 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from ...engine.inference import InferenceRunner
from ...errors import ConfigError
from ...models.commitments import area_commitments
from ...models.interface import resolve_module
from .stimuli import StimulusSet, blank_image

#: Marques et al. (2021) / Brain-Score constants for V1 (``benchmark_helpers/properties_common.py``)
MEDIAN_SPONTANEOUS_RATE = 0.82  # spikes/s, median spontaneous rate of V1 neurons
MEDIAN_MAX_RATE = 33.8  # spikes/s, median peak response of responsive V1 neurons
SINGLE_MAX_RATE = 243.1  # spikes/s, the largest peak response recorded
RESPONSE_THRESHOLD = 5.0  # spikes/s above baseline for a neuron to count as responsive


def resolve_layer(model: nn.Module, layer: str | None) -> str:
    """The module name to probe: ``layer`` itself, the module an area name (``"V1"``) commits to,
    or by default the model's V1 commitment. Unknown names raise a one-line ``ConfigError``."""
    commits = area_commitments(model)
    model_name = getattr(getattr(model, "info", None), "name", type(model).__name__)
    if layer is None:
        if "V1" not in commits:
            raise ConfigError(f"{model_name} commits no module to V1; choose one with --layer")
        layer = commits["V1"].module
    elif layer in commits:
        layer = commits[layer].module
    resolve_module(model, layer)  # ConfigError with close names if it does not exist
    return layer


@dataclass
class LayerProbe:
    """How to read units off one module: which call, which positions, the output shape."""

    layer: str
    call_index: int
    n_calls: int
    out_shape: tuple[int, ...]  # per image, e.g. (C, H, W) or (F,)
    positions: int = 1
    channels_last: bool = False  # NHWC weights and inputs: what the runner's rule gave this model on its probe pass
    center: tuple[int, int] | None = None  # map position whose receptive field is at the fixation point
    rf_offset_px: float = 0.0  # distance of that receptive field's centre from the image centre, pixels

    def _window(self, h: int, w: int) -> tuple[int, int, int]:
        k = min(self.positions, h, w)
        r, c = self.center if self.center is not None else (h // 2, w // 2)
        r0 = min(max(r - (k - 1) // 2, 0), h - k)
        c0 = min(max(c - (k - 1) // 2, 0), w - k)
        return r0, c0, k

    def select(self, out: torch.Tensor) -> torch.Tensor:
        """``(N, units)``: channels at the ``positions x positions`` window around ``center``, channel-major.

        Always a copy: a view (the centre of a map reshapes to one) would keep the whole map alive.
        """
        if out.dim() == 4:
            r0, c0, k = self._window(*out.shape[-2:])
            out = out[:, :, r0:r0 + k, c0:c0 + k]
        return out.reshape(out.shape[0], -1).to("cpu", torch.float32, copy=True)

    def unit_coords(self) -> dict[str, np.ndarray]:
        """Per unit: channel, row and column in the layer's output map (-1 for flat outputs)."""
        if len(self.out_shape) == 3:
            c, h, w = self.out_shape
            r0, c0, k = self._window(h, w)
            ch, rr, cc = np.meshgrid(np.arange(c), np.arange(r0, r0 + k), np.arange(c0, c0 + k), indexing="ij")
            return {"channel": ch.ravel(), "row": rr.ravel(), "col": cc.ravel()}
        n = int(np.prod(self.out_shape))
        return {"channel": np.arange(n), "row": np.full(n, -1), "col": np.full(n, -1)}


def prepare_layer(model: nn.Module, layer: str, image_size: int, mean, std, time_step: int = -1,
                  positions: int = 1) -> LayerProbe:
    """Run one grey image to find how often ``layer`` is called and its output shape.

    ``time_step`` picks the call (recurrent models call an area's module once per step): 0 is the
    first, -1 (default) the last.
    """
    module = resolve_module(model, layer)
    calls: list = []

    def hook(_m, _i, out):
        calls.append(tuple(out.shape[1:]) if torch.is_tensor(out) else type(out).__name__)

    handle = module.register_forward_hook(hook)
    try:
        with InferenceRunner(model) as runner:  # the layout the rule gives here is kept for the whole probe
            runner.before_forward(calls.clear)
            runner.forward(runner.prepare(blank_image(image_size, mean, std)))
    finally:
        handle.remove()
    channels_last = runner.channels_last
    if not calls:
        raise ConfigError(f"layer {layer!r} is never called in the model's forward pass")
    if isinstance(calls[0], str):
        raise ConfigError(f"layer {layer!r} returns a {calls[0]}, not a tensor; choose a submodule "
                          f"(e.g. its '.output')")
    n = len(calls)
    idx = time_step + n if time_step < 0 else time_step
    if not 0 <= idx < n:
        raise ConfigError(f"--time_step {time_step} is out of range: {layer!r} runs {n} time step(s)")
    shape = calls[idx]
    if len(shape) not in (1, 3):
        raise ConfigError(f"layer {layer!r} outputs shape {shape} per image; the probe needs a (C, H, W) "
                          f"map or a flat (F,) vector")
    if positions < 1:
        raise ConfigError("positions must be >= 1")
    probe = LayerProbe(layer, idx, n, shape, positions, channels_last)
    if len(shape) == 3:
        probe.center, probe.rf_offset_px = central_position(model, probe, image_size, mean, std)
    return probe


def receptive_field_centers(model: nn.Module, probe: LayerProbe, positions: list[tuple[int, int]],
                            image_size: int, mean, std, chunk: int = 64, tries: int = 8) -> np.ndarray:
    """``(len(positions), 2)`` receptive-field centres (row, col in input pixels) of map positions.

    The centre of a position's receptive field is the centroid of the squared input gradient of its
    summed channels on a noise image; a position whose units are all silent (rectified) on that image
    is tried again on new noise, up to ``tries`` images (NaN if it never responds). Gradients, unlike
    the layer's geometry, also find the field of units behind a warp such as the polar transform of
    the cortical-magnification V1-ResNets, whose central map position does not look at the centre.
    """
    weights = torch.zeros(len(positions), image_size, image_size, dtype=torch.float64)
    todo = list(range(len(positions)))
    for attempt in range(tries):
        for start in range(0, len(todo), chunk):
            idx = todo[start:start + chunk]
            weights[idx] += _gradient_maps(model, probe, [positions[i] for i in idx], image_size, mean, std, attempt)
        todo = [i for i in todo if weights[i].sum() == 0]
        if not todo:
            break
    yy, xx = torch.meshgrid(torch.arange(image_size, dtype=torch.float64),
                            torch.arange(image_size, dtype=torch.float64), indexing="ij")
    total = weights.sum((1, 2))
    centers = torch.stack([(weights * yy).sum((1, 2)) / total, (weights * xx).sum((1, 2)) / total], 1)
    return centers.numpy()  # 0/0 = NaN for positions that never responded


def _gradient_maps(model: nn.Module, probe: LayerProbe, positions: list[tuple[int, int]], image_size: int,
                   mean, std, seed: int) -> torch.Tensor:
    """``(P, H, W)``: squared input gradient (summed over colours) of each position's summed channels."""
    g = torch.Generator().manual_seed(seed)
    base = blank_image(image_size, mean, std) + 0.5 * torch.randn(1, 3, image_size, image_size, generator=g)
    outs: list[torch.Tensor] = []
    handle = resolve_module(model, probe.layer).register_forward_hook(lambda _m, _i, out: outs.append(out))
    try:
        with InferenceRunner(model, channels_last=probe.channels_last, grad=True) as runner, \
                runner.stop_after(probe.layer, probe.call_index + 1):  # the rest of the network is not needed
            runner.before_forward(outs.clear)
            x = runner.prepare(base.repeat(len(positions), 1, 1, 1)).requires_grad_(True)
            runner.forward(x)
            out = outs[probe.call_index]
            rows = torch.tensor([r for r, _ in positions], device=out.device)
            cols = torch.tensor([c for _, c in positions], device=out.device)
            picked = out[torch.arange(len(positions), device=out.device), :, rows, cols]
            (grad,) = torch.autograd.grad(picked.sum(), x)
    finally:
        handle.remove()
    return grad.detach().double().pow(2).sum(1).cpu()


def central_position(model: nn.Module, probe: LayerProbe, image_size: int, mean, std) -> tuple[tuple[int, int], float]:
    """The map position whose receptive field is closest to the image centre, and that distance (pixels).

    The middle of the map is tried first and kept when its field is within one map cell of the centre
    (every ordinary convolutional layer); otherwise every position is mapped and the closest is used.
    """
    _c, h, w = probe.out_shape
    middle = (h // 2, w // 2)
    target = np.array([(image_size - 1) / 2, (image_size - 1) / 2])
    try:
        first = receptive_field_centers(model, probe, [middle], image_size, mean, std)[0]
    except RuntimeError:  # a model that cannot take gradients (e.g. in-place ops on inputs): keep the middle
        return middle, float("nan")
    cell = image_size / min(h, w)
    d0 = float(np.linalg.norm(first - target))
    if d0 <= cell:
        return middle, d0
    grid = [(r, c) for r in range(h) for c in range(w)]
    d = np.linalg.norm(receptive_field_centers(model, probe, grid, image_size, mean, std) - target, axis=1)
    if not np.isfinite(d).any():  # no position ever responded: keep the middle, offset unknown
        return middle, float("nan")
    best = int(np.nanargmin(d))
    return grid[best], float(d[best])


def record_units(model: nn.Module, probe: LayerProbe, stimuli: StimulusSet, image_size: int,
                 visual_degrees: float, mean, std, batch_size: int = 64, progress=None) -> np.ndarray:
    """Raw activations ``(n_units, len(stimuli))`` of the probe's units to every image of ``stimuli``.

    Batched through the inference runner (eval mode, inference mode, ``probe.channels_last``); recorded
    through its forward hooks; the forward pass is cut short once ``probe.call_index`` has been recorded.
    """
    chunks: list[torch.Tensor] = []
    with InferenceRunner(model, channels_last=probe.channels_last) as runner, \
            runner.record([probe.layer], transform=probe.select) as store, \
            runner.stop_after(probe.layer, probe.call_index + 1):  # cut short once the call is recorded
        batches = stimuli.render(image_size, visual_degrees, mean, std, batch_size=batch_size, device=runner.device)
        for _ in runner.run(batches, progress=progress):
            chunks.append(store[probe.layer][probe.call_index])
    return torch.cat(chunks).numpy().T.astype(np.float64)


def f0_f1(responses: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Mean (F0, "DC") and first-harmonic amplitude (F1, "AC") of responses over a phase axis.

    With responses r_k at N equally spaced phases, F0 = mean_k r_k and F1 = 2 |sum_k r_k e^{-2 pi i k/N}| / N,
    the two components of the response to a drifting grating sampled at N phases (Marques et al. 2021;
    F1/F0 is the simple/complex modulation ratio of Skottun et al. 1991).
    """
    n = responses.shape[axis]
    f0 = responses.mean(axis=axis)
    f1 = 2.0 * np.abs(np.fft.fft(responses, axis=axis).take(1, axis=axis)) / n if n > 1 else np.zeros_like(f0)
    return f0, f1


@dataclass(frozen=True)
class FiringRateMap:
    """``rate = max(0, slope * max(0, activation) + offset)``, one map per region.

    Fitted so that the median spontaneous (grey screen) rate of the responsive units is 0.82
    spikes/s and their median peak response to the orientation set is 33.8 spikes/s; responsive =
    peak minus baseline larger than 5/243.1 of the population's largest. Source: Marques, Schrimpf &
    DiCarlo (2021), as implemented in Brain-Score's ``firing_rates_affine``.
    """

    slope: float
    offset: float

    @classmethod
    def fit(cls, baseline: np.ndarray, peak: np.ndarray) -> "FiringRateMap":
        baseline = np.maximum(baseline, 0)
        peak = np.maximum(peak, 0)
        delta = peak - baseline
        top = delta.max() if delta.size else 0.0
        responsive = delta > (RESPONSE_THRESHOLD / SINGLE_MAX_RATE) * top
        if top <= 0 or not responsive.any():
            return cls(1.0, 0.0)
        med_b = float(np.median(baseline[responsive]))
        med_p = float(np.median(peak[responsive]))
        if med_p - med_b <= 0:
            return cls(1.0, 0.0)
        slope = (MEDIAN_MAX_RATE - MEDIAN_SPONTANEOUS_RATE) / (med_p - med_b)
        return cls(float(slope), float(MEDIAN_SPONTANEOUS_RATE - slope * med_b))

    def __call__(self, activations: np.ndarray) -> np.ndarray:
        return np.maximum(self.slope * np.maximum(activations, 0) + self.offset, 0)
