"""The one way a model runs forward over data outside training: ``InferenceRunner``.

Every analysis that shows images to a model (``engine.evaluate``, ``analysis.features``, ``analysis.robustness``,
the V1 probe, the feedback study's read-outs) goes through it, so the state a forward pass needs is set in one
place and given back in one place::

    with InferenceRunner(model, device, amp="bf16") as runner:
        with runner.record(["V1.output"]) as store:          # optional: activations through forward hooks
            for step in runner.run(loader, forward_batch=8):  # a loader (any iterable of batches) or a tensor
                use(step.output, step.take(1), store["V1.output"])

Entering puts the model in eval mode on ``device``, its weights in the chosen memory format, torch's intra-op
threads at ``threads``, cuDNN's autotuner on for CUDA (inputs keep one size throughout a pass) and
``torch.inference_mode`` on (``grad=True``: gradients on instead); leaving, also after an exception in the
loop, gives every one of them back as it was: training mode, device, weight layout, thread count, autotuner,
grad mode. ``run`` moves each batch to the device, normalises H x W x 3 uint8 batches when given ``normalize``
(``data.transforms.normalize_hwc_uint8``: ToTensor + Normalize's arithmetic on the whole batch), sets the
input layout, splits the batch into forward passes of ``forward_batch`` images, runs each under ``amp``'s
autocast and yields a ``Forward`` per pass. Images a loader could not read (``data.folders.collate_readable``)
are collected in ``runner.skipped``; a batch of only such images gives no forward pass. A ``VentralkitError``
raised in a DataLoader worker arrives as its one line (the worker's traceback dropped).

The channels_last rule, one for every consumer: ``channels_last=None`` (the default) means NHWC weights and
inputs for every 4-D image batch, on the CPU and on CUDA, and NCHW for a model that refuses that layout (its
first forward pass raises a ``RuntimeError`` in NHWC; the runner then restores the weights, runs the pass
again in NCHW and stays there). ``True`` / ``False`` force a layout (``--channels_last on|off``). Why one rule
serves every family: NHWC was measured faster or even for each of them on the CPU, and the analyses that
measured it had chosen it already (features: CORnet-Z 1.8x faster on 2 cores, CORnet-S about even;
robustness: the ResNet-50 V1 model at 64 px 17.1 vs 15.0 images/s at 128 images per pass; V1 probe: ~1.5x
faster convolutions). Forward passes only, 1 thread, best of 5 interleaved runs, images/s NCHW -> NHWC:
CORnet-Z (224 px, 8 per pass) 48.6 -> 110.1; v1_resnet50 (64 px, 8) 81.8 -> 115.0, its composite_a and
local_rf variants 56.0 -> 67.9 and 59.4 -> 72.0; phinet (160 px) 232 -> 312 at 8 and 52 -> 99 at 64;
resnet9 (32 px) 70.1 -> 70.6 at 8 and 85.1 -> 84.9 at 128. On CUDA NHWC is what tensor-core convolutions
want (NVIDIA's Deep Learning Performance guide), and every analysis had it on there already. Weights follow
the inputs: with NCHW weights oneDNN reorders every convolution's weights on every call.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import torch
import torch.nn as nn

from ..data.folders import skipped_in
from ..data.transforms import normalize_hwc_uint8
from ..errors import VentralkitError, one_line
from ..models.interface import record_activations, resolve_module
from .amp import autocast
from .workers import compute_threads, inference_workers


class _StopForward(Exception):
    """Raised by the hook of ``stop_after`` once the module has run often enough: the rest is not needed."""


@dataclass
class Forward:
    """One forward pass of ``InferenceRunner.run``: the model's output for ``rows`` of the loader's ``batch``."""

    output: Any  #: what the model returned (None when ``stop_after`` cut the pass short)
    batch: Any  #: the batch as the loader gave it (e.g. ``[images, labels]``), on the host
    rows: slice  #: the rows of ``batch`` this pass was for
    device: torch.device

    @property
    def n(self) -> int:
        """Images in this pass."""
        return self.rows.stop - self.rows.start

    def take(self, index: int) -> torch.Tensor:
        """Item ``index`` of the batch (labels, folder numbers, ...) for this pass's rows, on the device."""
        return self.batch[index][self.rows].to(self.device, non_blocking=True)


def images_of(batch) -> torch.Tensor:
    """The images of a batch: the batch itself (a tensor), its first item (``(images, labels, ...)``) or a
    dict's ``image`` / ``images`` / ``pixel_values`` / ``x``."""
    if isinstance(batch, (list, tuple)):
        return batch[0]
    if isinstance(batch, dict):
        for key in ("image", "images", "pixel_values", "x"):
            if key in batch:
                return batch[key]
    return batch


def model_device(model: nn.Module) -> torch.device:
    """Where the model's first parameter (else buffer) lives; the CPU for a model without either."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def weights_channels_last(model: nn.Module) -> bool:
    """Whether the model's (first) convolution weight is stored NHWC."""
    for p in model.parameters():
        if p.dim() == 4:
            return p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
    return False


@contextlib.contextmanager
def placed(model: nn.Module, device: torch.device | str | None) -> Iterator[nn.Module]:
    """The model on ``device`` inside the block and back where it was after it (None: where it is).

    For a caller that runs several ``InferenceRunner`` passes on one device (the V1 probe): the model
    moves once, and each runner finds it in place."""
    was = model_device(model)
    device = was if device is None else torch.device(device)
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())  # "cuda" means the current one
    if device == was:
        yield model
        return
    model.to(device)
    try:
        yield model
    finally:
        model.to(was)


def loader_workers(workers: int | None, device: torch.device) -> tuple[int, int | None]:
    """``(workers, threads)``: DataLoader workers (``inference_workers`` when None) and the intra-op thread
    count that leaves room for them on the CPU (None: leave torch's as it is; always None when ``workers``
    was given, as before: the user chose the split)."""
    if workers is not None:
        return int(workers), None
    workers = inference_workers(device)
    return workers, None if device.type == "cuda" else compute_threads(workers)


def inference_loader(dataset, batch_size: int, workers: int, device: torch.device, collate_fn=None):
    """The DataLoader of a forward-only pass: in order, pinned memory on CUDA, 4 batches read ahead per worker."""
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=int(batch_size), shuffle=False, num_workers=int(workers),
                      pin_memory=device.type == "cuda", prefetch_factor=4 if workers > 0 else None,
                      persistent_workers=False, collate_fn=collate_fn)


class InferenceRunner:
    """Runs ``model`` forward in eval mode on ``device``; a context manager (see the module docstring).

    device: where to run (default: where the model's parameters are); the model is moved there and back.
    amp: ``"none"`` | ``"bf16"`` | ``"fp16"`` autocast for each forward pass.
    channels_last: None = the one rule (NHWC, NCHW for a model that refuses it); True / False force a layout.
    threads: torch intra-op threads during the pass (None: as they are).
    normalize: ``(mean, std)``: batches are H x W x 3 uint8, normalised on the device before the pass.
    grad: run with gradients (for input gradients); default ``torch.inference_mode``.
    """

    def __init__(self, model: nn.Module, device: torch.device | str | None = None, *, amp: str = "none",
                 channels_last: bool | None = None, threads: int | None = None, normalize=None,
                 grad: bool = False):
        self.model = model
        self.device = torch.device(device) if device is not None else model_device(model)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            from ..errors import ConfigError

            raise ConfigError("--device cuda was asked for but no CUDA device is available")
        autocast(self.device, amp)  # a bad --amp fails here, before anything is changed
        self.amp = amp
        self.auto_layout = channels_last is None
        self.channels_last = True if channels_last is None else bool(channels_last)
        self.threads = threads
        self.normalize = normalize
        self.grad = grad
        self.skipped: list = []  #: the unreadable images the loader dropped, in the order met
        self._before_forward: list[Callable[[], None]] = []
        self._forwarded = False
        self._restore = contextlib.ExitStack()
        self._weights_converted = False
        self._mean_std = None

    # ------------------------------------------------------------------ state in and out

    def __enter__(self) -> "InferenceRunner":
        try:
            self._take_state()
        except BaseException:
            self._restore.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._restore.close()

    def _take_state(self) -> None:
        """Set each piece of state, pushing what gives it back (undone in reverse order on exit)."""
        model, undo = self.model, self._restore
        undo.callback(model.train, model.training)
        model.eval()
        undo.enter_context(placed(model, self.device))
        if self.channels_last and not weights_channels_last(model):
            model.to(memory_format=torch.channels_last)
            self._weights_converted = True
            undo.callback(self._weights_to_nchw)
        if self.threads is not None:
            undo.callback(torch.set_num_threads, torch.get_num_threads())
            torch.set_num_threads(int(self.threads))
        if self.device.type == "cuda":  # inputs keep one size throughout a pass: let cuDNN pick its kernels
            undo.callback(setattr, torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
            torch.backends.cudnn.benchmark = True
        if self.normalize is not None:
            mean, std = self.normalize
            self._mean_std = tuple(torch.tensor(v, device=self.device, dtype=torch.float32).view(1, 3, 1, 1)
                                   for v in (mean, std))
        undo.enter_context(torch.enable_grad() if self.grad else torch.inference_mode())

    def _weights_to_nchw(self) -> None:
        if self._weights_converted:
            self.model.to(memory_format=torch.contiguous_format)
            self._weights_converted = False

    # ------------------------------------------------------------------ hooks

    @contextlib.contextmanager
    def record(self, names: Iterable[str], transform=None) -> Iterator[dict[str, list[torch.Tensor]]]:
        """``models.interface.record_activations`` for the runner's passes: the lists hold the calls of the
        current forward pass only (cleared before each one)."""
        with record_activations(self.model, names, transform=transform) as store:
            clear = lambda: [v.clear() for v in store.values()]  # noqa: E731
            self._before_forward.append(clear)
            try:
                yield store
            finally:
                self._before_forward.remove(clear)

    @contextlib.contextmanager
    def stop_after(self, name: str, calls: int) -> Iterator[None]:
        """End each forward pass once module ``name`` has run ``calls`` times (the rest of the network is not
        needed; the pass's ``output`` is then None). Enter it after ``record`` for the same module, so that
        the last call is recorded before the pass stops."""
        count = [0]

        def hook(_module, _inputs, _output):
            count[0] += 1
            if count[0] >= calls:
                raise _StopForward

        reset = lambda: count.__setitem__(0, 0)  # noqa: E731
        handle = resolve_module(self.model, name).register_forward_hook(hook)
        self._before_forward.append(reset)
        try:
            yield
        finally:
            self._before_forward.remove(reset)
            handle.remove()

    def before_forward(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` before every forward pass (also the repeat of a pass after a layout fall-back)."""
        self._before_forward.append(fn)

    # ------------------------------------------------------------------ forward passes

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of images as the model takes it: on the device, normalised if uint8 H x W x 3, in the layout."""
        x = x.to(self.device, non_blocking=True)
        if self._mean_std is not None:
            x = normalize_hwc_uint8(x, *self._mean_std)  # a channels_last view
        if x.dim() == 4:  # the uint8 path gives channels_last strides: make the layout what the model expects
            x = x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        return x

    def forward(self, x: torch.Tensor):
        """The model's output for ``x`` (already prepared); None when ``stop_after`` ended the pass."""
        if not self.channels_last and x.dim() == 4:  # a batch prepared before a fall-back to NCHW
            x = x.contiguous()
        for fn in self._before_forward:
            fn()
        try:
            with autocast(self.device, self.amp):
                out = self.model(x)
        except _StopForward:
            out = None
        except RuntimeError:
            if not (self.auto_layout and self.channels_last and not self._forwarded and x.dim() == 4):
                raise
            self._fall_back_to_nchw()
            return self.forward(x.contiguous())
        self._forwarded = True
        return out

    def _fall_back_to_nchw(self) -> None:
        """The model refused NHWC (e.g. a ``view`` of its activations): NCHW weights and inputs from now on."""
        self.channels_last = False
        self._weights_to_nchw()

    def run(self, data, *, forward_batch: int | None = None, progress=None,
            check: Callable[[torch.Tensor], None] | None = None) -> Iterator[Forward]:
        """One ``Forward`` per forward pass over ``data``: a loader (any iterable of batches) or one tensor.

        forward_batch: images per pass (each batch is split); None = the whole batch.
        progress: a progress bar, advanced by each pass's images once the caller has handled it.
        check: called with each batch's images (on the host) before they are used, e.g. to refuse a shape.
        """
        batches = iter([data] if torch.is_tensor(data) else data)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except VentralkitError as err:  # from a worker, wrapped in its traceback
                raise type(err)(one_line(err)) from None
            unread = skipped_in(batch)
            self.skipped += unread
            images = images_of(batch)
            if unread and len(images) == 0:  # every image of this batch was unreadable
                continue
            if check is not None:
                check(images)
            x = self.prepare(images)
            step = len(x) if forward_batch is None else int(forward_batch)
            for start in range(0, len(x), step):
                part = x[start:start + step]
                yield Forward(self.forward(part), batch, slice(start, start + len(part)), self.device)
                if progress is not None:
                    progress.update(len(part))


__all__ = ["Forward", "InferenceRunner", "images_of", "inference_loader", "loader_workers", "model_device", "placed",
           "weights_channels_last"]
