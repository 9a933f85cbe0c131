"""A user's own network: ``vk.wrap(module, ...)`` from Python, ``--model path/to/file.py:factory`` from the shell.

``wrap`` gives any ``nn.Module`` the ventralkit interface in place: a name, brain areas or stages (module
names; default: the stages found by ``stages.default_stages``), the preprocessing it expects (a
``Preprocessing``, or a dict of its fields; default ImageNet's: 224 px, Resize(256) + CenterCrop(224),
bilinear, ImageNet mean/std) and, optionally, which module is its classifier (default: its last Linear).

``file.py:factory`` imports that file and calls ``factory()`` (``factory(num_classes=N)`` when the function
takes ``num_classes`` and a class count is asked for). The user names the file, so running it is the user's
choice; ventralkit runs no Python file it was not told to run, so a checkpoint of such a model is reloaded
only when the same ``--model file.py:factory`` is given again. The factory may return ``vk.wrap(...)`` to
state its areas and preprocessing; a plain module gets the defaults above.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from pathlib import Path

import torch.nn as nn

from ...errors import ConfigError
from ..interface import resolve_module
from ..preprocessing import Preprocessing
from .common import SourceRecord, close_names, finish

#: the preprocessing of a module that states none: ImageNet's evaluation protocol at 224 px
DEFAULT_PREPROCESSING = Preprocessing(image_size=224)


def as_preprocessing(preprocess) -> Preprocessing:
    """``wrap``'s ``preprocess``: None (ImageNet's defaults), a ``Preprocessing`` or a dict of its fields."""
    if preprocess is None:
        return DEFAULT_PREPROCESSING
    if isinstance(preprocess, Preprocessing):
        return preprocess
    if isinstance(preprocess, dict):
        fields = {"image_size": DEFAULT_PREPROCESSING.image_size, **preprocess}
        try:
            return Preprocessing.from_dict(fields)
        except TypeError as err:
            raise ConfigError(f"preprocess={preprocess!r}: {err}") from None
    raise ConfigError(f"preprocess must be a Preprocessing or a dict of its fields, not {type(preprocess).__name__}")


def wrap(module: nn.Module, name: str | None = None, areas: dict[str, str] | None = None, preprocess=None,
         classifier: str | None = None) -> nn.Module:
    """``module`` as a ventralkit model (in place; the same object is returned): ``info``, ``preprocessing``,
    ``forward_features``/``forward_head``/``get_classifier``/``reset_classifier``. Every name in ``areas``
    (and ``classifier``) must be a module of it (``named_modules()``); a missing one is one line with close
    names. ``load_model`` and every analysis then take it like a registered model."""
    if not isinstance(module, nn.Module):
        raise ConfigError(f"wrap() takes a torch.nn.Module, not a {type(module).__name__}")
    name = name or type(module).__name__
    for layer in [*(areas or {}).values(), *([classifier] if classifier else [])]:
        resolve_module(module, layer)  # one line listing close names when absent
    record = SourceRecord(spec=name, library="python",
                          preprocessing_from="given to wrap()" if preprocess is not None else
                          "ImageNet's defaults (wrap() was given none)")
    return finish(module, record, as_preprocessing(preprocess), family="user", classifier=classifier,
                  areas=dict(areas) if areas else None, description=f"{type(module).__name__} (wrapped)")


def build(path: str, function: str, num_classes: int | None = None) -> nn.Module:
    """``path:function`` as a ventralkit model: import the file, call the factory, check what it returned."""
    spec = f"{path}:{function}"
    factory = load_factory(path, function)
    takes_classes = "num_classes" in inspect.signature(factory).parameters
    try:
        module = factory(num_classes=int(num_classes)) if takes_classes and num_classes is not None else factory()
    except Exception as err:  # noqa: BLE001 - the user's code: report it in one line, as any bad input
        raise ConfigError(f"--model {spec}: {function}() raised {type(err).__name__}: {_first(err)}") from None
    if not isinstance(module, nn.Module):
        raise ConfigError(f"--model {spec}: {function}() returned a {type(module).__name__}, not a torch.nn.Module")
    info = getattr(module, "info", None)
    wrapped = getattr(info, "family", None) == "user"
    pre = module.preprocessing if wrapped else DEFAULT_PREPROCESSING
    record = SourceRecord(spec=spec, library="file", code_sha256=_sha256(path),
                          preprocessing_from="the factory's wrap()" if wrapped else
                          "ImageNet's defaults (the factory states none; return vk.wrap(module, preprocess=...))")
    return finish(module, record, pre, family="user", classifier=getattr(module, "classifier_name", None) or None,
                  areas=dict(info.areas) if wrapped else None, description=f"{function}() of {Path(path).name}")


def load_factory(path: str, function: str):
    """The function ``function`` of the Python file ``path`` (imported under a private module name)."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--model {path}:{function}: no such file {path}")
    name = "ventralkit_user_" + hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:12]
    module = sys.modules.get(name)
    if module is None:
        module = _import_file(file, name, f"{path}:{function}")
    factory = getattr(module, function, None)
    if not callable(factory):
        names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise ConfigError(f"--model {path}:{function}: {path} defines no function {function!r}"
                          f"{close_names(function, names)}")
    return factory


def _import_file(file: Path, name: str, spec: str):
    """Import ``file`` as module ``name``; its folder is on ``sys.path`` meanwhile, so it can import its neighbours."""
    loader_spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(loader_spec)
    folder = str(file.resolve().parent)
    sys.path.insert(0, folder)
    try:
        loader_spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 - SyntaxError, ImportError, anything the file raises at import
        raise ConfigError(f"--model {spec}: {file} failed to import ({type(err).__name__}: {_first(err)})") from None
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    sys.modules[name] = module
    return module


def _first(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0][:160]


def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
