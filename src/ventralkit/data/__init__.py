"""Where images come from: image folders, the embedded digits set, CIFAR-100, and preprocessing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..models.registry import ModelInfo

if TYPE_CHECKING:  # annotations only: data.listing (folder scanning) is usable without importing torch
    from torch.utils.data import Dataset


@dataclass
class DataSplits:
    train: Dataset
    val: Dataset
    classes: list[str]
    #: the side in pixels the model sees the images at (the digits' own 32 when no size was asked for), so a
    #: checkpoint records the size it was trained at, not the architecture's native one
    image_size: int | None = None


def load_datasets(dataset: str, data_path: str | None, info: ModelInfo, image_size: int | None = None,
                  val_split: str = "val", on_bad_image: str = "skip", augment: str = "crop_flip",
                  eval_mode: str = "resize_crop") -> DataSplits:
    """Train and val datasets with the model's preprocessing (size and normalisation from ``info``).

    ``augment`` and ``eval_mode`` choose the image-folder transforms (``transforms.train_pipeline`` /
    ``eval_pipeline`` of the model's preprocessing at ``image_size``); digits and CIFAR-100 keep their own."""
    from ..models.preprocessing import native_preprocessing, resolve
    from .transforms import eval_pipeline, train_pipeline

    if dataset == "digits":
        from .embedded import digits_datasets

        # no random crops or flips: they turn digits into other digits (a flipped 2 is not a 2)
        size = image_size or 32
        digit = eval_pipeline(resolve(native_preprocessing(info), image_size=size))
        train, val, classes = digits_datasets(digit, digit, image_size=size)
        return DataSplits(train, val, list(classes), image_size=size)
    if dataset.partition(":")[0] == "digits-occluded":
        from .embedded import occluded_digits_datasets, occlusion_level

        size = image_size or 32
        digit = eval_pipeline(resolve(native_preprocessing(info), image_size=size))
        train, val, classes = occluded_digits_datasets(occlusion_level(dataset), digit, digit, image_size=size)
        return DataSplits(train, val, list(classes), image_size=size)
    if dataset == "cifar100":
        from .cifar100 import cifar100_datasets

        size = resolve(native_preprocessing(info), image_size=image_size).image_size
        train, val, classes = cifar100_datasets(data_path, image_size=size, info=info,
                                                val_split=val_split)
        return DataSplits(train, val, list(classes), image_size=size)
    from .folders import ImageFolderDataset, split_dir

    pre = resolve(native_preprocessing(info), image_size=image_size, mode=eval_mode)
    train = ImageFolderDataset(split_dir(data_path, "train"), train_pipeline(pre, augment), on_bad_image)
    val = ImageFolderDataset(split_dir(data_path, val_split), eval_pipeline(pre), on_bad_image,
                             classes=train.classes)
    return DataSplits(train, val, train.classes, image_size=pre.image_size)
