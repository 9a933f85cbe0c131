"""``torchvision:NAME``: every classification model of the installed torchvision, with its own weights.

Names are ``torchvision.models.list_models(module=torchvision.models)`` (classification only: no detection,
segmentation or video models). Weights: ``--weights DEFAULT`` (or ``--pretrained``), an enum member's name
(``IMAGENET1K_V2``) or its full name (``ResNet50_Weights.IMAGENET1K_V2``); none means random initialisation.
torchvision downloads the file into ``$TORCH_HOME/hub/checkpoints`` and checks it against the hash prefix in
its name, as it always does; ventralkit bounds the download's waits, turns every failure into one line, and
hashes the file it loads (provenance; a cached file whose sha256 no longer starts with its name's prefix is
refused). ``VENTRALKIT_OFFLINE=1`` never downloads: it says which file to place where.

Preprocessing is the weights' own ``transforms()`` (resize, crop, interpolation, mean, std), reproduced
exactly by ventralkit's pipeline; a randomly initialised model takes its default weights' (the size the
architecture is trained at), and the record says so.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import socket
import warnings
from pathlib import Path

from ...errors import CheckpointError, ConfigError, ModelNotFoundError
from ..preprocessing import Preprocessing
from .common import SourceRecord, close_names, download_timeout, file_sha256, finish, offline
from .published import published_commitment

#: models whose auxiliary classifiers make their training-mode output a tuple: built without them
_AUX_LOGITS = ("googlenet", "inception_v3")
#: torch.hub's file-name convention: ``name-<sha256 prefix>.pth``
_HASH_IN_NAME = re.compile(r"-([a-f0-9]*)\.")


def list_names(pattern: str = "*") -> list[str]:
    """The classification models of the installed torchvision matching a shell-style pattern (none built)."""
    import torchvision.models as tvm

    return sorted(n for n in tvm.list_models(module=tvm) if fnmatch.fnmatchcase(n, pattern))


def check_name(name: str) -> None:
    names = list_names()
    if name not in names:
        raise ModelNotFoundError(f"unknown torchvision model {name!r}{close_names(name, names)}; "
                                 "`ventralkit models --source torchvision` lists them")


def resolve_weights(name: str, weights: str | None):
    """The weights enum member ``weights`` names for model ``name`` (None: random initialisation)."""
    import torchvision.models as tvm

    if weights is None:
        return None
    enum = tvm.get_model_weights(name)
    members = [m for m in enum.__members__ if m != "DEFAULT"]  # DEFAULT is an alias of one of them
    key = str(weights).split(".")[-1]
    if key.upper() == "DEFAULT":
        return enum.DEFAULT
    if key not in enum.__members__:
        raise ConfigError(f"--weights {weights}: torchvision's {name} has weights {', '.join(members)} "
                          f"(or DEFAULT){close_names(key, members)}")
    return enum[key]


def weights_preprocessing(weights) -> Preprocessing:
    """The weights' ``transforms()`` as ventralkit's preprocessing: Resize(resize) + CenterCrop(crop), exactly
    (crop fraction crop/resize, so ``resize_size`` gives back torchvision's number)."""
    tr = weights.transforms()
    crop, resize = int(tr.crop_size[0]), int(tr.resize_size[0])
    pre = Preprocessing(image_size=crop, mode="resize_crop", crop_fraction=crop / resize,
                        interpolation=tr.interpolation.value, mean=tuple(tr.mean), std=tuple(tr.std))
    if pre.resize_size != resize:  # never silently feed other pixels than torchvision would
        raise ConfigError(f"{weights}: resize {resize} / crop {crop} cannot be reproduced")
    return pre


def cache_path(weights) -> Path:
    """Where torchvision keeps (or will download) this weights file: ``$TORCH_HOME/hub/checkpoints``."""
    import torch.hub
    from urllib.parse import urlparse

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def build(name: str, weights: str | None = None, num_classes: int | None = None):
    """``torchvision:NAME`` as a ventralkit model (module with ``info``, ``preprocessing``, provenance)."""
    import torchvision
    import torchvision.models as tvm

    check_name(name)
    chosen = resolve_weights(name, weights)
    default = tvm.get_model_weights(name).DEFAULT
    kwargs = {"aux_logits": False} if name in _AUX_LOGITS else {}
    if chosen is not None:
        n_weights = len(chosen.meta["categories"])
        if num_classes is not None and num_classes != n_weights:
            raise ConfigError(f"--weights {chosen} score {n_weights} classes, not {num_classes}; add "
                              "--reset_classifier to fine-tune them with a new classifier")
        model = _download_and_build(name, chosen, kwargs)
    else:
        if num_classes is not None:
            kwargs["num_classes"] = int(num_classes)
        with warnings.catch_warnings():  # GoogLeNet/Inception's note on their future default initialisation
            warnings.simplefilter("ignore", FutureWarning)
            model = tvm.get_model(name, weights=None, **kwargs)
    record = SourceRecord(spec=f"torchvision:{name}", library="torchvision", library_version=torchvision.__version__,
                          weights=None if chosen is None else chosen.name,
                          preprocessing_from=f"{(chosen or default)} transforms()" + (
                              " (the default weights': random initialisation)" if chosen is None else ""),
                          commitment=published_commitment("torchvision", name, None if chosen is None else chosen.name,
                                                          default.name))
    if chosen is not None:
        path = cache_path(chosen)
        record.weights_url, record.weights_file = chosen.url, str(path)
        record.weights_sha256 = checked_sha256(path)
    pre = weights_preprocessing(chosen or default)
    return finish(model, record, pre, family="torchvision", description=f"torchvision {name}")


def _download_and_build(name: str, chosen, kwargs: dict):
    """``get_model(name, weights=chosen)``: torchvision downloads (its hash check) unless the file is cached;
    waits are bounded and every failure is one line naming the file and what to do."""
    import torchvision.models as tvm

    path = cache_path(chosen)
    if not path.is_file() and offline():
        raise CheckpointError(f"VENTRALKIT_OFFLINE is set and torchvision's {chosen} is not cached: place "
                              f"{path.name} (from {chosen.url}) at {path} (TORCH_HOME={path.parents[2]})")
    try:
        with _socket_timeout(download_timeout()):
            return tvm.get_model(name, weights=chosen, **kwargs)
    except (OSError, RuntimeError, ValueError) as err:  # URLError, timeouts, a full disk, torch.hub's hash check
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        if path.is_file():  # the file is there but did not load: a damaged cache entry
            raise CheckpointError(f"torchvision's {chosen} file {path} did not load ({first}); delete it and run "
                                  "again to download it anew") from None
        raise CheckpointError(f"torchvision's {chosen} could not be downloaded from {chosen.url} ({first}); "
                              f"check the network and run again, or place the file at {path}") from None


def checked_sha256(path: Path) -> str:
    """The file's sha256; refused when it does not start with the prefix in its name (torch.hub's convention)."""
    digest = file_sha256(path)
    m = _HASH_IN_NAME.search(path.name)
    if m and m.group(1) and not digest.startswith(m.group(1)):
        raise CheckpointError(f"{path} has sha256 {digest[:16]}..., not the {m.group(1)}... its name promises; "
                              "delete it and run again (torchvision downloads it anew)")
    return digest


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    """torch.hub opens its URL without a timeout: bound every socket read for the download's duration."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)
