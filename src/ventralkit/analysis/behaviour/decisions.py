"""The model's decisions: choice probabilities over the task's labels for every stimulus.

Two ways, as in the literature:

- **its own classifier**, when its classes are (or map onto) the task's labels: the softmax over its outputs,
  each task label the mean probability of the classes mapped to it (Geirhos et al. 2019's 16-class ImageNet
  mapping aggregates this way), renormalised over the task's labels. The mapping is a label file (CSV
  ``class,label``; ``class`` an output index or a class name of the checkpoint); without one, a checkpoint
  whose class names include every task label maps each label to its own class.
- **a read-out of a layer**, fitted on separate training images (class sub-folders named by the task's
  labels): Brain-Score's ``ProbabilitiesMapping`` (features standardised, multinomial logistic regression with
  C = 1e-3), whose ``predict_proba`` gives the probabilities. CORnet's read-out layer is ``decoder.avgpool``
  (the model's ``decoder`` commitment, the default). A layer that fires several times (a recurrent module) is
  read at its last call.

The decision on a trial is the most probable label (of the two offered, in a two-way trial); i1n and i2n use the
probabilities themselves (``metrics.far_model``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import ConfigError, DataError

#: Brain-Score's read-out: ``LogisticRegression(C=1e-3)`` on standardised features (``ProbabilitiesClassifier``)
READOUT_C = 1e-3
READOUT_MAX_ITER = 500


@dataclass
class ModelDecisions:
    """Choice probabilities (stimuli x labels, rows summing to 1), and how they were made (for run.json)."""

    probabilities: np.ndarray
    labels: list[str]
    how: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- the model's own classifier


def read_label_map(path, labels: list[str], classes: list[str] | None, n_outputs: int) -> dict[str, list[int]]:
    """task label -> the model's output indices, from a CSV ``class,label`` (a header row is optional).

    ``class``: an output index (0 .. n_outputs - 1) or one of the checkpoint's class names. Every task label
    needs at least one class; labels of the file that the task does not use are ignored."""
    where = f"--label_map {path}"
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{where}: no such file")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = [[c.strip() for c in r] for r in csv.reader(fh) if any(c.strip() for c in r)]
    if rows and [c.lower() for c in rows[0][:2]] == ["class", "label"]:
        rows = rows[1:]
    names = {name: i for i, name in enumerate(classes or [])}
    mapping: dict[str, list[int]] = {}
    for n, row in enumerate(rows, start=1):
        if len(row) < 2 or not row[0] or not row[1]:
            raise DataError(f"{where} row {n}: expected two cells, class,label")
        cls, label = row[0], row[1]
        if cls in names:
            index = names[cls]
        elif cls.lstrip("-").isdigit() and 0 <= int(cls) < n_outputs:
            index = int(cls)
        else:
            raise DataError(f"{where} row {n}: {cls!r} is neither an output index (0-{n_outputs - 1}) nor a class "
                            "name of the model")
        mapping.setdefault(label, []).append(index)
    missing = [label for label in labels if label not in mapping]
    if missing:
        raise DataError(f"{where}: no class maps to the task label{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(missing[:5])}; add a row class,{missing[0]}")
    return {label: sorted(set(mapping[label])) for label in labels}


def own_label_map(labels: list[str], classes: list[str] | None) -> dict[str, list[int]]:
    """Each task label to the model's class of that name (a checkpoint trained on the task's labels)."""
    if classes is None or any(label not in classes for label in labels):
        missing = [label for label in labels if label not in (classes or [])]
        raise ConfigError(f"the model's classes are not the task's labels (e.g. {missing[0]!r} is not a class of "
                          "it): give --label_map FILE (class,label rows) or a read-out: --readout_images DIR")
    return {label: [classes.index(label)] for label in labels}


def classifier_probabilities(logits: np.ndarray, mapping: dict[str, list[int]]) -> np.ndarray:
    """Softmax over the outputs, each label the mean over its classes, renormalised over the labels."""
    z = np.asarray(logits, dtype=np.float64)
    top = max(i for idx in mapping.values() for i in idx)
    if top >= z.shape[1]:
        raise DataError(f"--label_map: class index {top} is beyond the model's {z.shape[1]} outputs")
    z = np.exp(z - z.max(1, keepdims=True))
    p = z / z.sum(1, keepdims=True)
    out = np.stack([p[:, idx].mean(1) for idx in mapping.values()], axis=1)
    return out / out.sum(1, keepdims=True)


# --------------------------------------------------------------------------- a read-out of a layer


def readout_training_images(folder, labels: list[str]) -> tuple[list[str], np.ndarray, list[str]]:
    """(image paths, label index of each, class folders left out) of the read-out's training images."""
    from ...data.listing import scan_classes

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"--readout_images {folder}: no such folder; give class sub-folders named by the task's "
                        "labels")
    try:
        classes, samples = scan_classes(folder)
    except DataError as err:
        raise DataError(f"--readout_images {folder}: {err}") from None
    missing = [label for label in labels if label not in classes]
    if missing:
        raise DataError(f"--readout_images {folder}: no class folder for the task label"
                        f"{'s' if len(missing) > 1 else ''} {', '.join(missing[:5])}; add {folder}/{missing[0]}/")
    keep = {classes.index(label): k for k, label in enumerate(labels)}
    paths = [str(p) for p, c in samples if c in keep]
    y = np.array([keep[c] for _, c in samples if c in keep], dtype=np.int64)
    return paths, y, [c for c in classes if c not in labels]


def check_separate(readout_paths: list[str], stimulus_paths: list[str]) -> None:
    """The read-out is fitted on other images than the ones scored (else it would be tested on its training set)."""
    import os

    train = {os.path.realpath(p) for p in readout_paths}
    shared = [p for p in stimulus_paths if os.path.realpath(p) in train]
    if shared:
        raise ConfigError(f"--readout_images holds {len(shared)} of the stimuli (e.g. {shared[0]}); the read-out "
                          "must be fitted on separate images")


def fit_readout(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, n_labels: int) -> tuple[np.ndarray, dict]:
    """(probabilities of ``test_x`` over the labels, facts for run.json): Brain-Score's read-out."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    present = np.unique(train_y)
    if len(present) < 2:
        raise DataError("--readout_images: the read-out needs images of at least two labels")
    scaler = StandardScaler().fit(train_x)
    clf = LogisticRegression(C=READOUT_C, solver="newton-cg", max_iter=READOUT_MAX_ITER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # recorded below instead
        clf.fit(scaler.transform(train_x), train_y)
    proba = np.zeros((len(test_x), n_labels))
    proba[:, clf.classes_] = clf.predict_proba(scaler.transform(test_x))
    facts = {"classifier": "StandardScaler + LogisticRegression (multinomial, newton-cg)", "C": READOUT_C,
             "n_train": int(len(train_y)), "train_accuracy": float(clf.score(scaler.transform(train_x), train_y)),
             "converged": bool(np.max(clf.n_iter_) < READOUT_MAX_ITER), "n_features": int(train_x.shape[1])}
    return proba, facts


# --------------------------------------------------------------------------- running the model


def model_outputs(model, paths: list[str], layer: str | None = None, *, pre=None, device=None, batch_size: int = 64,
                  workers: int | None = None, amp: str = "none", channels_last=None, progress: bool = True,
                  desc: str = "behaviour") -> np.ndarray:
    """(images, D) float64: the model's outputs (logits) for ``paths`` in order, or with ``layer`` that module's
    output at its last call, flattened. One pass through ``engine.inference.InferenceRunner``."""
    import torch

    from ...data.folders import ImageListDataset, collate_readable
    from ...engine.inference import InferenceRunner, inference_loader, loader_workers, model_device
    from ...engine.progress import progress_bar
    from ...models.interface import resolve_module

    if layer is not None:
        resolve_module(model, layer)  # a one-line error naming close layers
    dev = torch.device(device) if device is not None else model_device(model)
    pre = _preprocessing(model, pre, paths)
    transform = _uint8_transform(pre)
    workers, threads = loader_workers(workers, dev)
    loader = inference_loader(ImageListDataset(paths, transform), batch_size, workers, dev,
                              collate_fn=collate_readable)
    rows: list[np.ndarray] = []
    bar = progress_bar(None, desc=desc, enabled=progress, total=len(paths), unit="img")
    runner = InferenceRunner(model, dev, amp=amp, channels_last=channels_last, threads=threads,
                             normalize=(pre.mean, pre.std))
    try:
        with runner, runner.record([layer] if layer else [], transform=_to_host) as store:
            for step in runner.run(loader, progress=bar):
                out = store[layer][-1] if layer else _logits(step.output)
                rows.append(out.reshape(out.shape[0], -1).float().cpu().numpy())
    finally:
        bar.close()
    return np.concatenate(rows).astype(np.float64)


def _to_host(out):
    return out.detach().to("cpu", copy=True)


def _logits(output):
    """The class scores of a forward pass (a model may return a dict holding ``logits``)."""
    if isinstance(output, dict):
        if "logits" not in output:
            raise ConfigError("the model's output is a dict without 'logits'; use a read-out: --readout_layer L "
                              "--readout_images DIR")
        return output["logits"]
    return output


def _preprocessing(model, pre, paths):
    """The model's preprocessing (``auto`` resolved from the first image's size)."""
    from PIL import Image

    from ...data.transforms import resolve_auto
    from ...models.preprocessing import native_preprocessing, preprocessing_of

    pre = pre or preprocessing_of(model) or native_preprocessing(model.info)
    if pre.mode == "auto":
        with Image.open(paths[0]) as img:
            pre = resolve_auto(pre, img.size)
    return pre


def _uint8_transform(pre):
    from ...data.transforms import uint8_pipeline

    return uint8_pipeline(pre)


def readout_layer_of(model) -> str | None:
    """The module the model commits to for behaviour (``decoder`` in its area commitments), if any."""
    from ...models.commitments import area_commitments

    found = area_commitments(model).get("decoder")
    return found.module if found else None
