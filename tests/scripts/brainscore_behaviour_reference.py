"""brainscore-vision 2.4.2's behavioural numbers for tests/test_behaviour_brainscore.py, in a separate process.

    PYTHONPATH=.peers/brainscore:.peers/brainscore-deps python -S tests/scripts/brainscore_behaviour_reference.py \
        INPUT.npz OUTPUT.json

brainscore-vision pins numpy < 2, so it never enters ventralkit's environment: ``make peer-brainscore`` puts it
and its metric modules' dependencies (numpy 1.26, xarray < 2022.6, pandas, scipy, scikit-learn < 1.6, netCDF4,
boto3, Pillow) into .peers/, and this script runs with ``python -S`` so only those are importable. Only the two
metric modules are imported (``metrics/i1i2/metric.py``, ``metrics/error_consistency/metric.py``): the package's
``__init__`` (plugin registries, benchmarks, model helpers) is replaced by an empty package object.

INPUT: the trials (``stimulus``, ``subject``, ``truth``, ``choice``, ``distractor``, ``condition``), the model's
probabilities (``probs``: stimuli x labels, rows in the order of ``images``, columns of ``labels``) and its
choices per (stimulus, condition) for error consistency (``model_stimulus``, ``model_condition``,
``model_choice``). OUTPUT: Brain-Score's I2n and I1n scores and ceilings with their per-split values, and the
error consistency per subject and condition, its aggregate and its subject-pair ceiling.
"""

from __future__ import annotations

import json
import os
import sys
import types


def _import_metrics():
    """The two metric modules without running ``brainscore_vision/__init__.py``."""
    import importlib.util

    spec = importlib.util.find_spec("brainscore_core")
    if spec is None:
        sys.exit("brainscore_core is not importable: set PYTHONPATH to .peers/brainscore:.peers/brainscore-deps")
    root = os.path.dirname(os.path.dirname(spec.origin))
    package = types.ModuleType("brainscore_vision")
    package.__path__ = [os.path.join(root, "brainscore_vision")]
    package.metric_registry = {}  # what the metric packages' __init__ register into
    sys.modules["brainscore_vision"] = package
    from brainscore_vision.metrics.error_consistency.metric import ErrorConsistency
    from brainscore_vision.metrics.i1i2.metric import I1n, I2n

    return I1n, I2n, ErrorConsistency


def _assemblies(inp):
    from brainscore_core.supported_data_standards.brainio.assemblies import BehavioralAssembly

    images, labels = [str(x) for x in inp["images"]], [str(x) for x in inp["labels"]]
    # a second coordinate on each dimension: BrainIO makes a level of a MultiIndex of each only then
    probabilities = BehavioralAssembly(inp["probs"], coords={"stimulus_id": ("presentation", images),
                                                             "stimulus_index": ("presentation", range(len(images))),
                                                             "choice": ("choice", labels)},
                                       dims=["presentation", "choice"])
    coords = {"stimulus_id": ("presentation", inp["stimulus"].astype(str)),
              "truth": ("presentation", inp["truth"].astype(str)),
              "subject": ("presentation", inp["subject"].astype(str)),
              "condition": ("presentation", inp["condition"].astype(str))}
    if "distractor" in inp:
        coords["sample_obj"] = ("presentation", inp["truth"].astype(str))
        coords["dist_obj"] = ("presentation", inp["distractor"].astype(str))
    trials = BehavioralAssembly(inp["choice"].astype(str), coords=coords, dims=["presentation"])
    return probabilities, trials


def _model_labels(inp):
    from brainscore_core.supported_data_standards.brainio.assemblies import BehavioralAssembly

    stimuli = inp["model_stimulus"].astype(str)
    truth = dict(zip(inp["stimulus"].astype(str), inp["truth"].astype(str)))
    return BehavioralAssembly(inp["model_choice"].astype(str), coords={
        "stimulus_id": ("presentation", stimuli), "truth": ("presentation", [truth[s] for s in stimuli]),
        "condition": ("presentation", inp["model_condition"].astype(str))}, dims=["presentation"])


def _split_values(score):
    return [float(v) for v in score.attrs["raw"].values]


def main(src: str, dst: str) -> None:
    import numpy as np

    I1n, I2n, ErrorConsistency = _import_metrics()
    inp = dict(np.load(src, allow_pickle=False))
    out = {"numpy": np.__version__}
    if "distractor" in inp:  # Brain-Score's I1n / I2n are defined on two-way trials
        for name, metric in (("i2n", I2n()), ("i1n", I1n())):
            probabilities, trials = _assemblies(inp)
            score = metric(probabilities, trials)
            # skipna=True: an (image, distractor) cell that only one half has is left out of the correlation; with
            # the default (False) Brain-Score asserts that the first half has no such cell (its data set has none)
            ceiling = metric.ceiling(trials, skipna=True)
            out[name] = {"score": float(score), "splits": _split_values(score),
                         "ceiling": float(ceiling), "ceiling_splits": _split_values(ceiling)}
    if "model_choice" in inp:
        _, trials = _assemblies(inp)
        metric = ErrorConsistency()
        score = metric(_model_labels(inp), trials)
        raw = score.attrs["raw"]
        cells = [{"subject": str(s), "condition": str(q), "kappa": float(raw.sel(subject=s, condition=q))}
                 for s in raw["subject"].values for q in raw["condition"].values]
        ceiling = metric.ceiling(trials)
        out["error_consistency"] = {"score": float(score), "cells": cells, "ceiling": float(ceiling)}
    with open(dst, "w", encoding="utf-8") as fh:
        json.dump(out, fh)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
