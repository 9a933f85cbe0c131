"""ventralkit: build, train, evaluate and probe brain-like models of the primate ventral stream.

The Python API mirrors the command-line tool: every ``ventralkit <command>`` is one call here.
Heavy parts (engine, analyses) are imported on first use so ``import ventralkit`` stays quick.
"""

from __future__ import annotations

import importlib

from .errors import VentralkitError
from .version import __version__ as __version__  # re-exported: ventralkit.__version__

# public name -> module that defines it (loaded lazily: the command line's torch-free commands import
# ventralkit without paying for torch)
_LAZY = {
    "count_parameters": "ventralkit.models",
    "create_model": "ventralkit.models",
    "list_models": "ventralkit.models",
    "model_info": "ventralkit.models",
    "record_activations": "ventralkit.models",
    "load": "ventralkit.models.loading",
    "load_model": "ventralkit.models.loading",
    "LoadedModel": "ventralkit.models.loading",
    "wrap": "ventralkit.models.sources",
    "TrainConfig": "ventralkit.engine.config",
    "evaluate": "ventralkit.engine.evaluate",
    "extract_features": "ventralkit.analysis.features",
    "corrupt_dataset": "ventralkit.analysis.robustness",
    "evaluate_robustness": "ventralkit.analysis.robustness",
    "probe_v1": "ventralkit.analysis.v1_probe",
    "brainscore_model": "ventralkit.integrations.brainscore",
    "neural_fit": "ventralkit.analysis.neural",
    "select_layer": "ventralkit.analysis.neural.mapping",
    "score_time_bins": "ventralkit.analysis.neural.timebins",
    "behaviour_fit": "ventralkit.analysis.behaviour",
}

__all__ = ["VentralkitError", "train", *_LAZY]


def train(config=None, **overrides):
    """Train a registered model (``engine.train.train``; ``TrainConfig`` lists every option), then draw
    each trained run folder's ``plots/curves.png`` from its records, as ``ventralkit train`` does.

    Returns the ``TrainResult``. The engine writes records only; the figure is drawn here, by ``plots``."""
    from .engine.train import train as train_run
    from .plots.curves import draw_run_curves

    result = train_run(config, **overrides)
    if result is not None:  # a staged run whose stages had all finished trains nothing
        draw_run_curves(result.trained)
    return result


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ventralkit' has no attribute {name!r}")
