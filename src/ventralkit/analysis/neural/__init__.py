"""Model-to-brain comparison: neural predictivity (PLS, ridge), RSA and CKA of any layer and time step.

``neural_fit(features, responses, metrics=("pls",))`` scores features (an array or a mapping layer ->
array) against recorded responses with Brain-Score's metric definitions, offline; ``ventralkit
neural`` does the same for the folders ``ventralkit features`` writes. See docs/neural.md.
"""

from .fit import NeuralResult, check_inputs, neural_fit, split_half_ceilings
from .metrics import METRICS, REGRESSION_METRICS, SIMILARITY_METRICS

__all__ = ["METRICS", "REGRESSION_METRICS", "SIMILARITY_METRICS", "NeuralResult", "check_inputs", "neural_fit",
           "split_half_ceilings"]
