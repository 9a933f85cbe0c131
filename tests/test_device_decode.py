"""``--data_backend gpu`` run on the CPU (device="cpu"): the same crops and flips as the PIL pipeline,
pixels equal within JPEG-decoder and resampling tolerance, and a run that resumes exactly (issue 15)."""

from __future__ import annotations

import torch
from PIL import Image

from conftest import make_image_folder, records_through
from ventralkit.data.device_decode import RawCropDataset
from ventralkit.data.folders import ImageFolderDataset
from ventralkit.data.sampling import SeededDataset
from ventralkit.data.transforms import train_transform
from ventralkit.models.registry import model_info

INFO = model_info("cornet_z")


def _folder(tmp_path):
    root = make_image_folder(tmp_path / "data", classes=2, train_per_class=4, val_per_class=1, size=48)
    # the fallbacks: a PNG, a greyscale JPEG and a CMYK JPEG are decoded by PIL / as greyscale
    Image.open(root / "train/class_0/img_000.jpg").save(root / "train/class_0/img_100.png")
    Image.open(root / "train/class_1/img_000.jpg").convert("L").save(root / "train/class_1/img_101.jpg")
    Image.open(root / "train/class_1/img_001.jpg").convert("CMYK").save(root / "train/class_1/img_102.jpg")
    return root


def _batches(root, seed, keys, size=32):
    cpu = SeededDataset(ImageFolderDataset(root / "train", train_transform(INFO, size)), seed)
    raw_set = RawCropDataset(ImageFolderDataset(root / "train"), size, INFO.mean, INFO.std)
    raw, labels = raw_set.collate(SeededDataset(raw_set, seed).__getitems__(keys))
    want = cpu.__getitems__(keys)
    return torch.stack([x for x, _ in want]), torch.tensor([y for _, y in want]), raw, labels


def test_device_path_matches_the_pil_pipeline(tmp_path):
    root = _folder(tmp_path)
    keys = [(1, i) for i in range(11)]
    want, want_labels, raw, labels = _batches(root, seed=3, keys=keys)
    assert raw.encoded.count(False) == 2  # the PNG and the CMYK JPEG came decoded from the worker
    got = raw.to("cpu")
    assert got.shape == want.shape == (11, 3, 32, 32) and got.dtype == torch.float32
    assert torch.equal(labels, want_labels)
    # back to [0, 1] pixel units: the same crop boxes and flips leave only rounding of PIL's uint8 resize
    std = torch.tensor(INFO.std).view(1, 3, 1, 1)
    diff = ((got - want) * std).abs()
    assert diff.max() < 3 / 255 and diff.mean() < 0.5 / 255


def test_crops_and_flips_are_fixed_by_the_batch_seed(tmp_path):
    root = _folder(tmp_path)
    keys = [(0, i) for i in range(6)]
    a = _batches(root, 5, keys)[2]
    b = _batches(root, 5, keys)[2]
    c = _batches(root, 6, keys)[2]
    assert torch.equal(a.boxes, b.boxes) and torch.equal(a.to("cpu"), b.to("cpu"))
    assert not torch.equal(a.boxes, c.boxes)
    later = _batches(root, 5, [(1, i) for i in range(6)])[2]  # another epoch: other draws
    assert not torch.equal(a.boxes, later.boxes)


def test_gpu_backend_run_on_cpu_resumes_exactly(tmp_path, steps_run):
    """Resumed from its epoch-1 snapshot, the run trains epoch 2 only, keeps epoch 1's records and ends
    with the weights of the uninterrupted run."""
    from ventralkit.engine.train import train

    data = make_image_folder(tmp_path / "data", classes=2, train_per_class=6, val_per_class=1, size=40)
    common = dict(model="cornet_z", data_path=str(data), image_size=32, batch_size=4, workers=0, epochs=2,
                  progress=False, keep_epochs=-1, lr=0.01, device="cpu", data_backend="gpu", log_every=1)
    full = train(output_path=str(tmp_path / "full"), **common)
    first_epoch = records_through(tmp_path / "full", 3)  # 12 images in batches of 4: 3 steps an epoch
    steps_run.clear()
    resumed = train(output_path=str(tmp_path / "resumed"), resume=str(tmp_path / "full/checkpoints/epoch_01.pt"),
                    **common)
    assert steps_run == [(3, 1, 0), (4, 1, 1), (5, 1, 2)]
    assert (tmp_path / "full/metrics.jsonl").read_text().splitlines()[:len(first_epoch)] == first_epoch
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    cpu = train(output_path=str(tmp_path / "cpu"), **{**common, "data_backend": "cpu", "epochs": 1})
    assert cpu.last_val is not None  # the CPU backend trains on the same folder too


def test_gpu_backend_is_refused_where_it_does_not_apply(cli, tmp_path):
    code, _, err = cli("train", "--model", "Z", "--dataset", "digits", "--data_backend", "gpu", "--epochs", "1",
                       "-o", tmp_path / "r")
    assert code == 2 and "--data_backend gpu applies to image folders" in err
    assert not (tmp_path / "r").exists()
