"""Agreement with brainscore-vision 2.4.2's own metric code (issue 26, must show): on synthetic trials, error
consistency equals its kappa computation within 1e-12 and i2n (and i1n) its I2n (I1n) within 1e-6, with the
same random state for the split halves (Brain-Score's ``RandomState(0)``).

brainscore-vision pins numpy < 2, so it runs in a separate process with its own folders on PYTHONPATH
(``make peer-brainscore``; tests/scripts/brainscore_behaviour_reference.py); without them the test skips."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ventralkit.analysis.behaviour import ModelDecisions, score_decisions, simulate_trials
from ventralkit.analysis.behaviour import metrics as M

ROOT = Path(__file__).resolve().parents[1]
PEER, PEER_DEPS = ROOT / ".peers" / "brainscore", ROOT / ".peers" / "brainscore-deps"
SCRIPT = ROOT / "tests" / "scripts" / "brainscore_behaviour_reference.py"

pytestmark = pytest.mark.skipif(
    not ((PEER / "brainscore_vision" / "metrics" / "i1i2").is_dir() and (PEER_DEPS / "numpy").is_dir()),
    reason="brainscore-vision 2.4.2 is not installed in .peers/brainscore (+ .peers/brainscore-deps): "
           "run `make peer-brainscore` (~30 s)")


def _brainscore(tmp_path, arrays: dict) -> dict:
    """Brain-Score's numbers for ``arrays`` (see the reference script), computed in its own process."""
    src, dst = tmp_path / "input.npz", tmp_path / "brainscore.json"
    np.savez(src, **arrays)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = os.pathsep.join([str(PEER), str(PEER_DEPS)])
    done = subprocess.run([sys.executable, "-S", "-W", "ignore", str(SCRIPT), str(src), str(dst)], env=env,
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(dst.read_text(encoding="utf-8"))
    assert out["numpy"].startswith("1."), "the reference must run with Brain-Score's numpy < 2"
    return out


def _text(trials, name):
    return np.asarray(getattr(trials, name), dtype=str)


def test_i2n_and_i1n_equal_brainscores_with_the_same_random_state(tmp_path):
    rng = np.random.default_rng(0)
    n_labels, n_images = 6, 36
    truth = np.arange(n_images) % n_labels
    labels = [f"obj{k}" for k in range(n_labels)]
    stimuli = [f"im{i:03d}.png" for i in range(n_images)]
    humans = rng.dirichlet(np.ones(n_labels), size=n_images)
    humans[np.arange(n_images), truth] += rng.uniform(0.2, 2.0, n_images)
    trials = simulate_trials(humans, truth, stimuli, labels, subjects=10, repeats=4, two_way=True, seed=1)
    model = humans + rng.uniform(0, 0.3, humans.shape)  # humans' probabilities with noise
    model /= model.sum(1, keepdims=True)
    probs = model[[stimuli.index(s) for s in trials.stimuli]]
    ours = score_decisions(trials, ModelDecisions(probs, labels), ["i1n", "i2n"], draws=0)
    theirs = _brainscore(tmp_path, {
        "stimulus": _text(trials, "stimulus"), "subject": _text(trials, "subject"), "truth": _text(trials, "truth"),
        "choice": _text(trials, "choice"), "distractor": _text(trials, "distractor"),
        "condition": np.full(len(trials), "all"), "probs": probs, "images": np.array(trials.stimuli),
        "labels": np.array(labels)})
    for metric in ("i2n", "i1n"):
        splits = ours.info["split_values"][metric]
        assert ours.score(metric) == pytest.approx(theirs[metric]["score"], abs=1e-6)
        assert [s["score"] for s in splits] == pytest.approx(theirs[metric]["splits"], abs=1e-6)
        assert ours.score(metric, "ceiling") == pytest.approx(theirs[metric]["ceiling"], abs=1e-6)
        assert [s["ceiling"] for s in splits] == pytest.approx(theirs[metric]["ceiling_splits"], abs=1e-6)
    assert 0.3 < ours.score("i2n") < 0.95  # a real comparison, not a degenerate one


def test_error_consistency_equals_brainscores_kappa(tmp_path):
    rng = np.random.default_rng(2)
    n_labels, n_images = 5, 40
    truth = np.arange(n_images) % n_labels
    labels = [f"c{k}" for k in range(n_labels)]
    stimuli = [f"im{i:03d}.png" for i in range(n_images)]
    humans = rng.dirichlet(np.ones(n_labels), size=n_images)
    humans[np.arange(n_images), truth] += rng.uniform(0, 2.0, n_images)
    trials = simulate_trials(humans, truth, stimuli, labels, subjects=5, conditions=["high", "low", "mid"], seed=3)
    model = rng.dirichlet(np.ones(n_labels), size=n_images)
    model[np.arange(n_images), truth] += 0.5
    probs = model[[stimuli.index(s) for s in trials.stimuli]]
    ours = score_decisions(trials, ModelDecisions(probs, labels), ["error_consistency"], draws=0)
    c = M.encode(trials, probs)
    first = c.subj == 0  # each subject saw every image once per condition: the model's choices on those trials
    theirs = _brainscore(tmp_path, {
        "stimulus": _text(trials, "stimulus"), "subject": _text(trials, "subject"), "truth": _text(trials, "truth"),
        "choice": _text(trials, "choice"), "condition": _text(trials, "condition"), "probs": probs,
        "images": np.array(trials.stimuli), "labels": np.array(labels),
        "model_stimulus": _text(trials, "stimulus")[first], "model_condition": _text(trials, "condition")[first],
        "model_choice": np.array(labels)[M.model_choices(c)[first]]})["error_consistency"]
    cells = M.model_subject_kappas(c)
    subjects, conditions = trials.subjects, sorted(set(trials.condition.tolist()))
    for cell in theirs["cells"]:
        mine = cells[subjects.index(cell["subject"]), conditions.index(cell["condition"])]
        assert abs(mine - cell["kappa"]) <= 1e-12
    assert len(theirs["cells"]) == 15 and np.isfinite(cells).all()
    # Brain-Score reports the absolute value of the mean (its aggregate); ventralkit keeps the sign
    assert abs(abs(ours.score("error_consistency")) - theirs["score"]) <= 1e-12
    assert abs(abs(ours.score("error_consistency", "ceiling")) - theirs["ceiling"]) <= 1e-12
