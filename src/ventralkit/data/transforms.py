"""The one builder of input pipelines: a ``Preprocessing`` (``models.preprocessing``) -> transforms.

Every place that feeds a model builds its pipeline here from the one object the loader resolved:
evaluation (PIL -> normalised float tensor), training (the CORnet pipeline, docs/reference/cornet.md
section 3.3: RandomResizedCrop(size) + horizontal flip), the uint8 transport of ``features`` and
``robustness`` (PIL -> H x W x 3 uint8, normalised per batch by ``normalize_hwc_uint8``) and the GPU
decode of ``device_decode`` (the same crop boxes and flips, decoded and resized on the device).
Images of any mode (L, CMYK, P, RGBA) become RGB first.

The functions that take a ``ModelInfo`` and a size (``eval_transform``, ``train_transform``,
``square_resize_transform``) are the same pipelines for the model's own preprocessing with that size.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

from ..models.preprocessing import DEFAULT_CROP_FRACTION, Preprocessing, native_preprocessing, resolve
from ..models.registry import ModelInfo

__all__ = ["Preprocessing", "eval_pipeline", "uint8_pipeline", "train_pipeline", "resize_steps", "resolve_auto",
           "device_train_dataset", "normalize_hwc_uint8", "pil_to_hwc_uint8", "to_rgb", "eval_transform",
           "train_transform", "square_resize_transform", "resize_size", "normalize"]

AUGMENTS = ("crop_flip", "flip", "none")


def to_rgb(img: Image.Image) -> Image.Image:
    return img if img.mode == "RGB" else img.convert("RGB")


def _interpolation(pre: Preprocessing) -> T.InterpolationMode:
    return T.InterpolationMode(pre.interpolation)


def resize_steps(pre: Preprocessing) -> list:
    """The PIL steps that bring an image to the model's input (before ToTensor or the uint8 transport).

    ``auto`` depends on the images, so it is resolved per folder first (``resolve_auto``)."""
    if pre.mode == "none":
        return []
    size, interp = pre.image_size, _interpolation(pre)
    if pre.mode == "square":
        return [T.Resize((size, size), interpolation=interp)]
    if pre.mode == "resize_crop":
        return [T.Resize(pre.resize_size, interpolation=interp), T.CenterCrop(size)]
    raise ValueError(f"preprocessing mode {pre.mode!r} must be resolved for the images first (resolve_auto)")


def resolve_auto(pre: Preprocessing, image_size: tuple[int, int] | None) -> Preprocessing:
    """``auto`` made concrete for images of ``image_size`` (width, height): a crop fraction of 1 (the
    identity) when they already are the model's size, the object's crop fraction otherwise. Other
    modes are returned unchanged."""
    if pre.mode != "auto":
        return pre
    square = image_size is not None and tuple(image_size) == (pre.image_size, pre.image_size)
    return resolve(pre, mode="direct") if square else dataclasses.replace(pre, mode="resize_crop")


def _normalize(pre: Preprocessing) -> T.Normalize:
    return T.Normalize(mean=list(pre.mean), std=list(pre.std))


def eval_pipeline(pre: Preprocessing) -> T.Compose:
    """PIL image -> normalised float tensor (3 x H x W), as the model is evaluated."""
    return T.Compose([T.Lambda(to_rgb), *resize_steps(pre), T.ToTensor(), _normalize(pre)])


def uint8_pipeline(pre: Preprocessing) -> T.Compose:
    """PIL image -> H x W x 3 uint8: the same pixels as ``eval_pipeline`` before ToTensor; a batch of
    these is normalised by ``normalize_hwc_uint8`` with ``pre.mean``/``pre.std`` (bit for bit the same)."""
    return T.Compose([T.Lambda(to_rgb), *resize_steps(pre), T.Lambda(pil_to_hwc_uint8)])


def train_pipeline(pre: Preprocessing, augment: str = "crop_flip") -> T.Compose:
    """``crop_flip``: RandomResizedCrop(s) + flip (ImageNet); ``flip``: flip only at the images' own size
    (V1-ResNet ``main.py`` on Tiny-ImageNet); ``none``: no augmentation, native size."""
    if augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {', '.join(AUGMENTS)}, got {augment!r}")
    steps = []
    if augment == "crop_flip":
        steps.append(T.RandomResizedCrop(pre.image_size, interpolation=_interpolation(pre)))
    if augment in ("crop_flip", "flip"):
        steps.append(T.RandomHorizontalFlip())
    return T.Compose([T.Lambda(to_rgb), *steps, T.ToTensor(), _normalize(pre)])


def device_train_dataset(folder, pre: Preprocessing):
    """``--data_backend gpu``: ``folder`` read as bytes plus the crop boxes and flips ``train_pipeline``
    would draw; decoded, resized and normalised on the device (``device_decode``)."""
    from .device_decode import RawCropDataset

    return RawCropDataset(folder, pre.image_size, pre.mean, pre.std, interpolation=pre.interpolation)


def pil_to_hwc_uint8(img) -> torch.Tensor:
    """H x W x 3 uint8 (PIL's own layout, no transpose); a batch of these is channels_last once permuted."""
    return torch.from_numpy(np.array(img, dtype=np.uint8, copy=True))


def normalize_hwc_uint8(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """N x H x W x 3 uint8 -> N x 3 x H x W float, normalised: ToTensor + Normalize's arithmetic, bit for bit.

    The result is a channels_last tensor (the permute is a view), so no transposition pass is needed.
    """
    return x.permute(0, 3, 1, 2).float().div_(255).sub_(mean).div_(std)


# ---------------------------------------------------------------------------------------------
# the model's own preprocessing at a given size (ModelInfo + size): the same builder underneath


def _model_preprocessing(info: ModelInfo, image_size: int | None, mode: str | None = None) -> Preprocessing:
    return resolve(native_preprocessing(info), image_size=image_size, mode=mode)


def resize_size(size: int) -> int:
    """The shorter side before a centre crop of ``size``: 256 for 224 (the ImageNet protocol), scaled."""
    return Preprocessing(image_size=size, crop_fraction=DEFAULT_CROP_FRACTION).resize_size


def normalize(info: ModelInfo) -> T.Normalize:
    return _normalize(native_preprocessing(info))


def train_transform(info: ModelInfo, image_size: int | None = None, augment: str = "crop_flip"):
    """``train_pipeline`` of the model's preprocessing at ``image_size`` (None: its input size)."""
    return train_pipeline(_model_preprocessing(info, image_size), augment)


def eval_transform(info: ModelInfo, image_size: int | None = None, mode: str = "resize_crop"):
    """``resize_crop``: Resize(s*256/224) + CenterCrop(s); ``none``: the images as they are (main.py's
    Tiny-ImageNet validation: ToTensor + Normalize at 64 x 64)."""
    return eval_pipeline(_model_preprocessing(info, image_size, mode))


def square_resize_transform(info: ModelInfo, image_size: int | None = None):
    """CORnet ``run.py test``: Resize((s, s)) without a crop (aspect-distorting, kept for comparability)."""
    return eval_pipeline(_model_preprocessing(info, image_size, "square"))
