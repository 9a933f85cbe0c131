"""One way to load a model: (a name or a checkpoint, options) -> the model and what it knows.

Every command and the Python API go through ``load_model``, so a checkpoint is read once, safely
(``weights_only``), with the family's state-dict converter, and a ventralkit checkpoint supplies
its model name, model options, class count, class names, training image size and preprocessing.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ..errors import CheckpointError, ConfigError
from .preprocessing import Preprocessing, checkpoint_preprocessing, resolve
from .model_spec import is_source_spec
from .registry import build_model, canonical_name, model_info, state_dict_converter
from .sources import load_source, refuse_unnamed_code
from .sources.adapt import set_num_classes
from .download import known_sha256
from .weights import CHECKPOINT_FORMAT, extract_state_dict, load_weights, pretrained_check, read_checkpoint


@dataclass
class LoadedModel:
    """A model with the facts every consumer needs: where its weights came from and how to feed it."""

    model: nn.Module
    name: str
    weights: str  # "random" | "pretrained" | "checkpoint"
    source: str | None = None  # the weights file
    classes: list[str] | None = None
    preprocessing: Preprocessing | None = None  # how to feed it (resolved once, in load_model)
    config: dict = field(default_factory=dict)  # the training config of a ventralkit checkpoint
    weights_sha256: str | None = None  # of the weights file (recorded in the weights folder's hashes.json)

    @property
    def info(self):
        return self.model.info

    @property
    def image_size(self) -> int:
        """The size it was trained at (ventralkit checkpoint) or its native size: ``preprocessing.image_size``."""
        return self.preprocessing.image_size

    @property
    def eval_transform(self) -> str:
        """How evaluation images are prepared (``preprocessing.mode``: resize_crop | none from a checkpoint)."""
        return self.preprocessing.mode

    def provenance(self) -> dict:
        """Where the model came from (``models.sources``): library and version, weights name, file and sha256,
        Brain-Score's commitment used as its areas, what the preprocessing was read from; for a registered
        model, the registry and its weights file."""
        found = (getattr(self.info, "extra", None) or {}).get("source")
        record = dict(found) if isinstance(found, dict) else {}  # a family's own extra may say other things
        if not record or record.get("library") == "ventralkit":  # a registered model
            record.update(spec=self.name, library="ventralkit", weights=self.weights, weights_file=self.source,
                          weights_sha256=self.weights_sha256)
        elif self.weights == "checkpoint":  # a source model's tensors from a checkpoint
            record.update(checkpoint=self.source, checkpoint_sha256=self.weights_sha256)
        record["preprocessing"] = self.preprocessing.to_dict()
        return record

    def describe(self) -> dict:
        """What to record in a results file so the numbers can be traced to their weights and preprocessing."""
        return {"model": self.name, "weights": self.weights, "weights_file": self.source,
                "weights_sha256": self.weights_sha256, "source": self.provenance(),
                "model_kwargs": dict(self.config.get("model_kwargs") or {}), "num_classes": self.info.num_classes,
                "image_size": self.image_size, "eval_transform": self.eval_transform,
                "preprocessing": self.preprocessing.to_dict()}


def checkpoint_metadata(ckpt: dict) -> dict:
    """The metadata a ventralkit checkpoint carries (empty for other layouts)."""
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        return {}
    return {k: ckpt.get(k) for k in ("model_name", "num_classes", "classes", "config", "preprocessing")}


def model_state(name: str, ckpt: dict) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors under this model's names (wrapper prefixes removed, family converter applied)."""
    state = extract_state_dict(ckpt)
    convert = state_dict_converter(name)
    return convert(state) if convert is not None else state


def load_model(
    name: str | None = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    pretrained: bool = False,
    num_classes: int | None = None,
    model_kwargs: dict | None = None,
    reset_classifier: bool = False,
    trust: bool = False,
    image_size: int | None = None,
    preprocess: str | None = None,
    weights: str | None = None,
) -> LoadedModel:
    """Build ``name`` (or the checkpoint's model) and load its weights.

    - ``checkpoint``: an original file (CORnet model zoo, V1-ResNet ``main.py``, micromind), a state dict
      or a ventralkit checkpoint; the classifier takes the file's class count unless ``num_classes`` says
      otherwise. ``pretrained``: the published file from the weights folder, downloaded and checked when
      missing (``models.download``). Neither: random weights.
    - ``reset_classifier``: load everything, then a fresh classifier of ``num_classes`` (fine-tuning).
    - ``trust``: allow a file that needs full unpickling (it could run code; refused by default).
    - ``image_size`` / ``preprocess`` (any of the three vocabularies, ``preprocessing.MODE_ALIASES``):
      flags applied to the preprocessing, which otherwise comes from the checkpoint (its stored record,
      or an older ventralkit checkpoint's training config) or the model's metadata. The result is
      ``LoadedModel.preprocessing`` and ``model.preprocessing``; ``model.info.input_size`` stays the
      architecture's native size.
    - ``name`` may be a source spec (``models.model_spec``): ``torchvision:NAME``, ``timm:NAME`` or
      ``file.py:factory``; ``weights`` names that library's weights (``DEFAULT``, ``IMAGENET1K_V2``, a timm
      tag; ``pretrained`` means ``DEFAULT``), none = random initialisation. A checkpoint of such a model
      stores its spec, so ``checkpoint=`` alone rebuilds it (a file's factory only when ``name`` names it).
    """
    if pretrained and checkpoint:
        raise ConfigError("give --pretrained or --ckpt_path (checkpoint=...), not both")
    ckpt, meta, source, sha256 = None, {}, None, None
    if checkpoint is not None:
        source = str(checkpoint)
        ckpt = read_checkpoint(checkpoint, trust=trust)
        meta = checkpoint_metadata(ckpt)
    config = dict(meta.get("config") or {})
    saved = meta.get("model_name")
    refuse_unnamed_code(saved, name, f"checkpoint {source}")
    if name is None:
        name = saved or "cornet_z"
    name = canonical_name(name)
    from_source = is_source_spec(name)  # torchvision: / timm: / file.py:factory (models.sources)
    if weights is not None and not from_source:  # a registered model has one set: its published weights
        pretrained, weights = _published_weights(name, weights, checkpoint), None
    if saved and saved != name:
        raise CheckpointError(f"checkpoint {source} holds a {saved} model, not {name}; drop --model or pass "
                              f"--model {saved}")
    info = None if from_source else model_info(name)  # an unknown name fails here, in one line
    kwargs = {**(config.get("model_kwargs") or {}), **(model_kwargs or {})}
    if pretrained and not from_source:
        checked = pretrained_check(info)  # downloads a missing file; the hash policy of models/download.py
        source, sha256 = str(checked.path), checked.sha256
        ckpt = read_checkpoint(source, trust=trust)
    state, file_classes = _checkpoint_state(name, ckpt, meta, from_source)
    build_classes = num_classes if (num_classes is not None and not reset_classifier) else file_classes
    if from_source:
        model = load_source(name, weights=weights, pretrained=pretrained, num_classes=num_classes,
                            reset_classifier=reset_classifier, state=state, file_classes=build_classes,
                            model_kwargs=kwargs)
    else:
        model = _build(name, build_classes, kwargs)
    if state is not None:
        _load_state(model, state, source)
    classes = list(meta["classes"]) if meta.get("classes") else None
    if reset_classifier:
        _reset_classifier(model, num_classes)
        classes = None
    weights = "checkpoint" if checkpoint is not None else "pretrained" if (pretrained or weights) else "random"
    if from_source and checkpoint is None:  # the library's file (torchvision's cache, timm's hub cache)
        record = model.info.extra["source"]
        source, sha256 = record.get("weights_file"), record.get("weights_sha256")
    preprocessing = _preprocessing(model, meta, source, image_size, preprocess)
    if checkpoint is not None:
        sha256 = known_sha256(source)
    return _with_provenance(LoadedModel(model, name, weights, source, classes, preprocessing=preprocessing,
                                        config=config, weights_sha256=sha256))


def _checkpoint_state(name: str, ckpt: dict | None, meta: dict, from_source: bool) -> tuple[dict | None, int | None]:
    """The file's tensors under the model's names, and the class count it was trained for (its record, else its
    classifier's rows)."""
    if ckpt is None:
        return None, meta.get("num_classes")
    if from_source:
        return extract_state_dict(ckpt), meta.get("num_classes")
    state = model_state(name, ckpt)
    return state, meta.get("num_classes") or _classifier_rows(name, state)


def _with_provenance(loaded: LoadedModel) -> LoadedModel:
    """The model carries its provenance too, so a results file written from the module alone records it."""
    model = loaded.model
    model.info = dataclasses.replace(model.info, extra={**model.info.extra, "source": loaded.provenance()})
    return loaded


def _published_weights(name: str, weights: str, checkpoint) -> bool:
    """``--weights`` of a registered model: it has one set, its published file, so only DEFAULT (= --pretrained)."""
    if str(weights).upper() != "DEFAULT":
        raise ConfigError(f"--weights {weights}: {name} has one set of published weights, --weights DEFAULT "
                          "(= --pretrained)")
    if checkpoint is not None:
        raise ConfigError("give --weights or --ckpt_path (checkpoint=...), not both")
    return True


def _load_state(model: nn.Module, state: dict, source: str | None) -> None:
    try:
        load_weights(model, state)
    except CheckpointError as err:  # name the file rather than "state dict"
        raise CheckpointError(str(err).replace("checkpoint state dict", f"checkpoint {source}", 1)) from None


def _reset_classifier(model: nn.Module, num_classes: int | None) -> None:
    """A fresh classifier of ``num_classes`` outputs after loading everything (fine-tuning)."""
    if num_classes is None:
        raise ConfigError("--reset_classifier needs --num_classes (the new classifier's outputs)")
    model.reset_classifier(int(num_classes))
    set_num_classes(model, int(num_classes))  # a timm model's own reset_classifier leaves info alone


def _preprocessing(model: nn.Module, meta: dict, source: str | None, image_size, preprocess) -> Preprocessing:
    """The checkpoint's (or the model's own) preprocessing with the flags applied, set on the model too, so an
    analysis given only the module feeds it the trained size."""
    try:
        stored = checkpoint_preprocessing(model.info, meta)
    except ConfigError as err:
        raise CheckpointError(f"checkpoint {source}: {err}") from None
    model.preprocessing = resolve(stored, image_size=image_size, mode=preprocess)
    return model.preprocessing


def _build(name: str, num_classes: int | None, kwargs: dict) -> nn.Module:
    try:
        return build_model(name, num_classes=num_classes, **kwargs)
    except TypeError as err:  # a misspelt model option
        import inspect

        from .registry import _entry

        params = [p for p in inspect.signature(_entry(name).builder).parameters if p != "num_classes"]
        raise ConfigError(f"--model {name}: {err}; its options are {', '.join(params) or 'none'}") from None


def _classifier_rows(name: str, state: dict) -> int | None:
    """The class count a plain state dict's classifier was trained for (None if it has no classifier)."""
    probe = _build_meta(name)
    cls_name = getattr(probe, "classifier_name", "")
    weight = state.get(f"{cls_name}.weight") if cls_name else None
    if isinstance(weight, torch.Tensor) and weight.dim() == 2:
        return int(weight.shape[0])
    return None


def _build_meta(name: str) -> nn.Module:
    """The model without memory or initialisation cost, to read its structure (on the CPU for a model
    whose construction computes with data, e.g. the polar transform's sampling grid)."""
    try:
        with torch.device("meta"):
            return build_model(name)
    except (NotImplementedError, RuntimeError):
        return build_model(name)


def create_model(
    name: str,
    num_classes: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    pretrained: bool = False,
    trust: bool = False,
    **kwargs,
) -> nn.Module:
    """Build a registered model, optionally loading weights; the module only (``load_model`` gives the facts too).

    ``checkpoint`` accepts an original checkpoint file, a plain state dict or a ventralkit checkpoint
    (whose class count, model options and preprocessing are used); ``pretrained`` looks for the original
    published file in the weights folder (downloaded and checked when missing). With either, this is ``load_model(...).model``:
    one loader. Files load safely (``weights_only``); ``trust=True`` allows one that needs full unpickling.
    The returned model carries ``model.info`` (a ``ModelInfo`` adjusted to the kwargs and weights used).
    """
    if pretrained or checkpoint or is_source_spec(name):  # a torchvision/timm/file model: always the loader
        return load_model(name, checkpoint=checkpoint, pretrained=pretrained, num_classes=num_classes,
                          model_kwargs=kwargs, trust=trust).model
    return build_model(name, num_classes=num_classes, **kwargs)


def load(path: str | os.PathLike, trust: bool = False, **options) -> LoadedModel:
    """Alias of ``load_model(checkpoint=path, ...)``, kept for scripts that use it (README's first examples)."""
    return load_model(checkpoint=path, trust=trust, **options)
