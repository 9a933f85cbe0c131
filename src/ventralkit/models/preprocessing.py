"""How a model's input images are prepared: one frozen object, resolved once, used by every pipeline.

As torchvision's ``Weights.transforms()`` and timm's data config do, the facts a pipeline needs (the
size the model was trained at, how an image is brought to that size, the normalisation) live in one
``Preprocessing`` value. ``models.loading.load_model`` resolves it once from the model's metadata
(``ModelInfo``: its native size and normalisation), the checkpoint (a ventralkit checkpoint stores it;
an older one without it resolves from its training config, as before) and the flags; the engine
stores it in the checkpoints it writes; ``data.transforms`` turns it into the PIL, uint8 and
GPU-decode pipelines. ``ModelInfo.input_size`` keeps one meaning: the architecture's native size.

Modes (one vocabulary; the spellings of the three command-line options are aliases, ``MODE_ALIASES``):

- ``resize_crop``: shorter side to ``round(image_size / crop_fraction)``, then a centre crop of
  ``image_size`` (crop fraction 224/256: ImageNet's Resize(256) + CenterCrop(224), scaled; crop
  fraction 1: Resize(s) + CenterCrop(s), the identity on images already s x s);
- ``square``: both sides to ``image_size`` without a crop (CORnet ``run.py test``, aspect-distorting);
- ``none``: the images as they are (V1-ResNet ``main.py``'s native-size Tiny-ImageNet validation);
- ``auto``: per image folder, ``resize_crop`` at crop fraction 1 for a folder whose images already are
  ``image_size`` square, at ``crop_fraction`` otherwise (the robustness command's default for a model
  without a training record).

This module imports neither torch nor torchvision: the layer above (``data``) builds the pipelines.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .registry import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    from .registry import ModelInfo

#: ImageNet's evaluation protocol: Resize(256) + CenterCrop(224), i.e. the crop keeps 224/256 of the side
DEFAULT_CROP_FRACTION = 224 / 256

MODES = ("resize_crop", "square", "none", "auto")
INTERPOLATIONS = ("bilinear", "bicubic")

#: every spelling the commands accept for a mode -> (mode, crop fraction). The three vocabularies:
#: ``train``/``test --eval_transform`` (resize_crop | none), ``features``/``test --transform``
#: (square | center) and ``robustness --preprocess`` (auto | eval | direct).
MODE_ALIASES: dict[str, tuple[str, float]] = {
    "resize_crop": ("resize_crop", DEFAULT_CROP_FRACTION),
    "none": ("none", 1.0),
    "center": ("resize_crop", DEFAULT_CROP_FRACTION),
    "square": ("square", 1.0),
    "eval": ("resize_crop", DEFAULT_CROP_FRACTION),
    "direct": ("resize_crop", 1.0),
    "auto": ("auto", DEFAULT_CROP_FRACTION),
}

#: the aliases that mean "the model's Resize + CenterCrop" (``resolve`` keeps a cropping base's fraction)
_KEEPS_CROP = ("resize_crop", "center", "eval")

#: the fields written to checkpoints and provenance records (``from_training`` is where it came from, not what it is)
_STORED = ("image_size", "mode", "crop_fraction", "interpolation", "mean", "std")


@dataclass(frozen=True)
class Preprocessing:
    """What every pipeline needs to feed one model: size, how to reach it, interpolation, normalisation.

    ``from_training``: ``image_size`` and ``mode`` are a training run's record (a ventralkit checkpoint)
    rather than the architecture's defaults; the robustness command uses it to choose its default."""

    image_size: int
    mode: str = "resize_crop"
    crop_fraction: float = DEFAULT_CROP_FRACTION
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    from_training: bool = dataclasses.field(default=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", int(self.image_size))
        object.__setattr__(self, "crop_fraction", float(self.crop_fraction))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.image_size <= 0:
            raise ConfigError(f"--imsize must be a positive number of pixels, got {self.image_size}")
        if self.mode not in MODES:
            raise ConfigError(f"preprocessing mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not 0 < self.crop_fraction <= 1:
            raise ConfigError(f"crop fraction must be in (0, 1], got {self.crop_fraction}")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {self.interpolation!r}")
        if len(self.mean) != len(self.std) or not all(s > 0 for s in self.std):
            raise ConfigError(f"normalisation needs one positive std per mean, got mean {self.mean}, std {self.std}")

    @property
    def resize_size(self) -> int:
        """The shorter side before the centre crop: 256 for 224 at the default fraction (the one place
        this arithmetic lives; ``round(s / (224/256))`` equals the former ``round(s * 256 / 224)``)."""
        return round(self.image_size / self.crop_fraction)

    def with_flags(self, image_size: int | None = None, mode: str | None = None) -> Preprocessing:
        """This preprocessing with a command's flags applied (None keeps the value); see ``resolve``."""
        return resolve(self, image_size=image_size, mode=mode)

    def to_dict(self) -> dict[str, Any]:
        """The stored form (checkpoints, ``config.json``, ``run.json``): plain numbers and strings."""
        return {"image_size": self.image_size, "mode": self.mode, "crop_fraction": self.crop_fraction,
                "interpolation": self.interpolation, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict, from_training: bool = False) -> Preprocessing:
        """The stored form back (fields left out take their defaults; an unknown field is an error)."""
        unknown = sorted(set(d) - set(_STORED))
        if unknown or "image_size" not in d:
            what = f"an unknown field {unknown[0]!r}" if unknown else "no image_size"
            raise ConfigError(f"a stored preprocessing record has {what}; its fields are {', '.join(_STORED)}")
        return cls(**{k: d[k] for k in _STORED if k in d}, from_training=from_training)


def mode_fields(alias: str) -> dict:
    """``mode`` and ``crop_fraction`` for any accepted spelling, or a one-line error listing them."""
    try:
        mode, fraction = MODE_ALIASES[alias]
    except (KeyError, TypeError):
        raise ConfigError(f"preprocessing must be one of {', '.join(MODE_ALIASES)}, got {alias!r}") from None
    return {"mode": mode, "crop_fraction": fraction}


def resolve(base: Preprocessing, *, image_size: int | None = None, mode: str | None = None) -> Preprocessing:
    """The one function that applies flags: ``--imsize`` replaces the size, a mode in any of the three
    vocabularies replaces the mode (and its crop fraction); None leaves the base's value. A Resize + CenterCrop
    alias (``resize_crop``, ``center``, ``eval``) on a base that already crops keeps the base's crop fraction:
    the ImageNet 224/256 for every registered model, the weights' own for a torchvision or timm model (e.g.
    ResNet-50 ``IMAGENET1K_V2``: Resize(232) + CenterCrop(224))."""
    changes: dict = {}
    if image_size is not None:
        changes["image_size"] = image_size
    if mode is not None:
        changes.update(mode_fields(mode))
        if changes["mode"] == base.mode == "resize_crop" and mode in _KEEPS_CROP:
            changes["crop_fraction"] = base.crop_fraction
    return dataclasses.replace(base, **changes) if changes else base


def native_preprocessing(info: ModelInfo) -> Preprocessing:
    """The architecture's own: its native size, its normalisation, the ImageNet evaluation crop; for a model
    from torchvision or timm (``models.sources``) the one its weights were trained with, stored in
    ``info.extra["preprocessing"]`` (resize, crop, interpolation, mean, std)."""
    stored = (getattr(info, "extra", None) or {}).get("preprocessing")
    if isinstance(stored, dict):
        return Preprocessing.from_dict(stored)
    return Preprocessing(image_size=info.input_size, mean=tuple(getattr(info, "mean", None) or IMAGENET_MEAN),
                         std=tuple(getattr(info, "std", None) or IMAGENET_STD))


def training_preprocessing(info: ModelInfo, image_size: int | None, eval_transform: str | None) -> Preprocessing:
    """What a training run with these config values evaluates with: its ``image_size`` (None: the
    model's) and ``eval_transform`` (None: resize_crop). The engine stores this in its checkpoints,
    and the loader derives the same value from an older checkpoint's config, so both agree."""
    base = native_preprocessing(info)
    return dataclasses.replace(resolve(base, image_size=int(image_size or info.input_size),
                                       mode=eval_transform or "resize_crop"), from_training=True)


def checkpoint_preprocessing(info: ModelInfo, ckpt_meta: dict) -> Preprocessing:
    """From a checkpoint's metadata (``loading.checkpoint_metadata``): its stored ``preprocessing``; an
    older ventralkit checkpoint's training config; else (any other file) the architecture's own."""
    stored = ckpt_meta.get("preprocessing")
    if isinstance(stored, dict):
        return Preprocessing.from_dict(stored, from_training=True)
    config = ckpt_meta.get("config") or {}
    if config:
        return training_preprocessing(info, config.get("image_size"), config.get("eval_transform"))
    return native_preprocessing(info)


def preprocessing_of(model) -> Preprocessing | None:
    """The preprocessing a model carries: the loader's (``model.preprocessing``, set by ``load_model``),
    else its registry metadata's (``model.info``), else None (a module from elsewhere)."""
    pre = getattr(model, "preprocessing", None)
    if isinstance(pre, Preprocessing):
        return pre
    info = getattr(model, "info", None)
    if getattr(info, "input_size", None):
        return native_preprocessing(info)
    return None
