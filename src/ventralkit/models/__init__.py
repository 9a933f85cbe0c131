"""What a network is: the registry, the uniform interface, weight loading and the model families."""

from .interface import record_activations, resolve_module
from .registry import ModelInfo, count_parameters, create_model, list_models, model_info, register_model

__all__ = [
    "ModelInfo",
    "count_parameters",
    "create_model",
    "list_models",
    "model_info",
    "record_activations",
    "register_model",
    "resolve_module",
]
