"""rsatoolbox's numbers for tests/test_rsa_agreement.py, computed in a separate process.

    PYTHONPATH=.peers/rsatoolbox python tests/scripts/rsatoolbox_reference.py INPUT.npz OUTPUT.npz

INPUT holds the seeded arrays the test made; OUTPUT gets rsatoolbox 0.3.2's RDMs, comparisons, fixed
evaluations and noise ceilings of them, under the names the test reads. rsatoolbox is never imported
by ventralkit itself: this script is the only place it runs.
"""

from __future__ import annotations

import sys

import numpy as np
import rsatoolbox
from rsatoolbox.data import Dataset
from rsatoolbox.data.noise import prec_from_unbalanced
from rsatoolbox.inference import eval_fixed
from rsatoolbox.model import ModelFixed
from rsatoolbox.rdm import RDMs, calc_rdm, compare

#: ventralkit's comparator name -> rsatoolbox's
COMPARATORS = {"spearman": "spearman", "rho-a": "rho-a", "tau-a": "tau-a", "pearson": "corr", "cosine": "cosine",
               "corr_cov": "corr_cov", "cosine_cov": "cosine_cov"}


def runs_dataset(trials: np.ndarray, runs: np.ndarray) -> Dataset:
    """(trials, conditions, channels) as rsatoolbox observations with 'conds' and 'runs' descriptors."""
    t, n, k = trials.shape
    return Dataset(trials.reshape(t * n, k),
                   obs_descriptors={"conds": np.tile(np.arange(n), t), "runs": np.repeat(runs, n)})


def rdm_methods(inp, out) -> None:
    trials, runs = inp["trials"], inp["runs"]
    ds = runs_dataset(trials, runs)
    prec = prec_from_unbalanced(ds, "conds")
    out["precision"] = prec
    for method in ("euclidean", "correlation"):
        out[f"rdm_{method}"] = calc_rdm(ds, method=method, descriptor="conds").get_vectors()[0]
    out["rdm_mahalanobis"] = calc_rdm(ds, method="mahalanobis", descriptor="conds", noise=prec).get_vectors()[0]
    out["rdm_crossnobis"] = calc_rdm(ds, method="crossnobis", descriptor="conds", noise=prec,
                                     cv_descriptor="runs").get_vectors()[0]
    out["rdm_crossnobis_eye"] = calc_rdm(ds, method="crossnobis", descriptor="conds",
                                         cv_descriptor="runs").get_vectors()[0]
    counts = inp["counts"]  # poisson on count data, where it belongs
    cds = Dataset(counts)
    out["rdm_poisson"] = calc_rdm(cds, method="poisson").get_vectors()[0]


def comparisons(inp, out) -> None:
    models, subjects = RDMs(inp["model_rdms"]), RDMs(inp["subject_rdms"])
    for ours, theirs in COMPARATORS.items():
        out[f"compare_{ours}"] = compare(models, subjects, method=theirs)
        ms = [ModelFixed(f"m{i}", models[i]) for i in range(models.n_rdm)]
        result = eval_fixed(ms, subjects, method=theirs)
        out[f"eval_{ours}"] = result.evaluations[0]  # (models, subjects)
        out[f"eval_mean_{ours}"] = result.get_means()
        out[f"eval_sem_{ours}"] = result.get_sem()
        out[f"ceiling_{ours}"] = np.array(result.noise_ceiling, dtype=np.float64)  # (lower, upper)


def main(argv) -> int:
    inp = dict(np.load(argv[1]))
    out = {"version": np.array(getattr(rsatoolbox, "__version__", "") or _dist_version())}
    rdm_methods(inp, out)
    comparisons(inp, out)
    np.savez(argv[2], **out)
    return 0


def _dist_version() -> str:
    from importlib.metadata import version

    return version("rsatoolbox")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
