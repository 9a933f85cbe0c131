"""ventralkit's RSA against rsatoolbox 0.3.2 itself, on seeded data, to 1e-10.

rsatoolbox is never a dependency: `make peer-rsatoolbox` installs it into .peers/rsatoolbox, and
tests/scripts/rsatoolbox_reference.py runs it in a subprocess with that folder on PYTHONPATH (or the
running interpreter, when it can import rsatoolbox itself). Without either the test skips and says how
to install it. Data: 20 conditions x 4 runs x 60 channels (every RDM method, the noise precision),
40 stimuli x 8 subjects x 3 model RDMs (every comparator, eval_fixed, the noise ceiling bounds).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ventralkit.analysis.neural import ceilings as C
from ventralkit.analysis.neural import rsa

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT / ".peers" / "rsatoolbox"
SCRIPT = ROOT / "tests" / "scripts" / "rsatoolbox_reference.py"
TOL = 1e-10


def _peer_env() -> dict | None:
    """The environment that runs rsatoolbox, or None when it is not installed anywhere we look."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if (PEER / "rsatoolbox").is_dir():
        env["PYTHONPATH"] = os.pathsep.join([str(PEER), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        return env
    if importlib.util.find_spec("rsatoolbox") is not None:
        return env
    return None


def seeded_inputs(seed: int = 0) -> dict[str, np.ndarray]:
    """The test's data: runs of trials with planted structure, Poisson counts, model and subject RDMs."""
    rng = np.random.default_rng(seed)
    n_cond, n_runs, n_chan = 20, 4, 60
    signal = rng.normal(size=(n_cond, n_chan))
    mixing = rng.normal(size=(n_chan, n_chan)) / np.sqrt(n_chan)  # correlated channel noise
    trials = signal[None] + 0.8 * rng.normal(size=(n_runs, n_cond, n_chan)) @ mixing
    counts = rng.poisson(np.exp(rng.normal(1.0, 0.5, size=(n_cond, n_chan)))).astype(np.float64)

    n_stim, n_subj, n_vox = 40, 8, 30
    truth = rng.normal(size=(n_stim, n_vox))
    subject_rdms = np.array([rsa.rdm(truth + 1.5 * rng.normal(size=truth.shape), "correlation")
                             for _ in range(n_subj)])
    categories = np.repeat(np.arange(4), n_stim // 4)  # a categorical model: 0 / 1 with many ties
    model_rdms = np.array([rsa.rdm(truth + 0.5 * rng.normal(size=truth.shape), "euclidean"),
                           rsa.rdm(rng.normal(size=truth.shape), "correlation"),
                           rsa.condensed((categories[:, None] != categories[None, :]).astype(np.float64))])
    return {"trials": trials, "runs": np.arange(n_runs), "counts": counts, "subject_rdms": subject_rdms,
            "model_rdms": model_rdms}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """rsatoolbox's numbers (an npz written by the reference script) and the inputs they were made from."""
    env = _peer_env()
    if env is None:
        pytest.skip("rsatoolbox 0.3.2 is not installed: run `make peer-rsatoolbox` (installs it into "
                    ".peers/rsatoolbox, never into .venv)")
    folder = tmp_path_factory.mktemp("rsatoolbox")
    inputs = seeded_inputs()
    np.savez(folder / "in.npz", **inputs)
    proc = subprocess.run([sys.executable, str(SCRIPT), str(folder / "in.npz"), str(folder / "out.npz")],
                          env=env, cwd=folder, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(folder / "out.npz") as z:
        return inputs, {k: z[k] for k in z.files}


def test_reference_is_rsatoolbox_0_3_2(reference):
    _, ref = reference
    assert str(ref["version"]) == "0.3.2"


def test_noise_precision_matches_prec_from_unbalanced(reference):
    inputs, ref = reference
    np.testing.assert_allclose(rsa.noise_precision(inputs["trials"]), ref["precision"], rtol=TOL, atol=TOL)


@pytest.mark.parametrize("method", rsa.RDM_METHODS)
def test_every_rdm_method(reference, method):
    inputs, ref = reference
    trials, runs = inputs["trials"], inputs["runs"]
    noise = ref["precision"] if method in rsa.NOISE_METHODS else None
    data = inputs["counts"] if method == "poisson" else trials  # Poisson rates must be positive
    ours = rsa.rdm(data, method, runs=runs, noise=noise)
    assert ours.shape == ref[f"rdm_{method}"].shape == (190,)
    np.testing.assert_allclose(ours, ref[f"rdm_{method}"], rtol=TOL, atol=TOL)


def test_crossnobis_without_a_noise_precision(reference):
    inputs, ref = reference
    np.testing.assert_allclose(rsa.rdm(inputs["trials"], "crossnobis", runs=inputs["runs"]),
                               ref["rdm_crossnobis_eye"], rtol=TOL, atol=TOL)


@pytest.mark.parametrize("comparator", rsa.COMPARATORS)
def test_every_comparator(reference, comparator):
    inputs, ref = reference
    ours = rsa.compare(inputs["model_rdms"], inputs["subject_rdms"], comparator)
    assert ours.shape == (3, 8)
    np.testing.assert_allclose(ours, ref[f"compare_{comparator}"], rtol=TOL, atol=TOL)
    # one pair at a time gives the same numbers as the vectorised call
    assert abs(rsa.compare(inputs["model_rdms"][2], inputs["subject_rdms"][5], comparator) - ours[2, 5]) < TOL


@pytest.mark.parametrize("comparator", rsa.COMPARATORS)
def test_fixed_evaluation_and_noise_ceiling(reference, comparator):
    inputs, ref = reference
    evals = C.evaluate_fixed(inputs["model_rdms"], inputs["subject_rdms"], comparator)
    np.testing.assert_allclose(evals, ref[f"eval_{comparator}"], rtol=TOL, atol=TOL)
    np.testing.assert_allclose(evals.mean(axis=1), ref[f"eval_mean_{comparator}"], rtol=TOL, atol=TOL)
    np.testing.assert_allclose(C.fixed_sem(evals), ref[f"eval_sem_{comparator}"], rtol=TOL, atol=TOL)
    lower, upper = C.subject_noise_ceiling(inputs["subject_rdms"], comparator)
    np.testing.assert_allclose([lower, upper], ref[f"ceiling_{comparator}"], rtol=TOL, atol=TOL)
    assert lower < upper
