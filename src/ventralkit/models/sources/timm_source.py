"""``timm:NAME``: any timm model, behind the optional extra ``ventralkit[timm]``.

timm is imported only here, only when such a model is asked for. ``NAME`` is an architecture
(``resnet18``) or an architecture with a pretrained tag (``resnet18.a1_in1k``); ``--weights DEFAULT`` (or
``--pretrained``) loads timm's pretrained weights for it (timm downloads them), ``--weights TAG`` those of
another tag, none means random initialisation. Stages are timm's own ``feature_info`` (what
``features_only=True`` returns); preprocessing is the pretrained config's (``input_size``, ``crop_pct``,
``interpolation``, ``mean``, ``std``): Resize(floor(size / crop_pct)) + CenterCrop(size), as timm's eval
transform does. Its ``squash`` crop at crop_pct 1 is ventralkit's ``square``; the few configs with another
crop mode (``border``, ``squash`` below 1) are fed the centre crop, with a warning.
"""

from __future__ import annotations

import fnmatch
import math
import warnings

from ...errors import CheckpointError, ConfigError, ModelNotFoundError
from ..preprocessing import Preprocessing
from .common import SourceRecord, close_names, file_sha256, finish, offline
from .published import published_commitment


def import_timm():
    """timm, or one line naming the extra that installs it."""
    try:
        import timm
    except ImportError:
        raise ConfigError("timm models need timm, which is not installed: pip install 'ventralkit[timm]'") from None
    return timm


def list_names(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """timm's architectures (or, with ``pretrained``, its architecture.tag names) matching a pattern."""
    timm = import_timm()
    names = timm.list_pretrained() if pretrained else timm.list_models()
    return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))


def check_name(name: str) -> None:
    timm = import_timm()
    arch, _, tag = name.partition(".")
    if not timm.is_model(arch):
        raise ModelNotFoundError(f"unknown timm model {arch!r}{close_names(arch, timm.list_models())}; "
                                 "`ventralkit models --source timm` lists them")
    if tag and name not in timm.list_pretrained(f"{arch}.*"):
        tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{arch}.*")]
        raise ModelNotFoundError(f"timm's {arch} has no pretrained tag {tag!r}; its tags: {', '.join(tags) or 'none'}")


def model_name(name: str, weights: str | None) -> tuple[str, bool]:
    """(timm name, pretrained?) for ``--weights``: DEFAULT = the name's own (or default) tag; a tag = that tag."""
    if weights is None:
        return name, False
    if str(weights).upper() == "DEFAULT":
        return name, True
    return f"{name.partition('.')[0]}.{weights}", True


def config_preprocessing(cfg: dict, name: str) -> Preprocessing:
    """timm's data config as ventralkit's preprocessing (see the module docstring)."""
    _, height, width = cfg["input_size"]
    if height != width:
        raise ConfigError(f"timm's {name} takes {height} x {width} images; ventralkit feeds square images only")
    crop_pct, crop_mode = float(cfg.get("crop_pct") or 0.875), cfg.get("crop_mode") or "center"
    common = {"image_size": height, "interpolation": cfg.get("interpolation") or "bilinear",
              "mean": tuple(cfg["mean"]), "std": tuple(cfg["std"])}
    if crop_mode == "squash" and crop_pct == 1.0:
        return Preprocessing(mode="square", crop_fraction=1.0, **common)
    if crop_mode != "center":
        warnings.warn(f"timm's {name} is evaluated with crop mode {crop_mode!r} at crop_pct {crop_pct}; ventralkit "
                      "feeds it the centre crop at that crop_pct (run.json records it)", stacklevel=3)
    scale = math.floor(height / crop_pct)  # timm's own arithmetic (floor, not round)
    return Preprocessing(mode="resize_crop", crop_fraction=height / scale, **common)


def build(name: str, weights: str | None = None, num_classes: int | None = None):
    """``timm:NAME`` as a ventralkit model (module with ``info``, ``preprocessing``, provenance)."""
    timm = import_timm()
    check_name(name)
    full, pretrained = model_name(name, weights)
    if full != name:
        check_name(full)
    kwargs = {} if num_classes is None or pretrained else {"num_classes": int(num_classes)}
    model = _create(timm, full, pretrained, kwargs)
    if pretrained and num_classes is not None and model.num_classes != num_classes:
        raise ConfigError(f"timm's {full} weights score {model.num_classes} classes, not {num_classes}; add "
                          "--reset_classifier to fine-tune them with a new classifier")
    cfg = timm.data.resolve_model_data_config(model)
    tag = getattr(model, "pretrained_cfg", {}).get("tag")
    arch = full.partition(".")[0]
    record = SourceRecord(spec=f"timm:{name}", library="timm", library_version=timm.__version__,
                          weights=f"{arch}.{tag}" if pretrained and tag else ("pretrained" if pretrained else None),
                          preprocessing_from=f"timm pretrained_cfg of {arch}.{tag}" if tag else "timm data config",
                          commitment=published_commitment("timm", arch, f"{arch}.{tag}" if pretrained else None,
                                                          f"{arch}.{tag}" if tag else None))
    if pretrained:
        _record_file(model, record)
    pre = config_preprocessing(cfg, full)
    classifier = (getattr(model, "pretrained_cfg", {}) or {}).get("classifier") or None
    if isinstance(classifier, (list, tuple)):  # distilled models: two heads
        classifier = classifier[0]
    if classifier is not None:
        try:
            model.get_submodule(classifier)
        except AttributeError:
            classifier = None
    return finish(model, record, pre, family="timm", classifier=classifier, description=f"timm {full}")


def _create(timm, full: str, pretrained: bool, kwargs: dict):
    if pretrained and offline():
        raise CheckpointError(f"VENTRALKIT_OFFLINE is set: timm's {full} weights would be downloaded; set "
                              "HF_HUB_OFFLINE=1 as well if they are in the Hugging Face cache, or drop --weights")
    try:
        return timm.create_model(full, pretrained=pretrained, **kwargs)
    except (OSError, RuntimeError) as err:  # hub errors subclass OSError / requests' exceptions
        if not pretrained:
            raise
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise CheckpointError(f"timm's {full} weights could not be loaded ({first}); check the network or the "
                              "Hugging Face cache (HF_HOME) and run again") from None


def _record_file(model, record: SourceRecord) -> None:
    """The downloaded file and its sha256 where the Hugging Face cache holds it (else left unknown)."""
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    record.weights_url = cfg.get("url") or (f"hf-hub:{cfg['hf_hub_id']}" if cfg.get("hf_hub_id") else None)
    if not cfg.get("hf_hub_id"):
        return
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return
    for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        path = try_to_load_from_cache(cfg["hf_hub_id"], filename)
        if isinstance(path, str):
            record.weights_file, record.weights_sha256 = path, file_sha256(path)
            return
