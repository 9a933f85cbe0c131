"""Model-to-brain comparison: neural predictivity (PLS, ridge), RSA and CKA of any layer and time step.

``neural_fit(features, responses, metrics=("pls",))`` scores features (an array or a mapping layer ->
array) against recorded responses with Brain-Score's metric definitions, offline; ``ventralkit
neural`` does the same for the folders ``ventralkit features`` writes. See docs/neural.md.
The metrics are entries of a registry (``registry.py``): ``register_metric(NeuralMetric(...))`` adds one.
"""

from .fit import NeuralResult, check_inputs, neural_fit, split_half_ceilings
from .registry import (
    LayerView,
    MetricScore,
    NeuralMetric,
    get_metric,
    metric_names,
    register_metric,
    regression_score,
    unregister_metric,
)

__all__ = ["METRICS", "REGRESSION_METRICS", "SIMILARITY_METRICS", "LayerView", "MetricScore", "NeuralMetric",
           "NeuralResult", "check_inputs", "get_metric", "metric_names", "neural_fit", "register_metric",
           "regression_score", "split_half_ceilings", "unregister_metric"]


def __getattr__(name: str):
    """``METRICS`` (every registered name), ``REGRESSION_METRICS``, ``SIMILARITY_METRICS``: read from the registry
    when asked, so they include metrics registered later."""
    kinds = {"METRICS": None, "REGRESSION_METRICS": "regression", "SIMILARITY_METRICS": "similarity"}
    if name in kinds:
        return metric_names(kinds[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
