"""Behaviour: do the model's errors look like a primate's? i1n, i2n, error consistency, shape bias, confusion.

``behaviour_fit(model, trials="trials.csv", data_path="stimuli/")`` scores a model's choices against subjects'
trials with the definitions of Rajalingham et al. 2018 (i1n, i2n), Geirhos et al. 2020 (error consistency) and
Geirhos et al. 2019 (shape bias), as Brain-Score computes them, each with a bootstrap interval over images and
subjects; ``ventralkit behaviour`` does the same from the command line. See docs/behaviour.md.
"""

from .decisions import ModelDecisions
from .fit import behaviour_fit, score_decisions
from .result import BehaviourResult
from .metrics import METRICS
from .synthetic import simulate_trials
from .trials import Trials, make_trials, read_trials

__all__ = ["METRICS", "BehaviourResult", "ModelDecisions", "Trials", "behaviour_fit", "make_trials", "read_trials",
           "score_decisions", "simulate_trials"]
