"""Synthetic subjects: trials drawn from known choice probabilities, to check a pipeline before real data.

``simulate_trials(probs, truth, stimuli, labels, subjects=8)`` lets every subject see every image (``repeats``
times) and choose by ``probs[image]``: among all labels, or in a two-way task between the truth and a random
distractor with Luce's rule, ``p_d / (p_d + p_truth)``, the same rule the model's two-way choice probabilities
follow. The tests and the worked example in docs/behaviour.md use it: since the generating probabilities are
known, so is what a model that has them should score.
"""

from __future__ import annotations

import numpy as np

from .trials import Trials, make_trials


def simulate_trials(probs, truth, stimuli, labels, subjects: int = 8, repeats: int = 1, two_way: bool = False,
                    conditions=None, lapse: float = 0.0, cues=None, seed: int = 0) -> Trials:
    """Trials of ``subjects`` synthetic subjects (``s00``, ``s01`` ...) choosing by ``probs`` (images x labels).

    truth: the label index of each image; stimuli: the image names; labels: the label names.
    conditions: names; each subject then sees every image once per condition (same probabilities).
    lapse: the probability of a uniformly random answer instead (per trial).
    cues: ``(shape, texture)`` label indices per image, written as the cue columns.
    """
    rng = np.random.default_rng(seed)
    probs = np.asarray(probs, dtype=float)
    probs = probs / probs.sum(1, keepdims=True)
    n_img, n_labels = probs.shape
    truth = np.asarray(truth, dtype=np.int64)
    conds = list(conditions) if conditions else [None]
    img = np.tile(np.repeat(np.arange(n_img), repeats), subjects * len(conds))
    subj = np.repeat(np.arange(subjects), n_img * repeats * len(conds))
    cond = np.tile(np.repeat(np.arange(len(conds)), n_img * repeats), subjects)
    if two_way:
        offset = rng.integers(1, n_labels, size=len(img))  # a distractor other than the truth, uniformly
        dist = (truth[img] + offset) % n_labels
        p_d = probs[img, dist] / (probs[img, dist] + probs[img, truth[img]])
        choice = np.where(rng.random(len(img)) < p_d, dist, truth[img])
        guess = np.where(rng.random(len(img)) < 0.5, dist, truth[img])
    else:
        dist = None
        cum = probs[img].cumsum(1)
        choice = np.minimum((rng.random(len(img))[:, None] > cum).sum(1), n_labels - 1)
        guess = rng.integers(0, n_labels, size=len(img))
    choice = np.where(rng.random(len(img)) < lapse, guess, choice)
    names = np.asarray(labels, dtype=object)
    columns = {"stimulus": np.asarray(stimuli, dtype=object)[img], "subject": [f"s{s:02d}" for s in subj],
               "truth": names[truth[img]], "choice": names[choice]}
    if dist is not None:
        columns["distractor"] = names[dist]
    if conditions:
        columns["condition"] = [str(conds[q]) for q in cond]
    if cues is not None:
        shape, texture = (np.asarray(x, dtype=np.int64) for x in cues)
        columns["cue_shape"], columns["cue_texture"] = names[shape[img]], names[texture[img]]
    return make_trials(**columns, labels=list(labels), where="simulated trials")


def confusion_probabilities(truth, partner, error, n_labels: int) -> np.ndarray:
    """Choice probabilities with a known confusion structure: image i is its truth with ``1 - error[i]`` and
    its label's ``partner`` with ``error[i]`` (``partner``: label -> label; ``error``: per image)."""
    truth = np.asarray(truth, dtype=np.int64)
    error = np.asarray(error, dtype=float)
    probs = np.zeros((len(truth), n_labels))
    rows = np.arange(len(truth))
    probs[rows, truth] = 1.0 - error
    probs[rows, np.asarray(partner)[truth]] += error
    return probs
