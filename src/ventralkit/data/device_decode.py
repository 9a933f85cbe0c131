"""``--data_backend gpu``: JPEG decoding and RandomResizedCrop + flip + normalise on the training device.

CPU workers only read each file's bytes and draw its crop box and flip, with the very same calls,
in the same order, as the CPU pipeline (``transforms.train_pipeline``): a batch's random draws come
from the per-batch seed of ``sampling.SeededDataset``, so the GPU path sees the same crops and flips
as the CPU path and a resumed run stays exact. The batch is then decoded in one
``torchvision.io.decode_jpeg(device=...)`` call, cropped, resized (bilinear, antialiased, as PIL
does), flipped and normalised on the device. Files that are not baseline RGB/greyscale JPEGs (PNG,
CMYK JPEG, ...) are decoded by PIL in the worker and join the batch as pixels. With ``device="cpu"``
the same code runs on the CPU, which is how CI tests it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T
from torchvision.io import ImageReadMode, decode_jpeg

from ..errors import DataError
from .folders import Unreadable, bad_image_error, collate_readable
from .listing import BAD_IMAGE_ERRORS, open_rgb

BACKENDS = ("cpu", "gpu")
_JPEG_MAGIC = b"\xff\xd8\xff"


class RawBatch:
    """One batch as it leaves the workers: encoded JPEG bytes (or PIL-decoded pixels), crop boxes, flips.

    ``.to(device)`` decodes and augments on ``device`` and returns the normalised float batch, so the
    training loop's ``images.to(device, non_blocking=True)`` needs no change."""

    def __init__(self, items: list[torch.Tensor], encoded: list[bool], boxes: torch.Tensor, size: int,
                 mean: tuple, std: tuple, paths: list[str], interpolation: str = "bilinear"):
        self.items, self.encoded, self.boxes = items, encoded, boxes  # boxes: (n, 5) top, left, h, w, flip
        self.size, self.mean, self.std, self.paths = size, mean, std, paths
        self.interpolation = interpolation

    def __len__(self) -> int:
        return len(self.items)

    def pin_memory(self) -> "RawBatch":
        self.items = [t.pin_memory() for t in self.items]
        return self

    def to(self, device, non_blocking: bool = False) -> torch.Tensor:
        return decode_augment(self, torch.device(device), non_blocking)


def _decode_all(batch: RawBatch, device: torch.device, non_blocking: bool) -> list[torch.Tensor]:
    """Every image as uint8 CHW on ``device``: JPEGs in one batched decode, the rest already pixels."""
    out: list[torch.Tensor | None] = [None] * len(batch)
    jpeg_ix = [i for i, e in enumerate(batch.encoded) if e]
    for i, e in enumerate(batch.encoded):
        if not e:
            out[i] = batch.items[i].to(device, non_blocking=non_blocking)
    if jpeg_ix:
        data = [batch.items[i] for i in jpeg_ix]  # decode_jpeg reads its input on the CPU
        try:
            decoded = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
        except RuntimeError:  # one bad file fails the whole call: decode one by one, PIL as the last resort
            decoded = [_decode_one(t, batch.paths[i], device) for i, t in zip(jpeg_ix, data)]
        for i, img in zip(jpeg_ix, decoded):
            out[i] = img
    return out


def _decode_one(data: torch.Tensor, path: str, device: torch.device) -> torch.Tensor:
    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        try:
            return T.functional.pil_to_tensor(open_rgb(path)).to(device)
        except BAD_IMAGE_ERRORS as err:
            raise DataError(f"cannot decode image {path} ({err}); fix or delete it") from None


def decode_augment(batch: RawBatch, device: torch.device, non_blocking: bool = False) -> torch.Tensor:
    """Decode, crop, resize to ``size`` x ``size``, flip and normalise: a float (n, 3, size, size) batch."""
    images = _decode_all(batch, device, non_blocking)
    boxes = batch.boxes.tolist()  # host values drawn by the workers: no device sync
    out = torch.empty(len(images), 3, batch.size, batch.size, device=device)
    for k, (img, (top, left, h, w, flip)) in enumerate(zip(images, boxes)):
        crop = img[:, top:top + h, left:left + w].unsqueeze(0).float()
        crop = F.interpolate(crop, size=(batch.size, batch.size), mode=batch.interpolation, align_corners=False,
                             antialias=True)[0]
        out[k] = crop.flip(-1) if flip else crop
    mean = torch.tensor(batch.mean, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(batch.std, device=device).view(1, 3, 1, 1) * 255
    return out.clamp_(0, 255).sub_(mean).div_(std)  # ToTensor's /255 folded into the normalisation


class RawCropDataset(Dataset):
    """An ``ImageFolderDataset`` read as bytes plus the crop box and flip its CPU transform would draw.

    Each item is ``((data, encoded, box, path), label)``; ``collate`` makes a ``RawBatch``. An unreadable
    file is raised or skipped as ``ImageFolderDataset`` does (skipped: dropped from its batch, which
    then lists it in ``skipped``). Built from a ``Preprocessing`` by ``transforms.device_train_dataset``."""

    def __init__(self, folder, size: int, mean, std, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                 interpolation: str = "bilinear"):
        self.folder, self.size, self.mean, self.std = folder, int(size), tuple(mean), tuple(std)
        self.scale, self.ratio, self.interpolation = scale, ratio, interpolation
        self.samples, self.classes, self.targets = folder.samples, folder.classes, folder.targets

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        try:
            return self._read(path), label
        except BAD_IMAGE_ERRORS as err:
            if self.folder.on_bad_image == "error":
                raise bad_image_error(path, err) from None
            return Unreadable(index, path, str(err)), label

    def _read(self, path: str):
        with open(path, "rb") as fh:
            raw = fh.read()
        import io

        img = Image.open(io.BytesIO(raw))  # the header only: size and mode, no pixels
        encoded = raw[:3] == _JPEG_MAGIC and img.format == "JPEG" and img.mode in ("RGB", "L")
        if encoded:
            data = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
        else:  # PNG, CMYK JPEG, ...: PIL decodes it here, as the CPU pipeline would
            img.load()
            data = T.functional.pil_to_tensor(img if img.mode == "RGB" else img.convert("RGB"))
        # the same draws, in the same order, as RandomResizedCrop(size) then RandomHorizontalFlip()
        top, left, h, w = T.RandomResizedCrop.get_params(img, list(self.scale), list(self.ratio))
        flip = bool(torch.rand(1) < 0.5)
        return data, encoded, (top, left, h, w, int(flip)), path

    def collate(self, samples):
        """A ``RawBatch`` and the labels (as a ``SkippedBatch`` when unreadable files were dropped)."""
        return collate_readable(samples, self._collate_raw)

    def _collate_raw(self, samples) -> tuple[RawBatch, torch.Tensor]:
        items = [s[0] for s in samples]
        batch = RawBatch([d for d, _, _, _ in items], [e for _, e, _, _ in items],
                         torch.tensor([b for _, _, b, _ in items], dtype=torch.long), self.size, self.mean,
                         self.std, [p for _, _, _, p in items], self.interpolation)
        return batch, torch.tensor([s[1] for s in samples], dtype=torch.long)
