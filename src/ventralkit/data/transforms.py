"""Preprocessing taken from model metadata, so every model gets the input it was trained on.

The CORnet pipeline (docs/reference/cornet.md section 3.3) scaled to the model's input size:
train = RandomResizedCrop(size) + horizontal flip; eval = Resize(size * 256/224) + CenterCrop(size);
both end in ToTensor + Normalize(mean, std). Images of any mode (L, CMYK, P, RGBA) become RGB first.
"""

from __future__ import annotations

from PIL import Image
from torchvision import transforms as T

from ..models.registry import ModelInfo


def to_rgb(img: Image.Image) -> Image.Image:
    return img if img.mode == "RGB" else img.convert("RGB")


def _size(info: ModelInfo, image_size: int | None) -> int:
    return int(image_size or info.input_size)


def resize_size(size: int) -> int:
    """The shorter side before a centre crop of ``size``: 256 for 224 (the ImageNet protocol), scaled.

    The one place this arithmetic lives; every resize-then-crop in ventralkit calls it."""
    return round(size * 256 / 224)


def normalize(info: ModelInfo) -> T.Normalize:
    return T.Normalize(mean=list(info.mean), std=list(info.std))


def train_transform(info: ModelInfo, image_size: int | None = None, augment: str = "crop_flip"):
    """``crop_flip``: RandomResizedCrop(s) + flip (ImageNet); ``flip``: flip only at the images' own size
    (V1-ResNet ``main.py`` on Tiny-ImageNet); ``none``: no augmentation, native size."""
    steps = {"crop_flip": [T.RandomResizedCrop(_size(info, image_size)), T.RandomHorizontalFlip()],
             "flip": [T.RandomHorizontalFlip()], "none": []}[augment]
    return T.Compose([T.Lambda(to_rgb), *steps, T.ToTensor(), normalize(info)])


def eval_transform(info: ModelInfo, image_size: int | None = None, mode: str = "resize_crop"):
    """``resize_crop``: Resize(s*256/224) + CenterCrop(s); ``none``: the images as they are (main.py's
    Tiny-ImageNet validation: ToTensor + Normalize at 64 x 64)."""
    if mode == "none":
        return T.Compose([T.Lambda(to_rgb), T.ToTensor(), normalize(info)])
    size = _size(info, image_size)
    return T.Compose([T.Lambda(to_rgb), T.Resize(resize_size(size)), T.CenterCrop(size),
                      T.ToTensor(), normalize(info)])


def square_resize_transform(info: ModelInfo, image_size: int | None = None):
    """CORnet ``run.py test``: Resize((s, s)) without a crop (aspect-distorting, kept for comparability)."""
    size = _size(info, image_size)
    return T.Compose([T.Lambda(to_rgb), T.Resize((size, size)), T.ToTensor(), normalize(info)])
