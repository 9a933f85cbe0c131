"""Issue 22 item 2: one preprocessing object, resolved once by the loader, turned into every pipeline.

``info.input_size`` is the architecture's native size everywhere; the size a model was trained at is
``Preprocessing.image_size``, which the engine stores in its checkpoints (older ones resolve from their
training config, as before), the three vocabularies of the command line are aliases of one set of
modes, and the PIL, uint8 and GPU-decode pipelines built from one object agree.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

import ventralkit as vk
from ventralkit.data.transforms import (eval_pipeline, normalize_hwc_uint8, resize_size, resolve_auto, train_pipeline,
                                        uint8_pipeline)
from ventralkit.errors import CheckpointError, ConfigError
from ventralkit.models.loading import load_model
from ventralkit.models.preprocessing import (DEFAULT_CROP_FRACTION, MODE_ALIASES, Preprocessing,
                                             checkpoint_preprocessing, native_preprocessing, preprocessing_of, resolve)
from ventralkit.models.registry import IMAGENET_MEAN, IMAGENET_STD, model_info


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A ventralkit run of CORnet-Z on the embedded digits at 32 px (the native size is 224)."""
    out = tmp_path_factory.mktemp("pre") / "run"
    res = vk.train(vk.TrainConfig(model="cornet_z", dataset="digits", image_size=32, epochs=1, batch_size=64,
                                  max_steps_per_epoch=1, workers=0, progress=False, output_path=str(out)))
    return res.run_dir


@pytest.fixture()
def photo():
    """A 50 x 37 RGB image with structure in every channel (no resize is the identity on it)."""
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (37, 50, 3), dtype=np.uint8))


def _old_checkpoint(path, source, **config):
    """``source`` (an engine checkpoint) as the engine wrote it before it stored its preprocessing."""
    ckpt = torch.load(source, weights_only=True)
    ckpt.pop("preprocessing")
    ckpt["config"] = {**ckpt["config"], **config}
    torch.save(ckpt, path)
    return path


# --------------------------------------------------------------------------- resolved by the loader


def test_a_registered_model_gets_its_own_preprocessing():
    for name in ("cornet_z", "phinet"):
        info = model_info(name)
        loaded = load_model(name)
        pre = loaded.preprocessing
        assert pre == Preprocessing(image_size=info.input_size, mode="resize_crop",
                                    crop_fraction=DEFAULT_CROP_FRACTION, interpolation="bilinear",
                                    mean=info.mean, std=info.std)
        assert not pre.from_training and loaded.model.preprocessing is pre and loaded.info.input_size == info.input_size
    assert load_model("phinet").preprocessing.image_size == 160  # not ImageNet's 224


def test_a_checkpoint_trained_at_another_size_keeps_the_native_size_in_info(run):
    """The engine stores what it trained with; ``info.input_size`` is no longer overwritten by it."""
    ckpt = run / "checkpoints" / "last.pt"
    stored = torch.load(ckpt, weights_only=True)["preprocessing"]
    assert stored == {"image_size": 32, "mode": "resize_crop", "crop_fraction": DEFAULT_CROP_FRACTION,
                      "interpolation": "bilinear", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    assert json.loads((run / "config.json").read_text())["preprocessing"] == stored  # provenance
    loaded = vk.load(ckpt)
    assert loaded.info.input_size == 224 == model_info("cornet_z").input_size
    assert loaded.preprocessing.image_size == 32 and loaded.preprocessing.from_training
    assert loaded.preprocessing.to_dict() == stored  # the round trip through the checkpoint
    assert loaded.describe()["preprocessing"] == stored and loaded.describe()["image_size"] == 32
    model = vk.create_model("cornet_z", checkpoint=str(ckpt))  # the bare module carries it too
    assert model.info.input_size == 224 and preprocessing_of(model) == loaded.preprocessing


def test_an_older_checkpoint_resolves_as_before(run, tmp_path):
    """No stored preprocessing: the config's image_size and eval_transform, as the loader always read them."""
    new = vk.load(run / "checkpoints" / "last.pt").preprocessing
    old = vk.load(_old_checkpoint(tmp_path / "old.pt", run / "checkpoints" / "last.pt")).preprocessing
    assert old == new and old.from_training
    native = vk.load(_old_checkpoint(tmp_path / "n.pt", run / "checkpoints" / "last.pt", image_size=None,
                                     eval_transform="none")).preprocessing
    assert (native.image_size, native.mode) == (224, "none")
    # a plain state dict carries no record: the architecture's own, and `robustness` chooses per folder
    torch.save(vk.create_model("cornet_z", num_classes=10).state_dict(), tmp_path / "plain.pt")
    plain = load_model("cornet_z", checkpoint=tmp_path / "plain.pt").preprocessing
    assert plain == native_preprocessing(model_info("cornet_z")) and not plain.from_training


def test_a_damaged_record_is_one_line_naming_the_file(run, tmp_path):
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    ckpt["preprocessing"] = {**ckpt["preprocessing"], "mode": "stretch"}
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"bad\.pt.*mode must be one of"):
        vk.load(tmp_path / "bad.pt")


def test_flags_are_applied_by_the_loader(run):
    loaded = load_model(checkpoint=run / "checkpoints" / "last.pt", image_size=48, preprocess="direct")
    assert loaded.preprocessing == Preprocessing(image_size=48, mode="resize_crop", crop_fraction=1.0)
    assert loaded.model.preprocessing == loaded.preprocessing and loaded.info.input_size == 224
    assert load_model("cornet_z", image_size=64).image_size == 64
    with pytest.raises(ConfigError, match="must be one of resize_crop, none, center, square, eval, direct, auto"):
        load_model("cornet_z", preprocess="crop")


# --------------------------------------------------------------------------- one vocabulary


def test_the_three_vocabularies_are_aliases_of_one_object():
    base = native_preprocessing(model_info("cornet_z"))
    # --eval_transform, --transform and --preprocess spellings of the one crop
    crop = {resolve(base, mode=m) for m in ("resize_crop", "center", "eval")}
    assert crop == {base}
    assert resolve(base, mode="direct") == Preprocessing(image_size=224, crop_fraction=1.0)
    assert resolve(base, mode="square").mode == "square" and resolve(base, mode="none").mode == "none"
    assert set(MODE_ALIASES) == {"resize_crop", "none", "center", "square", "eval", "direct", "auto"}
    # robustness's auto: the identity on images already at the size, the eval crop otherwise
    auto = resolve(base, image_size=32, mode="auto")
    assert resolve_auto(auto, (32, 32)) == resolve(auto, mode="direct")
    assert resolve_auto(auto, (40, 32)) == resolve(auto, mode="eval")


def test_robustness_default_follows_the_training_record(run, tmp_path):
    from ventralkit.analysis.robustness.evaluate import checkpoint_preprocess

    assert checkpoint_preprocess(vk.load(run / "checkpoints" / "last.pt").preprocessing) == "eval"
    none = vk.load(_old_checkpoint(tmp_path / "n.pt", run / "checkpoints" / "last.pt", eval_transform="none"))
    assert checkpoint_preprocess(none.preprocessing) == "direct"
    assert checkpoint_preprocess(load_model("cornet_z").preprocessing) == "auto"
    assert checkpoint_preprocess(None) == "auto"


# --------------------------------------------------------------------------- one builder


def test_pipelines_are_the_ones_each_command_built_before(photo):
    """Each mode's steps are exactly the transforms the four former builders wrote out by hand."""
    mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    tail = [T.ToTensor(), T.Normalize(mean, std)]
    base = native_preprocessing(model_info("cornet_z"))
    for size in (16, 24, 29):
        want = {
            "resize_crop": T.Compose([T.Resize(round(size * 256 / 224)), T.CenterCrop(size), *tail]),
            "square": T.Compose([T.Resize((size, size)), *tail]),
            "direct": T.Compose([T.Resize(size), T.CenterCrop(size), *tail]),
            "none": T.Compose(tail),
        }
        for mode, reference in want.items():
            got = eval_pipeline(resolve(base, image_size=size, mode=mode))(photo)
            assert torch.equal(got, reference(photo)), (mode, size)
    assert all(resize_size(s) == round(s * 256 / 224) for s in range(1, 2049))


def test_pil_and_uint8_pipelines_of_one_object_give_equal_tensors(photo):
    """The uint8 transport (features, robustness) normalises per batch to the very numbers of ToTensor+Normalize."""
    base = native_preprocessing(model_info("phinet"))  # its own mean and std
    for mode in ("resize_crop", "square", "direct", "none"):
        pre = resolve(base, image_size=24, mode=mode)
        u8 = uint8_pipeline(pre)(photo)
        assert u8.dtype == torch.uint8 and u8.shape[-1] == 3
        m, s = (torch.tensor(v).view(1, 3, 1, 1) for v in (pre.mean, pre.std))
        assert torch.equal(normalize_hwc_uint8(u8[None], m, s)[0], eval_pipeline(pre)(photo)), mode


def test_the_gpu_decode_path_is_built_from_the_same_object(tmp_path, photo):
    from conftest import make_image_folder

    from ventralkit.data.folders import ImageFolderDataset
    from ventralkit.data.sampling import SeededDataset
    from ventralkit.data.transforms import device_train_dataset

    root = make_image_folder(tmp_path / "d", classes=2, train_per_class=3, val_per_class=1, size=40)
    pre = resolve(native_preprocessing(model_info("phinet")), image_size=24)
    raw_set = device_train_dataset(ImageFolderDataset(root / "train"), pre)
    cpu = SeededDataset(ImageFolderDataset(root / "train", train_pipeline(pre)), 5)
    keys = [(0, i) for i in range(len(raw_set))]
    raw, _ = raw_set.collate(SeededDataset(raw_set, 5).__getitems__(keys))
    got = raw.to("cpu")
    want = torch.stack([x for x, _ in cpu.__getitems__(keys)])
    assert got.shape == want.shape == (6, 3, 24, 24)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    assert ((got - want) * std).abs().max() < 2.5 / 255  # same crops and flips: only the uint8 rounding of PIL's


def test_features_read_the_trained_size_from_the_loaded_model(run, tmp_path):
    """Given only the module, an analysis feeds it the size it was trained at (the object, not info)."""
    from conftest import make_image_folder

    folder = make_image_folder(tmp_path / "d", classes=1, train_per_class=2, val_per_class=1, size=40) / "val"
    model = vk.load(run / "checkpoints" / "last.pt").model
    vk.extract_features(model, folder / "class_0", layers=["V1.output"], workers=0, progress=False,
                        output_dir=tmp_path / "f")
    assert json.loads((tmp_path / "f" / "features.json").read_text())["image_size"] == 32


# --------------------------------------------------------------------------- the object itself


def test_round_trip_and_bad_values():
    pre = Preprocessing(image_size=48, mode="square", crop_fraction=1.0, interpolation="bicubic",
                        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert Preprocessing.from_dict(pre.to_dict()) == pre
    assert json.loads(json.dumps(pre.to_dict())) == pre.to_dict()
    assert checkpoint_preprocessing(model_info("cornet_z"), {"preprocessing": pre.to_dict()}) == pre
    with pytest.raises(ConfigError, match="--imsize must be a positive"):
        Preprocessing(image_size=0)
    with pytest.raises(ConfigError, match="unknown field 'size'"):
        Preprocessing.from_dict({"image_size": 32, "size": 3})
    with pytest.raises(ConfigError, match="crop fraction"):
        Preprocessing(image_size=32, crop_fraction=1.5)


def test_a_digits_run_without_a_size_records_the_size_it_trained_at(tmp_path):
    """The embedded digits come at 32 px when no size is asked for (the API leaves image_size None): the
    checkpoint must say 32, or every later command would feed the model 224 px images it never saw."""
    res = vk.train(vk.TrainConfig(model="cornet_z", dataset="digits", epochs=1, batch_size=64,
                                  max_steps_per_epoch=1, workers=0, progress=False, output_path=str(tmp_path / "r")))
    loaded = vk.load_model(checkpoint=res.run_dir / "checkpoints" / "last.pt")
    assert loaded.preprocessing.image_size == 32
    assert loaded.info.input_size == 224
