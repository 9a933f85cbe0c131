"""Batched feature extraction: any set of modules, every time step, in one pass over the images.

``extract_features(model, data, layers=["V4.output", "IT.output"])`` returns
``{"V4.output-t0": (N, D) array, ..., "V4.output-t3": ..., "IT.output-t0": ..., "IT.output-t1": ...}``
(Brain-Score's ``<module>-t<k>`` names; a recurrent module gives one array per call, i.e. per time
step), rows in image order: sorted file names for a folder, the given order for a list.

How it is fast (see ``benchmarks/bench_features.py``): a DataLoader decodes and resizes images in
worker processes while the model runs (on CUDA and on CPUs with more than 4 cores; on fewer cores
decoding in-line is faster, see ``engine.workers``); batches instead of single images (on the
CPU forward passes of ``CPU_FORWARD_BATCH`` = 8 images, which keep activations in cache); the
inference runner (``engine.inference``: eval mode, ``torch.inference_mode``, device, threads, layout);
one forward pass records every requested module through forward hooks that copy each output
straight into its row block of a pre-allocated output array (a ``np.memmap`` ``.npy`` file or an
HDF5 dataset when writing to disk, so N x D never has to fit in memory); channels_last (NHWC)
activations and weights, which oneDNN runs much faster on the CPU for CORnet-Z.
Images travel from the decoder as H x W x 3 uint8 and are converted and normalised per batch (on
the GPU when there is one) straight into channels_last layout; on CUDA, hooks copy into pinned
buffers without synchronising until the end of the batch.

On disk (``output_dir``): ``<layer>-t<k>.npy`` per layer and time step (plus the original CORnet
``run.py test`` name ``CORnet-S_V4_output_feats.npy`` when a CORnet model is asked for exactly one
layer and one time step) or one ``features.h5`` with a dataset per name; ``images.txt`` (the image
of each row) and ``features.json`` (model, layers, shapes, preprocessing). Files are written under
temporary names and renamed at the end, so an interrupted run leaves nothing half-written. The
arrays returned are then read-only memory maps (``.npy``) or ``H5Array``s read on access (HDF5).
A folder that holds an earlier run's features is refused unless ``overwrite``; the earlier run's
files (those its ``features.json`` lists) are then removed when the new ones are committed, so no
array of another run is left beside them and a failed run leaves the earlier one intact.

Unreadable images (``on_bad_image="skip"``) have no row: ``images.txt`` lists the images of the rows,
``skipped.txt`` and ``features.json`` (``skipped``, with each one's position in the input) the others.

Memory: hooks copy each output into its rows and keep nothing (``record_activations`` with a
transform that returns None), so at most one forward batch of activations is alive at a time,
whatever the number of images (``tests/test_features.py`` checks it).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import Dataset

from ..data.folders import ImageListDataset, collate_readable, is_image, list_images, write_skipped
from ..data.transforms import eval_pipeline, uint8_pipeline
from ..engine.inference import InferenceRunner, inference_loader, loader_workers, model_device
from ..engine.progress import progress_bar
from ..errors import ConfigError, DataError
from ..files import ensure_writable_dir, link_or_copy, write_json, write_text
from ..models.interface import resolve_module
from ..models.preprocessing import Preprocessing, native_preprocessing, preprocessing_of, resolve
from ..models.registry import ModelInfo

FORMATS = ("npy", "hdf5")
#: images per forward pass on the CPU. Measured on 2 cores (224 px, channels_last, images/s):
#: CORnet-Z 73 / 71 / 68 / 53 / 50 at 1 / 4 / 8 / 16 / 32 (large batches spill the caches),
#: CORnet-S 1.6 / 3.2 / 3.6 / 3.9 / 3.5 (its 3x3 convs stream ~200 MB of weights per pass, which
#: batching amortises); 8 is within 8% of the best for both.
CPU_FORWARD_BATCH = 8
TRANSFORMS = ("square", "center")
DTYPES = ("float32", "float16")
TimeSteps = int | Sequence[int] | Mapping[str, int | Sequence[int] | None] | None
#: files of a features run with fixed names (the arrays' names are listed in its features.json)
RUN_FILES = ("features.json", "images.txt", "skipped.txt", "features.h5")
_ARRAY_FILE = re.compile(r"(.+-t\d+|CORnet-.+_feats)\.npy$")


class Features(dict):
    """``{"<layer>-t<k>": array (N, D)}``, plus ``skipped``: the images left out as unreadable (in no row)."""

    def __init__(self, arrays=(), skipped=()):
        super().__init__(arrays)
        self.skipped = list(skipped)


# --------------------------------------------------------------------------- names and inputs


def feature_name(layer: str, step: int) -> str:
    """Brain-Score style name of one layer at one time step: ``V4.output-t3``."""
    return f"{layer}-t{step}"


def cornet_feature_filename(model_name: str, layer: str) -> str | None:
    """The file name CORnet ``run.py test`` writes (``CORnet-S_V4_output_feats.npy``); None if not a CORnet."""
    if not model_name.startswith("cornet_"):
        return None
    letter = model_name[len("cornet_"):].upper()
    area, _, sub = layer.partition(".")
    parts = [f"CORnet-{letter}", area] + ([sub.replace(".", "_")] if sub else [])
    return "_".join(parts) + "_feats.npy"


def image_paths(data: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """The images to read, in row order.

    A folder: its image files sorted by name (non-image files are ignored); a folder that has no
    images directly inside but sub-folders of images (a class-folder split): every image below it,
    sorted by relative path. A single image file: itself. A list: the given order, each must exist.
    """
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if path.is_dir():
            # hidden files (``._x.jpg`` resource forks) are skipped, as the original's glob('*.*') does
            flat = sorted(p for p in path.iterdir() if p.is_file() and is_image(p) and not p.name.startswith("."))
            if flat:
                return flat
            nested = sorted(
                (Path(dp) / f for dp, dirs, fs in os.walk(path, followlinks=True)
                 for f in fs if is_image(f) and not f.startswith(".")),
                key=lambda p: p.relative_to(path).parts,
            )
            if nested:
                return nested
        return list_images(path)  # a file, or the one-line error for a missing / image-less folder
    paths = [Path(p) for p in data]
    if not paths:
        raise DataError("no images given: the list of image paths is empty")
    for p in paths:
        if not p.is_file():
            raise DataError(f"image {p} does not exist; fix the list of image paths")
    return paths


def _info_of(model: nn.Module) -> ModelInfo:
    info = getattr(model, "info", None)
    if isinstance(info, ModelInfo):
        return info
    return ModelInfo(name=type(model).__name__, family="custom", num_classes=0)


def resolve_time_steps(layer: str, fires: int, time_steps: TimeSteps) -> list[int]:
    """The time steps to keep for ``layer``, which runs ``fires`` times per forward pass."""
    if isinstance(time_steps, Mapping):
        time_steps = time_steps.get(layer)
    if fires == 0:
        raise ConfigError(f"{layer} never runs in the forward pass; pick another layer")
    if time_steps is None:
        return list(range(fires))
    steps = [time_steps] if isinstance(time_steps, (int, np.integer)) else list(time_steps)
    if not steps:
        raise ConfigError(f"no time step given for {layer}")
    for k in steps:  # negative steps count from the last, as everywhere in ventralkit (-1 = last)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not -fires <= k < fires:
            times = "once" if fires == 1 else f"{fires} times"
            raise ConfigError(f"{layer} fires {times}; --time_step {k} is out of range 0..{fires - 1} "
                              f"(or -{fires}..-1 from the last)")
    return sorted({int(k) % fires for k in steps})


# --------------------------------------------------------------------------- output sinks


@dataclass
class _Output:
    name: str
    layer: str
    step: int
    shape: tuple[int, ...]  # per-image shape before flattening
    dim: int
    sink: object = None  # np.ndarray / np.memmap / h5py.Dataset
    tmp_path: Path | None = None
    final_path: Path | None = None
    staging: torch.Tensor | None = None


class H5Array:
    """A read-only (N, D) dataset of a ``features.h5``, read when indexed (``a[rows]``, ``np.asarray(a)``).

    What ``extract_features(..., format="hdf5")`` returns, so that the features are not read back
    into memory at the end of a run; the file is opened for each read, so nothing stays open.
    """

    def __init__(self, path, name: str, shape: tuple[int, int], dtype):
        self.path, self.name, self.shape, self.dtype = Path(path), name, tuple(shape), np.dtype(dtype)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        import h5py

        with h5py.File(self.path, "r") as f:
            return f[self.name][index]

    def __array__(self, dtype=None, copy=None):
        arr = self[()]
        return arr if dtype is None else arr.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"H5Array({str(self.path)!r}, {self.name!r}, shape={self.shape}, dtype={self.dtype})"


class _Writer:
    """Pre-allocated destinations for every (layer, step); commits by renaming temporary files."""

    def __init__(self, n: int, dtype: np.dtype, output_dir: Path | None, fmt: str):
        self.n, self.dtype, self.dir, self.fmt = n, dtype, output_dir, fmt
        self.h5 = None
        self.h5_tmp = self.h5_final = None
        self.tmp_files: list[Path] = []

    def allocate(self, out: _Output) -> None:
        shape = (self.n, out.dim)
        if self.dir is None:
            out.sink = np.empty(shape, dtype=self.dtype)
        elif self.fmt == "npy":
            out.final_path = self.dir / f"{out.name}.npy"
            out.tmp_path = self.dir / f".{out.name}.npy.partial"
            self.tmp_files.append(out.tmp_path)
            out.sink = np.lib.format.open_memmap(out.tmp_path, mode="w+", dtype=self.dtype, shape=shape)
        else:
            import h5py

            if self.h5 is None:
                self.h5_final = self.dir / "features.h5"
                self.h5_tmp = self.dir / ".features.h5.partial"
                self.tmp_files.append(self.h5_tmp)
                self.h5 = h5py.File(self.h5_tmp, "w")
            rows = int(max(1, min(self.n, (1 << 20) // max(1, out.dim * self.dtype.itemsize))))
            out.sink = self.h5.create_dataset(out.name, shape=shape, dtype=self.dtype, chunks=(rows, out.dim),
                                              maxshape=(None, out.dim))  # shrinkable: see shrink()
            out.sink.attrs["layer"] = out.layer
            out.sink.attrs["time_step"] = out.step
            out.sink.attrs["unflattened_shape"] = out.shape

    def shrink(self, outputs: Iterable[_Output], rows: int) -> None:
        """Keep the first ``rows`` rows of every output: the rows of skipped (unreadable) images were never
        filled, because each batch's images are written one after another in reading order."""
        for o in outputs:
            if self.dir is None:
                o.sink = o.sink[:rows]
            elif self.fmt == "npy":  # a .npy cannot be cut in place: copy the rows into a file of the right shape
                o.sink.flush()
                new = o.tmp_path.with_name(o.tmp_path.name + "-rows")
                self.tmp_files.append(new)
                dst = np.lib.format.open_memmap(new, mode="w+", dtype=self.dtype, shape=(rows, o.dim))
                block = max(1, (64 << 20) // max(1, o.dim * self.dtype.itemsize))
                for a in range(0, rows, block):
                    z = min(rows, a + block)
                    dst[a:z] = o.sink[a:z]
                o.tmp_path.unlink()
                o.sink, o.tmp_path = dst, new
            else:
                o.sink.resize(rows, axis=0)

    def discard(self) -> None:
        if self.h5 is not None:
            with contextlib.suppress(Exception):
                self.h5.close()
        for p in self.tmp_files:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _listed_arrays(folder: Path) -> set[str]:
    """The array files an earlier run's ``features.json`` in ``folder`` names (empty if it has none)."""
    try:
        manifest = json.loads((folder / "features.json").read_text(encoding="utf-8"))
        names = [str(f) for f in manifest.get("files", [])]
        if manifest.get("format", "npy") == "npy":
            names += [f"{k}.npy" for k in manifest.get("features", {})]
    except (OSError, ValueError, AttributeError, TypeError):
        return set()
    return {n for n in names if n == Path(n).name and _ARRAY_FILE.match(n)}  # plain file names only


def claim_output_dir(folder: Path, overwrite: bool) -> list[Path]:
    """Refuse a folder holding an earlier features run unless ``overwrite``; return that run's files.

    An earlier run is a ``features.json``, a ``features.h5`` or a feature array (``<layer>-t<k>.npy``,
    ``CORnet-*_feats.npy``): left beside new arrays, its arrays would be read as this run's (``neural
    --features`` reads every array in the folder). ``--overwrite`` removes only what that run wrote (the
    fixed names and the arrays its ``features.json`` lists), and only once the new run has committed; an
    array that no ``features.json`` there lists may be someone else's file, so it is never deleted: the
    user moves it."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    arrays = sorted(p.name for p in folder.iterdir() if p.is_file() and _ARRAY_FILE.match(p.name))
    fixed = [n for n in RUN_FILES if (folder / n).is_file()]
    if not arrays and "features.json" not in fixed and "features.h5" not in fixed:
        return []
    listed = _listed_arrays(folder)
    unlisted = [a for a in arrays if a not in listed]
    if unlisted:
        raise DataError(f"-o {folder} holds {unlisted[0]}, which no features.json there lists, so it may not be a "
                        "ventralkit output; move it away or choose another -o folder")
    if not overwrite:
        shown = ", ".join((fixed + arrays)[:3]) + (", ..." if len(fixed) + len(arrays) > 3 else "")
        raise DataError(f"-o {folder} already holds features of an earlier run ({shown}); replace them with "
                        "--overwrite, or choose another -o folder")
    return [folder / n for n in fixed + arrays]


def _remove_earlier(earlier: list[Path], written: set[str]) -> None:
    """Delete the earlier run's files that this run did not just write again (called after the commit)."""
    for path in earlier:
        if path.name not in written:
            path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- the extraction


def _preprocessing(model: nn.Module, info: ModelInfo, image_size: int | None) -> Preprocessing:
    """The model's preprocessing (the loader's, else its metadata's) with ``image_size`` applied."""
    if image_size is not None and int(image_size) <= 0:
        raise ConfigError(f"--imsize must be a positive number of pixels, got {image_size}")
    return resolve(preprocessing_of(model) or native_preprocessing(info), image_size=image_size)


def _build_transform(transform, pre: Preprocessing, uint8: bool):
    """``transform`` (``square`` | ``center`` | a callable) as a pipeline of ``pre`` (``data.transforms``)."""
    if callable(transform):
        return transform
    if transform not in TRANSFORMS:
        raise ConfigError(f"--transform must be one of {', '.join(TRANSFORMS)} or a callable, got {transform!r}")
    pre = resolve(pre, mode=transform)
    return uint8_pipeline(pre) if uint8 else eval_pipeline(pre)  # uint8: normalised in the loop


def _check_options(format: str, dtype: str, batch_size, workers, forward_batch) -> None:
    """The one-line errors for bad option values, before anything is read."""
    if format not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    if dtype not in DTYPES:
        raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"--batch_size must be a positive integer, got {batch_size}")
    if workers is not None and workers < 0:
        raise ConfigError(f"--workers must be 0 or more, got {workers}")
    if forward_batch is not None and (isinstance(forward_batch, bool) or forward_batch < 1):
        raise ConfigError(f"forward_batch must be a positive integer, got {forward_batch}")


def _resolve_layers(model: nn.Module, info: ModelInfo, layers) -> list[str]:
    """The modules to record (default: the model's brain-area commitments), each checked by name."""
    if isinstance(layers, str):
        layers = [layers]
    layers = list(dict.fromkeys(layers if layers is not None else info.areas.values()))
    if not layers:
        raise ConfigError(f"{info.name} has no default layers; name the modules to record (--layers)")
    for layer in layers:
        resolve_module(model, layer)
    return layers


def _dataset(data, transform, pre: Preprocessing, on_bad_image: str, uint8: bool) -> tuple[Dataset, list[str]]:
    """``(dataset, name of each item)``: a given ``Dataset`` as it is; image files through ``transform`` (H x W x 3
    uint8 when ``uint8``: the runner converts and normalises whole batches)."""
    if isinstance(data, Dataset):
        if hasattr(data, "samples"):
            names = [str(s[0]) if isinstance(s, (tuple, list)) else str(s) for s in data.samples]
        elif hasattr(data, "paths"):
            names = [str(p) for p in data.paths]
        else:
            names = [str(i) for i in range(len(data))]
        dataset = data
    else:
        paths = image_paths(data)
        dataset = ImageListDataset(paths, _build_transform(transform, pre, uint8), on_bad_image)
        names = [str(p) for p in paths]
    if len(dataset) == 0:
        raise DataError("no images to extract features from")
    return dataset, names


def _check_images(x) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise DataError("the dataset must give image tensors of shape (3, H, W)")


class _Sinks:
    """The forward hooks' destinations: every recorded call goes straight into its rows of the output arrays.

    The first forward pass finds how often each layer fires (its time steps) and the output shapes: its
    calls are kept as CPU copies until the arrays are allocated after it. From then on each hook copies
    its output into the rows of the current pass (through a pinned staging buffer on CUDA, or for a file
    sink) and keeps nothing."""

    def __init__(self, layers: list[str], time_steps: TimeSteps, writer: _Writer, chunk: int, dtype: str,
                 device: torch.device):
        self.layers, self.time_steps, self.writer, self.chunk = layers, time_steps, writer, chunk
        self.dtype, self.device, self.cuda = dtype, device, device.type == "cuda"
        self.calls = {layer: 0 for layer in layers}
        self.first: dict[str, list] | None = {layer: [] for layer in layers}  # None once allocated
        self.outputs: dict[tuple[str, int], _Output] = {}
        self.rows = 0  # rows filled so far

    def reset(self) -> None:
        """Before each forward pass (and its repeat, if the runner falls back to NCHW)."""
        for layer in self.layers:
            self.calls[layer] = 0
        for kept in (self.first or {}).values():
            kept.clear()

    def hook(self, layer: str):
        def sink(out: torch.Tensor) -> None:
            if not isinstance(out, torch.Tensor):
                raise ConfigError(f"{layer} returns a {type(out).__name__}, not a tensor; pick a module "
                                  "that outputs a tensor (e.g. its .output)")
            k = self.calls[layer]
            self.calls[layer] = k + 1
            if self.first is not None:  # steps not known yet: keep a CPU copy of every call
                self.first[layer].append((tuple(out.shape[1:]), out.reshape(out.shape[0], -1).to(
                    "cpu", torch.float32, copy=True)))
                return None
            o = self.outputs.get((layer, k))
            if o is not None:
                b = out.shape[0]
                dst = o.staging[:b] if o.staging is not None else torch.from_numpy(o.sink[self.rows:self.rows + b])
                dst.view(out.shape).copy_(out, non_blocking=self.cuda)
            return None  # nothing kept: even out[:0] would hold the whole output until the end of the run

        return sink

    def after_pass(self, b: int) -> None:
        """The pass of ``b`` images is done: allocate the arrays (first pass) or empty the staging buffers."""
        if self.first is not None:
            self._allocate(b)
        else:
            if self.cuda:
                torch.cuda.current_stream(self.device).synchronize()
            for o in self.outputs.values():
                if o.staging is not None:
                    o.sink[self.rows:self.rows + b] = o.staging[:b].numpy()
        self.rows += b

    def _allocate(self, b: int) -> None:
        for layer in self.layers:
            for k in resolve_time_steps(layer, self.calls[layer], self.time_steps):
                shape, flat = self.first[layer][k]
                o = _Output(feature_name(layer, k), layer, k, shape, flat.shape[1])
                self.writer.allocate(o)
                if self.cuda or not isinstance(o.sink, np.ndarray):
                    o.staging = torch.empty((self.chunk, o.dim), dtype=getattr(torch, self.dtype), pin_memory=self.cuda)
                o.sink[0:b] = flat.numpy().astype(self.writer.dtype, copy=False)
                self.outputs[(layer, k)] = o
        self.first = None


def _record_all(runner: InferenceRunner, loader, sinks: _Sinks, bar) -> None:
    """One pass over the loader, every requested module recorded into ``sinks``."""
    with contextlib.ExitStack() as hooks:
        for layer in sinks.layers:
            hooks.enter_context(runner.record([layer], transform=sinks.hook(layer)))
        runner.before_forward(sinks.reset)
        for step in runner.run(loader, forward_batch=sinks.chunk, progress=bar, check=_check_images):
            sinks.after_pass(step.n)


def default_transform(model) -> str:
    """``"center"`` for a model from torchvision, timm or the user (fed as its weights were trained: their resize
    and crop), ``"square"`` for a registered model (CORnet ``run.py test``'s ``Resize((s, s))``)."""
    source = (getattr(getattr(model, "info", None), "extra", None) or {}).get("source") or {}
    return "center" if source.get("library", "ventralkit") != "ventralkit" else "square"


def extract_features(
    model: nn.Module | str,
    data: str | os.PathLike | Sequence[str | os.PathLike] | Dataset,
    layers: Iterable[str] | str | None = None,
    time_steps: TimeSteps = None,
    batch_size: int = 64, workers: int | None = None, image_size: int | None = None,
    transform: str | Callable | None = None, device: str | torch.device | None = None,
    output_dir: str | os.PathLike | None = None, format: str = "npy",  # noqa: A002  (the flag's name)
    progress: bool = True, channels_last: bool | None = None, amp: str = "none", dtype: str = "float32",
    forward_batch: int | None = None, on_bad_image: str = "error", overwrite: bool | None = False,
) -> Features:
    """Features of every image for each layer and time step: ``{"<layer>-t<k>": array (N, D)}``.

    model: a module (a registered model carries ``model.info``) or a registered name (random weights).
    data: a folder (images sorted by file name; non-image files ignored), a list of image paths
        (kept in that order) or a ``Dataset`` whose items are an image tensor or ``(tensor, ...)``
        (used as it is; ``transform`` and ``image_size`` do not apply).
    layers: module names (``"V4.output"``); default: the model's brain-area commitments
        (``model.info.areas``: V1..IT outputs and the decoder's pooled features for CORnets).
    time_steps: None = every call of each module (CORnet-S ``V4.output`` gives t0..t3); an int or a
        list of ints for every layer; or a dict layer -> steps. Out of range -> ``ConfigError``.
    transform: ``"square"`` = CORnet ``run.py test`` (``Resize((s, s))``, no crop), ``"center"`` =
        evaluation (``Resize(s*256/224)`` + ``CenterCrop(s)``; a torchvision/timm model: its weights' own resize,
        crop and interpolation), or any callable PIL -> tensor; None (default): ``"square"`` for a registered
        model, ``"center"`` for a model from torchvision, timm or the user (``models.sources``);
        ``s`` = ``image_size`` or the model's preprocessing's (``model.preprocessing`` from the loader: the
        size it was trained at; else its native ``info.input_size``); normalisation from the model's metadata.
    device: where the model runs (default: where its parameters are; the model is moved there and back).
    output_dir: also write the arrays (see the module docstring); the returned arrays are then
        read-only memory maps of the ``.npy`` files (``format="npy"``) or loaded from ``features.h5``.
    channels_last: activations and conv weights in NHWC; None = the runner's one rule (``engine.inference``).
    amp: ``"none"`` | ``"bf16"`` | ``"fp16"`` autocast for the forward pass (features are stored as ``dtype``).
    dtype: ``"float32"`` (default) or ``"float16"`` storage.
    forward_batch: images per forward pass; the DataLoader's ``batch_size`` is split into chunks of
        this size. None = 8 on the CPU (measured fastest there, see below), the whole batch on CUDA.
    on_bad_image: ``"error"`` (default): an image that cannot be decoded stops the run, naming it;
        ``"skip"``: it gets no row (N is then the number of images read) and is listed in the result's
        ``skipped`` (and ``skipped.txt``, ``features.json`` on disk). A ``Dataset`` decides for itself.
    overwrite: False: a ``output_dir`` holding an earlier run's features is an error; True: they are replaced
        (see the module docstring); None: neither checked nor removed, as CORnet ``run.py test`` (which
        ``ventralkit test`` reproduces) writes one file per layer and runs for several layers share a folder.
    """
    if isinstance(model, str):
        from ..models import create_model

        model = create_model(model)
    _check_options(format, dtype, batch_size, workers, forward_batch)
    info = _info_of(model)
    if transform is None:
        transform = default_transform(model)
    layers = _resolve_layers(model, info, layers)
    dev = torch.device(device) if device is not None else model_device(model)
    workers, threads = loader_workers(workers, dev)
    uint8 = not isinstance(data, Dataset) and not callable(transform)  # normalised per batch by the runner
    runner = InferenceRunner(model, dev, amp=amp, channels_last=channels_last, threads=threads,
                             normalize=(info.mean, info.std) if uint8 else None)
    pre = _preprocessing(model, info, image_size)
    dataset, names = _dataset(data, transform, pre, on_bad_image, uint8)
    out_dir, earlier = _output_dir(output_dir, overwrite)
    if forward_batch is None:  # see the module docstring: CPU caches favour small forward batches
        forward_batch = batch_size if dev.type == "cuda" else CPU_FORWARD_BATCH
    writer = _Writer(len(dataset), np.dtype(dtype), out_dir, format)
    sinks = _Sinks(layers, time_steps, writer, int(min(batch_size, forward_batch)), dtype, dev)
    loader = inference_loader(dataset, batch_size, workers, dev, collate_fn=collate_readable)
    try:
        elapsed, skipped = _extract(runner, loader, sinks, f"features {info.name}", progress)
        names = _drop_skipped(writer, sinks, names, skipped)
        return _commit(writer, sinks.outputs, names, info, layers, sinks.calls, pre.image_size, transform, elapsed,
                       sinks.rows, skipped, earlier)
    except BaseException:
        writer.discard()  # nothing half-written is left
        raise


def _output_dir(output_dir, overwrite) -> tuple[Path | None, list[Path]]:
    """The output folder (None: arrays in memory), checked writable, and an earlier run's files to replace."""
    if output_dir is None:
        return None, []
    out_dir = Path(output_dir)
    earlier = [] if overwrite is None else claim_output_dir(out_dir, overwrite)
    ensure_writable_dir(out_dir)
    return out_dir, earlier


def _extract(runner: InferenceRunner, loader, sinks: _Sinks, desc: str, progress: bool) -> tuple[float, list]:
    """One pass over ``loader`` in ``runner``, every module recorded into ``sinks``: (seconds, skipped images)."""
    n = sinks.writer.n
    bar = progress_bar(None, desc=desc, enabled=progress, total=n, unit="img")
    t0 = time.perf_counter()
    try:
        with runner, contextlib.ExitStack() as hooks:
            for layer in sinks.layers:
                hooks.enter_context(runner.record([layer], transform=sinks.hook(layer)))
            runner.before_forward(sinks.reset)
            for step in runner.run(loader, forward_batch=sinks.chunk, progress=bar, check=_check_images):
                sinks.after_pass(step.n)
    finally:
        bar.close()
    skipped = runner.skipped
    if sinks.rows + len(skipped) != n:
        raise DataError(f"read {sinks.rows} of {n} images; the dataset changed during extraction")
    if sinks.rows == 0:
        raise DataError(f"none of the {n} images could be read (e.g. {skipped[0].path}: {skipped[0].reason}); "
                        "fix or replace the image files")
    return time.perf_counter() - t0, skipped


def _drop_skipped(writer: _Writer, sinks: _Sinks, names: list[str], skipped: list) -> list[str]:
    """Rows were filled in reading order, without the unreadable images: drop the unused tail and their names."""
    if not skipped:
        return names
    writer.shrink(sinks.outputs.values(), sinks.rows)
    gone = {u.index for u in skipped}
    return [name for i, name in enumerate(names) if i not in gone]


def _commit(writer: _Writer, outputs, names, info, layers, calls, image_size, transform, elapsed, n, skipped,
            earlier: list[Path]) -> Features:
    result = Features(skipped=skipped)
    ordered = sorted(outputs.values(), key=lambda o: (layers.index(o.layer), o.step))
    if writer.dir is None:
        result.update({o.name: o.sink for o in ordered})
        return result
    manifest = {
        "model": info.name,
        "n_images": n,
        "n_skipped": len(skipped),
        # unreadable images: no row; "input_index" is the image's position in the input (folder order or list)
        "skipped": [{"image": u.path, "input_index": u.index, "reason": u.reason} for u in skipped],
        "layers": layers,
        "time_steps_fired": {layer: calls[layer] for layer in layers},
        "features": {o.name: {"layer": o.layer, "time_step": o.step, "shape": [n, o.dim],
                              "unflattened_shape": list(o.shape)} for o in ordered},
        "format": writer.fmt,
        "dtype": str(writer.dtype),
        "transform": transform if isinstance(transform, str) else getattr(transform, "__name__", "custom"),
        "image_size": int(image_size),
        "mean": list(info.mean),
        "std": list(info.std),
        # library, weights name, file and sha256 (models.loading.LoadedModel.provenance), when the loader built it
        "model_source": (getattr(info, "extra", None) or {}).get("source"),
        "seconds": round(elapsed, 3),
    }
    if writer.fmt == "npy":
        for o in ordered:
            o.sink.flush()
        for o in ordered:
            os.replace(o.tmp_path, o.final_path)
            result[o.name] = np.load(o.final_path, mmap_mode="r")
        files = [o.final_path.name for o in ordered]
        if len(ordered) == 1:
            cornet = cornet_feature_filename(info.name, ordered[0].layer)
            if cornet:
                link_or_copy(ordered[0].final_path, writer.dir / cornet)
                files.append(cornet)
        manifest["files"] = files
    else:
        writer.h5.attrs["model"] = info.name
        writer.h5.attrs["n_images"] = n
        writer.h5.flush()
        writer.h5.close()
        os.replace(writer.h5_tmp, writer.h5_final)
        for o in ordered:  # read on access, like the .npy memory maps: N x D never has to fit in memory
            result[o.name] = H5Array(writer.h5_final, o.name, (n, o.dim), writer.dtype)
        manifest["files"] = [writer.h5_final.name]
    write_text(writer.dir / "images.txt", "".join(f"{p}\n" for p in names))
    written = set(manifest["files"]) | {"images.txt", "features.json"}
    if skipped:
        write_skipped(writer.dir / "skipped.txt", skipped)
        written.add("skipped.txt")
    write_json(writer.dir / "features.json", manifest)
    _remove_earlier(earlier, written)
    return result
