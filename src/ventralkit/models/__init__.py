"""What a network is: the registry, the uniform interface, weight loading and the model families."""

import importlib

# public name -> submodule (imported on first use, so that the registry's metadata and the stored parameter
# counts can be read without importing torch)
_LAZY = {
    "record_activations": "interface",
    "resolve_module": "interface",
    "ModelInfo": "registry",
    "count_parameters": "registry",
    "create_model": "loading",
    "load_model": "loading",
    "list_models": "registry",
    "model_info": "registry",
    "register_model": "registry",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ModelInfo",
    "count_parameters",
    "create_model",
    "list_models",
    "load_model",
    "model_info",
    "record_activations",
    "register_model",
    "resolve_module",
]
