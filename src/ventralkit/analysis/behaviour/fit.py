"""``behaviour_fit``: do the model's errors look like the subjects'? Every score with a bootstrap interval.

The steps: read and check the trials; the model's choice probabilities for each stimulus (``decisions.py``:
its own classifier through a label map, or a logistic-regression read-out of a layer fitted on separate
images); the metrics (``metrics.py``) on the data; the same metrics on bootstrap draws of images and subjects
(``bootstrap.py``) for the intervals; the per-image and per-subject tables. ``report.py`` writes the files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import ConfigError, DataError
from . import metrics as M
from .bootstrap import bootstrap, interval
from .decisions import ModelDecisions
from .result import HUMAN_SHAPE_BIAS, BehaviourResult
from .trials import Trials, read_trials

#: the metrics scored when none are named: all that the trials support
DEFAULT_METRICS = ("i1n", "i2n", "error_consistency", "confusion", "shape_bias")
DEFAULT_BOOTSTRAP = 1000


# --------------------------------------------------------------------------- checks


def resolve_metrics(metrics, trials: Trials, ceiling: bool | None) -> list[str]:
    """The metrics to score (default: every one the trials support), after the checks that need only the trials."""
    asked = metrics is not None
    names = [metrics] if isinstance(metrics, str) else list(metrics or DEFAULT_METRICS)
    unknown = [m for m in names if m not in M.METRICS]
    if unknown:
        raise ConfigError(f"--metrics: unknown metric {unknown[0]!r}; choose from {', '.join(M.METRICS)}")
    if "shape_bias" in names and not trials.has_cues:
        if asked:
            raise ConfigError(f"--metrics shape_bias needs cue_shape and cue_texture columns in {trials.source}")
        names.remove("shape_bias")
    if "error_consistency" in names:
        if (trials.choice == trials.truth).all():
            raise DataError(f"{trials.source}: every trial is correct, so error consistency (Cohen's kappa) is "
                            "undefined; it needs trials with errors (drop error_consistency from --metrics)")
        if ceiling and len(trials.subjects) < 2:
            raise ConfigError(f"{trials.source}: a ceiling needs at least two subjects (it has "
                              f"{len(trials.subjects)}); drop --ceiling to score without one")
    return list(dict.fromkeys(names))


def _check_splits(splits: int, draws: int) -> None:
    if isinstance(splits, bool) or not isinstance(splits, (int, np.integer)) or splits < 1:
        raise ConfigError(f"--splits must be a positive integer, got {splits}")
    if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or draws < 0:
        raise ConfigError(f"--bootstrap must be 0 or more draws, got {draws}")


# --------------------------------------------------------------------------- the scores


def score_metrics(c: M.Coded, names: list[str], splits: int, seed: int, ceiling: bool) -> dict[str, M.MetricValue]:
    """Every metric of ``names`` on ``c`` (the shape bias with the subjects' own beside it)."""
    out = {}
    for name in names:
        if name in ("i1n", "i2n"):
            out[name] = M.image_level(c, collapse=name == "i1n", splits=splits, seed=seed)
        elif name == "confusion":
            out[name] = M.confusion_metric(c, splits=splits, seed=seed)
        elif name == "error_consistency":
            out[name] = M.error_consistency(c, ceiling=ceiling and c.n_subj >= 2)
            if ceiling and c.n_subj < 2 and not out[name].note:
                out[name].note = "one subject: no ceiling (it needs subject pairs)"
        elif name == "shape_bias":
            out[name] = M.shape_bias(c)
            out[HUMAN_SHAPE_BIAS] = M.shape_bias(c, humans=True)
    return out


#: the metrics whose bootstrap draws resample subjects as well as images (``bootstrap.py`` says why only these)
PER_SUBJECT = ("error_consistency", HUMAN_SHAPE_BIAS)


class _Scorer:
    """The metrics on the data, and on bootstrap draws: i1n / i2n from their signatures (rows picked), the
    others recomputed on the draw's trials (``bootstrap.py`` says which draw each metric uses)."""

    def __init__(self, c: M.Coded, names: list[str], splits: int, seed: int, ceiling: bool):
        self.c, self.names, self.splits, self.seed, self.ceiling = c, names, splits, seed, ceiling
        self.signatures = {n: M.image_signatures(c, n == "i1n", splits, seed) for n in names if n in ("i1n", "i2n")}

    def values(self) -> dict[str, M.MetricValue]:
        out = {}
        for name, v in score_metrics(self.c, [n for n in self.names if n not in self.signatures], self.splits,
                                     self.seed, self.ceiling).items():
            out[name] = v
        return {**{n: s.value() for n, s in self.signatures.items()}, **out}

    def draw(self, m: np.ndarray, w: np.ndarray | None) -> dict[str, tuple[float, float]]:
        from .bootstrap import resample

        rows = np.repeat(np.arange(self.c.n_img), m)
        out = {n: s.value(rows) for n, s in self.signatures.items()}
        pooled = [n for n in self.names if n in ("confusion", "shape_bias")]
        if pooled:
            found = score_metrics(resample(self.c, m), pooled, self.splits, self.seed, self.ceiling)
            out.update({n: found[n] for n in pooled})
        per_subject = [n for n in self.names if n in ("error_consistency", "shape_bias")]
        if per_subject:
            both = resample(self.c, m, w)
            found = score_metrics(both, per_subject, self.splits, self.seed, self.ceiling)
            out.update({n: v for n, v in found.items() if n in PER_SUBJECT})
        return {k: (v.score, v.ceiled) for k, v in out.items()}


def _score_rows(values: dict[str, M.MetricValue], draws: dict[str, np.ndarray]) -> list[dict]:
    rows = []
    for name, v in values.items():
        lo, hi = interval(draws[name][:, 0]) if name in draws else (float("nan"), float("nan"))
        clo, chi = interval(draws[name][:, 1]) if name in draws else (float("nan"), float("nan"))
        rows.append({"metric": name, "score": v.score, "ci_low": lo, "ci_high": hi, "ceiling": v.ceiling,
                     "ceiled": v.ceiled, "ceiled_ci_low": clo, "ceiled_ci_high": chi, "note": v.note})
    return rows


# --------------------------------------------------------------------------- tables


def per_image_rows(trials: Trials, c: M.Coded, names: list[str]) -> list[dict]:
    """One row per stimulus: its truth, trials, the subjects' and the model's accuracy, and i1n of both."""
    n = np.bincount(c.img, minlength=c.n_img)
    human_ok = np.bincount(c.img, weights=(c.choice == c.truth), minlength=c.n_img)
    model_ok = np.bincount(c.img, weights=(M.model_choices(c) == c.truth), minlength=c.n_img)
    human_i1n, model_i1n = M.human_signature(c, collapse=True), M.model_signature(c, collapse=True)
    labels = trials.labels
    rows = []
    for i, stimulus in enumerate(trials.stimuli):
        row = {"stimulus": stimulus, "truth": labels[c.image_truth[i]], "n_trials": int(n[i]),
               "human_accuracy": human_ok[i] / n[i], "model_accuracy": model_ok[i] / n[i],
               "model_choice": labels[int(c.probs[i].argmax())], "model_p_truth": float(c.probs[i, c.image_truth[i]]),
               "human_i1n": float(human_i1n[i]), "model_i1n": float(model_i1n[i])}
        if c.shape is not None:
            row.update(cue_shape=labels[c.shape[i]], cue_texture=labels[c.texture[i]])
        rows.append(row)
    return rows


def per_subject_rows(trials: Trials, c: M.Coded, names: list[str]) -> list[dict]:
    """One row per subject: trials, accuracy, the model's kappa with them, their mean kappa with the others and
    (with cue-conflict trials) their shape bias."""
    n = np.bincount(c.subj, minlength=c.n_subj)
    ok = np.bincount(c.subj, weights=(c.choice == c.truth), minlength=c.n_subj)
    model_k = np.full(c.n_subj, np.nan)
    human_k = np.full(c.n_subj, np.nan)
    if "error_consistency" in names:
        model_k = M._mean_over(M.model_subject_kappas(c), axis=1)
        if c.n_subj >= 2:
            human_k = M._mean_over(M.subject_pair_kappas(c), axis=1)
    rows = []
    for s, subject in enumerate(trials.subjects):
        row = {"subject": subject, "n_trials": int(n[s]), "accuracy": ok[s] / n[s],
               "model_error_consistency": float(model_k[s]), "human_error_consistency": float(human_k[s])}
        if c.shape is not None:
            m = c.subj == s
            row["shape_bias"] = M.shape_fraction(c.choice[m], c.shape[c.img[m]], c.texture[c.img[m]])[0]
        rows.append(row)
    return rows


def figure_data(c: M.Coded, names: list[str], subjects: list[str]) -> dict:
    """The numbers the figures draw (``plots.behaviour``): pairwise human kappas, shape bias per category."""
    data: dict = {}
    if "error_consistency" in names and c.n_subj >= 2:
        pairs = M.subject_pair_kappas(c)
        data["human_pair_kappas"] = [float(v) for v in pairs[np.triu_indices(c.n_subj, 1)] if np.isfinite(v)]
    if "shape_bias" in names:
        choices, images = M.model_shape_choices(c)
        data["shape_by_category"] = {
            "model": M.shape_bias_by_category(choices, c.shape[images], c.texture[images], c.n_labels).tolist(),
            "humans": M.shape_bias_by_category(c.choice, c.shape[c.img], c.texture[c.img], c.n_labels).tolist(),
            "subjects": {subjects[s]: M.shape_bias_by_category(c.choice[c.subj == s], c.shape[c.img[c.subj == s]],
                                                               c.texture[c.img[c.subj == s]], c.n_labels).tolist()
                         for s in range(c.n_subj)}}
    return data


# --------------------------------------------------------------------------- the whole fit


def behaviour_fit(model=None, trials=None, data_path=None, *, decisions: ModelDecisions | None = None,
                  label_map=None, readout_layer: str | None = None, readout_images=None, checkpoint=None,
                  labels=None, metrics=None, splits: int = 2, seed: int = 0, bootstrap_draws: int = DEFAULT_BOOTSTRAP,
                  ceiling: bool | None = None, device=None, batch_size: int = 64, workers: int | None = None,
                  image_size: int | None = None, amp: str = "none", channels_last=None, progress: bool = False,
                  output_dir=None, figures: bool = True) -> BehaviourResult:
    """Score a model's behaviour against subjects' trials: i1n, i2n, error consistency, confusion, shape bias.

    model: a registered name (with ``checkpoint``, or the published weights), a ``LoadedModel`` or a module;
        or give ``decisions`` (``ModelDecisions``: probabilities per stimulus of ``trials.stimuli``) instead.
    trials: a trials CSV (``trials.py``) or ``Trials``; data_path: the folder of the stimulus images.
    label_map: CSV ``class,label`` mapping the model's classes onto the task's labels (its own classifier);
        readout_images (+ readout_layer, default the model's ``decoder`` commitment): a logistic-regression
        read-out fitted on those images instead.
    labels: the task's label set (default: every truth, distractor and cue label of the trials).
    metrics: any of ``metrics.METRICS`` (default: every one the trials support).
    splits, seed: Brain-Score's split halves for i1n, i2n and confusion (2 splits of ``RandomState(0)``).
    bootstrap_draws: draws for the 95% intervals (0: none); ceiling: None = where there are two or more
        subjects, True = required (an error otherwise), False = none.
    output_dir: also write scores.csv, per_image.csv, per_subject.csv, run.json and plots/ (``report.py``).
    """
    trials = trials if isinstance(trials, Trials) else read_trials(trials, labels=labels)
    _check_splits(splits, bootstrap_draws)
    names = resolve_metrics(metrics, trials, ceiling)
    if decisions is None:
        from .run_model import decide

        decisions = decide(model, trials, data_path, label_map=label_map, readout_layer=readout_layer,
                           readout_images=readout_images, checkpoint=checkpoint, device=device, batch_size=batch_size,
                           workers=workers, image_size=image_size, amp=amp, channels_last=channels_last,
                           progress=progress)
    result = score_decisions(trials, decisions, names, splits=splits, seed=seed, draws=bootstrap_draws,
                             ceiling=ceiling is not False, progress=progress)
    if output_dir is not None:
        from .report import write_all

        write_all(result, Path(output_dir), figures=figures)
    return result


def score_decisions(trials: Trials, decisions: ModelDecisions, names: list[str], *, splits: int = 2, seed: int = 0,
                    draws: int = DEFAULT_BOOTSTRAP, ceiling: bool = True, progress: bool = False) -> BehaviourResult:
    """The scores, intervals and tables of ``decisions`` (probabilities per stimulus) against ``trials``."""
    from ...engine.progress import progress_bar

    if list(decisions.labels) != list(trials.labels):
        raise ConfigError(f"the decisions' labels ({', '.join(decisions.labels[:4])} ...) are not the task's "
                          f"({', '.join(trials.labels[:4])} ...)")
    c = M.encode(trials, decisions.probabilities)
    scorer = _Scorer(c, names, splits, seed, ceiling)
    values = scorer.values()
    bar = progress_bar(None, desc="bootstrap", enabled=progress and draws > 0, total=draws, unit="draw")
    try:
        found = bootstrap(c, scorer.draw, draws, seed=seed, progress=bar)
    finally:
        bar.close()
    info = {"n_trials": len(trials), "n_stimuli": c.n_img, "n_subjects": c.n_subj, "labels": list(trials.labels),
            "task": "two-way (truth vs distractor)" if c.two_way else f"{c.n_labels}-way",
            "conditions": sorted(set(trials.condition.tolist())) if trials.condition is not None else [],
            "metrics": names, "splits": splits, "seed": seed, "bootstrap_draws": draws,
            "decisions": decisions.how,
            "split_values": {k: v.splits for k, v in values.items() if v.splits}}
    return BehaviourResult(_score_rows(values, found), per_image_rows(trials, c, names),
                           per_subject_rows(trials, c, names), info, figure_data(c, names, trials.subjects))
