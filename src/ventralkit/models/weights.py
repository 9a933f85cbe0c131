"""Reading weights: original model-zoo files, plain state dicts and ventralkit checkpoints.

``pretrained=True`` takes the published file from the weights folder (``$VENTRALKIT_WEIGHTS``, default
``~/.cache/ventralkit/weights``), downloading and checking it first when it is missing (``download.py``).
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from ..errors import CheckpointError
from ..files import RunPaths
from .download import weights_dir  # noqa: F401  (the folder, defined without torch)
from .registry import ModelInfo

#: the ``format`` tag of the checkpoints ventralkit's engine writes (``engine.checkpoint``), by which a
#: loader knows the file also carries its model name, classes, config and preprocessing
CHECKPOINT_FORMAT = "ventralkit"

#: wrappers whose state dict keys carry a prefix: DataParallel / DDP (``module.``), torch.compile.
_PREFIXES = ("module.", "_orig_mod.")


def pretrained_path(info: ModelInfo) -> Path:
    """The model's published weights file, downloaded when missing and checked (``pretrained_check``)."""
    return pretrained_check(info).path


def pretrained_check(info: ModelInfo):
    """The checked published file of a registered model (a ``download.FileCheck``: path, sha256, status),
    downloaded into the weights folder when missing."""
    if info.weights is None:
        raise CheckpointError(
            f"{info.name} has no published weights; train it or pass a checkpoint file"
        )
    from .download import ensure_weights
    from .weights_table import entry_for_model

    return ensure_weights(entry_for_model(info.name, info.weights.filename, info.weights.url))


def _numpy_globals() -> list:
    """numpy's array and scalar reconstructors: plain data, as ``torch.load`` treats tensors.

    An object array still needs its objects' own globals, which stay refused, so allowing these
    cannot run code; old ventralkit checkpoints (numpy RNG state) and lab files with arrays load."""
    import numpy as np

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    dtypes = [type(np.dtype(t)) for t in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                                          np.uint32, np.uint64, np.float16, np.float32, np.float64)]
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype, *dtypes]


def _global_names(path: Path) -> list[str]:
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # an old (non-zip) file: the error message names the first one
        return []


def read_checkpoint(path: str | os.PathLike, trust: bool = False) -> dict:
    """``torch.load`` a file on the CPU, safely, turning every way it can fail into one clear line.

    Files are unpickled with ``weights_only=True`` (tensors, numbers, strings, containers, numpy
    arrays): a file that needs anything else could run code while loading, so it is refused unless
    ``trust=True`` (``--trust_checkpoint``), which loads it fully with a warning.
    """
    path = Path(path)
    check_checkpoint_file(path)
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only load failed" not in str(err).lower():
            raise _corrupt(path, err) from None
        names = _global_names(path) or re.findall(r"GLOBAL (\S+)", str(err))[:1]
        what = ", ".join(names[:3]) or "Python objects"
        if not trust:
            raise CheckpointError(
                f"checkpoint {path} holds {what}, which could run code when loaded; refused. Load it only if "
                "you trust its source: --trust_checkpoint (Python: trust=True)"
            ) from None
        warnings.warn(f"loading {path} with full unpickling (--trust_checkpoint): it holds {what}", stacklevel=2)
        try:
            # reached only with trust=True (--trust_checkpoint), refused above otherwise: the user vouches for the file
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err2:  # noqa: BLE001 - anything a trusted pickle raises is the file's fault
            raise _corrupt(path, err2) from None
    except Exception as err:  # noqa: BLE001 - a damaged pickle fails in many ways (KeyError, IndexError, EOFError...)
        raise _corrupt(path, err) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, not a state dict")
    return obj


#: the magic number every pre-1.6 (non-zip) ``torch.save`` file pickles first: its 10 little-endian bytes
#: (pickle protocol 2 and later) or its decimal digits (protocols 0 and 1)
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_MARKS = (_LEGACY_MAGIC.to_bytes(10, "little"), str(_LEGACY_MAGIC).encode())


def check_checkpoint_file(path: Path) -> None:
    """Refuse, in one line, a path that is no ``torch.save`` file, before anything tries to unpickle it.

    Without this, a text file fails deep in the unpickler (``KeyError: 101``) and an image or random
    bytes fail the safe loader as if they held code, whose advice (``--trust_checkpoint``) would be
    wrong. ``torch.save`` writes a zip archive holding ``*/data.pkl`` (PyTorch >= 1.6) or a pickle that
    starts with its magic number (older files); anything else is not a PyTorch checkpoint. A file that
    looks like one but is damaged (a truncated archive) is left to ``torch.load`` to report as corrupt.
    """
    if path.is_dir():
        inside = RunPaths(path).last
        hint = (f"pass the file inside it, e.g. {inside}" if inside.is_file()
                else "pass the checkpoint file (.pt/.pth) itself")
        raise CheckpointError(f"checkpoint {path} is a folder, not a file; {hint}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as err:
        raise CheckpointError(f"checkpoint {path} cannot be read ({err.strerror or err})") from None
    if not head:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); use another file")
    if head.startswith(b"PK\x03\x04"):  # a zip archive: PyTorch's if it holds a pickle, else (.npz, .zip) not
        try:
            with zipfile.ZipFile(path) as zf:
                is_torch = any(name.endswith("data.pkl") for name in zf.namelist())
        except (zipfile.BadZipFile, OSError, ValueError):
            return  # damaged: torch.load says "corrupt or truncated"
        if is_torch:
            return
    elif any(mark in head for mark in _LEGACY_MARKS):
        return
    raise CheckpointError(f"checkpoint {path} is not a PyTorch checkpoint ({_kind_of(head)}, not a file written by "
                          "torch.save); check the path")


def _kind_of(head: bytes) -> str:
    """A few words on what a file that is no checkpoint seems to be, from its first bytes (for the message)."""
    for magic, kind in ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"PK\x03\x04", "a zip archive"),
                        (b"\x93NUMPY", "a NumPy array"), (b"\x89HDF", "an HDF5 file"), (b"\x80", "a pickle")):
        if head.startswith(magic):
            return f"it looks like {kind}"
    if all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "it looks like text"
    return "unrecognised contents"


def _corrupt(path: Path, err: BaseException) -> CheckpointError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return CheckpointError(f"checkpoint {path} is corrupt or truncated ({first[:120]}); use another file")


def extract_state_dict(ckpt: dict) -> dict[str, torch.Tensor]:
    """The model's tensors from any supported layout, with wrapper prefixes removed.

    Layouts: ventralkit (``{'format': 'ventralkit', 'model': sd}``), CORnet model zoo / run.py
    (``{'state_dict': sd}``), V1-ResNet ``main.py`` (``{'model': sd}``), or a bare state dict.
    """
    for key in ("model", "state_dict", "model_state_dict"):
        if key in ckpt and isinstance(ckpt[key], dict):
            ckpt = ckpt[key]
            break
    state = {}
    for k, v in ckpt.items():
        for prefix in _PREFIXES:
            while k.startswith(prefix):
                k = k[len(prefix):]
        state[k] = v
    return state


def load_weights(
    model: nn.Module,
    source: str | os.PathLike | dict,
    convert: Callable[[dict], dict] | None = None,
    trust: bool = False,
) -> None:
    """Load a checkpoint into ``model`` strictly; a mismatch is one line naming model and keys.

    BatchNorm ``num_batches_tracked`` may be absent (files saved before PyTorch 0.4.1).
    """
    ckpt = read_checkpoint(source, trust=trust) if not isinstance(source, dict) else source
    where = source if not isinstance(source, dict) else "state dict"
    state = extract_state_dict(ckpt)
    if convert is not None:
        state = convert(state)
    own = model.state_dict()
    name = getattr(getattr(model, "info", None), "name", type(model).__name__)
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else ""))
        if unexpected:
            parts.append(
                f"unexpected {', '.join(unexpected[:3])}" + (" ..." if len(unexpected) > 3 else "")
            )
        raise CheckpointError(
            f"checkpoint {where} does not fit model {name} ({len(missing)} missing, "
            f"{len(unexpected)} unexpected keys: {'; '.join(parts)}); is it another architecture?"
        )
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            hint = ""
            if v.dim() in (1, 2) and own[k].dim() == v.dim() and v.shape[0] != own[k].shape[0]:
                hint = f"; if this is the classifier, pass num_classes={v.shape[0]} (--num_classes)"
            raise CheckpointError(
                f"checkpoint {where} does not fit model {name}: {k} has shape "
                f"{tuple(v.shape)} in the file but {tuple(own[k].shape)} in the model{hint}"
            )
    for k, v in own.items():  # tolerate old BatchNorm files
        if k not in state:
            state[k] = v
    model.load_state_dict(state, strict=True)
