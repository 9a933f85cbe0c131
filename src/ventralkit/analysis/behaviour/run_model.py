"""The model's decisions for the trials' stimuli: load it, find the images, run it once, map or read out.

Models come through the one loader (``models.loading.load_model``), so every model source ventralkit knows
works the same way; images through the one forward-pass owner (``engine.inference.InferenceRunner``).
"""

from __future__ import annotations

from pathlib import Path

from ...errors import ConfigError
from .decisions import (ModelDecisions, check_separate, classifier_probabilities, fit_readout, model_outputs,
                        own_label_map, read_label_map, readout_layer_of, readout_training_images)
from .trials import Trials, match_images


def stimulus_paths(trials: Trials, data_path) -> list[str]:
    """The image file of each stimulus of ``trials.stimuli``, found in ``data_path`` by file name."""
    from ..features import image_paths

    if data_path is None:
        raise ConfigError("give --data_path IMGS: the folder of the stimulus images")
    folder = Path(data_path)
    if not folder.is_dir():
        raise ConfigError(f"--data_path {folder}: no such folder")
    images = [str(p) for p in image_paths(folder)]
    rows = match_images(trials.stimuli, images, trials.source, f"--data_path {folder}")
    return [images[r] for r in rows]


def load(model, checkpoint=None, image_size=None):
    """A ``LoadedModel`` from a name (with ``checkpoint``, else the published weights), or as given."""
    from ...models.loading import LoadedModel, load_model

    if isinstance(model, LoadedModel) or hasattr(model, "forward"):
        return model
    if model is None and checkpoint is None:
        raise ConfigError("give a model (--model NAME / --ckpt_path FILE) or the decisions")
    return load_model(model, checkpoint=checkpoint, pretrained=checkpoint is None, image_size=image_size)


def decide(model, trials: Trials, data_path, *, label_map=None, readout_layer=None, readout_images=None,
           checkpoint=None, device=None, batch_size=64, workers=None, image_size=None, amp="none",
           channels_last=None, progress=False) -> ModelDecisions:
    """Choice probabilities of ``model`` for every stimulus of ``trials``: its classifier (through
    ``label_map``, or its own class names), or a read-out of ``readout_layer`` fitted on ``readout_images``."""
    labels = list(trials.labels)
    if label_map is not None and readout_images is not None:
        raise ConfigError("give --label_map (the model's own classifier) or --readout_images (a read-out), not both")
    if readout_layer is not None and readout_images is None:
        raise ConfigError("--readout_layer needs --readout_images DIR: the read-out's training images, one class "
                          "folder per task label")
    paths = stimulus_paths(trials, data_path)
    readout = readout_training_images(readout_images, labels) if readout_images is not None else None
    if readout is not None:
        check_separate(readout[0], paths)
    loaded = load(model, checkpoint, image_size)
    net = getattr(loaded, "model", loaded)
    pre = getattr(loaded, "preprocessing", None)
    run = dict(pre=pre, device=device, batch_size=batch_size, workers=workers, amp=amp, channels_last=channels_last,
               progress=progress)
    how = {"model": _describe(loaded), "stimuli_folder": str(Path(data_path).resolve())}
    if readout is None:
        classes = getattr(loaded, "classes", None)
        mapping = (read_label_map(label_map, labels, classes, _outputs(net)) if label_map is not None
                   else own_label_map(labels, classes))
        probs = classifier_probabilities(model_outputs(net, paths, **run, desc="model outputs"), mapping)
        how.update(kind="classifier", label_map=str(Path(label_map).resolve()) if label_map else "own class names",
                   aggregation="mean softmax probability of the classes of each label, renormalised",
                   classes_per_label={k: v for k, v in mapping.items()})
        return ModelDecisions(probs, labels, how)
    layer = readout_layer or readout_layer_of(net)
    if layer is None:
        from ...models.commitments import area_commitments

        areas = [(a, c.module) for a, c in area_commitments(net).items() if a != "decoder"]
        hint = f" (e.g. {areas[-1][1]}, its last area '{areas[-1][0]}', or the pooling after it)" if areas else ""
        raise ConfigError(f"this model commits no read-out layer; name one with --readout_layer MODULE{hint}")
    train_paths, train_y, ignored = readout
    train_x = model_outputs(net, train_paths, layer, **run, desc="read-out images")
    test_x = model_outputs(net, paths, layer, **run, desc="stimuli")
    probs, facts = fit_readout(train_x, train_y, test_x, len(labels))
    how.update(kind="readout", layer=layer, time_step="last call of the layer",
               readout_images=str(Path(readout_images).resolve()), ignored_classes=ignored, **facts)
    return ModelDecisions(probs, labels, how)


def _outputs(net) -> int:
    info = getattr(net, "info", None)
    if info is not None and getattr(info, "num_classes", None):
        return int(info.num_classes)
    return 1 << 30  # unknown: any index is accepted here and checked by the forward pass's width


def _describe(loaded) -> dict:
    if hasattr(loaded, "describe"):
        return loaded.describe()
    info = getattr(loaded, "info", None)
    return {"model": getattr(info, "name", type(loaded).__name__)}
