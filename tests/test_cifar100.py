"""CIFAR-100 python-format reader (data/cifar100.py), the cifar100-* recipes, and one staged run end to end."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from ventralkit.data.cifar100 import (
    CIFAR100,
    CIFAR100_URL,
    cifar100_datasets,
    cifar100_transforms,
    write_fake_cifar100,
)
from ventralkit.errors import DataError
from ventralkit.models import model_info
from ventralkit.models.compact import CIFAR100_MEAN, CIFAR100_STD
from ventralkit.models.heads import load_hierarchy


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_fake_cifar100(root, n_train=200, n_test=100, seed=0)
    return root


def test_fake_folder_is_in_the_python_format(fake):
    folder = fake / "cifar-100-python"
    with open(folder / "train", "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    assert batch["data"].dtype == np.uint8 and batch["data"].shape == (200, 3072)
    assert len(batch["fine_labels"]) == len(batch["coarse_labels"]) == len(batch["filenames"]) == 200
    with open(folder / "meta", "rb") as f:
        meta = pickle.load(f, encoding="latin1")
    assert len(meta["fine_label_names"]) == 100 and meta["coarse_label_names"][0] == "aquatic_mammals"


def test_reader_labels_and_shapes(fake):
    train = CIFAR100(fake, "train")
    test = CIFAR100(fake / "cifar-100-python", "test", target="coarse")  # the folder itself works too
    assert len(train) == 200 and len(test) == 100
    assert train.classes[:3] == ["apple", "aquarium_fish", "baby"] and len(test.classes) == 20
    image, label = train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert label == train.fine_targets[0]
    coarse_of = load_hierarchy("cifar100_coarse20").parent_of()
    assert all(coarse_of[f] == c for f, c in zip(train.fine_targets, train.coarse_targets))
    assert test[5][1] == test.coarse_targets[5] < 20


def test_reader_takes_the_official_bytes_keys(tmp_path):
    folder = tmp_path / "cifar-100-python"
    write_fake_cifar100(tmp_path, n_train=4, n_test=2)
    for name in ("train", "test", "meta"):  # the tarball's pickles have bytes keys (Python 2)
        with open(folder / name, "rb") as f:
            obj = pickle.load(f, encoding="latin1")
        obj = {k.encode(): ([n.encode() for n in v] if name == "meta" else v) for k, v in obj.items()}
        with open(folder / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)
    ds = CIFAR100(tmp_path, "train")
    assert len(ds) == 4 and ds.classes[0] == "apple"


def test_transforms_and_resolution(fake):
    train, val, classes = cifar100_datasets(fake, image_size=64)
    assert len(classes) == 100 and len(train) == 200 and len(val) == 100
    assert train[0][0].shape == val[0][0].shape == (3, 64, 64)
    _, eval32 = cifar100_transforms(32)
    raw = torch.from_numpy(np.ascontiguousarray(val.images[0].transpose(2, 0, 1)))
    mean, std = torch.tensor(CIFAR100_MEAN)[:, None, None], torch.tensor(CIFAR100_STD)[:, None, None]
    torch.testing.assert_close(eval32(raw), (raw.float() / 255 - mean) / std)
    # resnet9's ModelInfo: no normalisation, crop + flip at 32 px
    _, val9, _ = cifar100_datasets(fake, image_size=32, info=model_info("resnet9"))
    x = val9[0][0]
    assert x.shape == (3, 32, 32) and 0 <= x.min() and x.max() <= 1


def test_holdout_validation_split_is_taken_from_train(fake):
    train, val, _ = cifar100_datasets(fake, image_size=32, val_split="holdout", holdout_per_class=1, seed=3)
    assert len(train) == 100 and len(val) == 100  # 2 train images per class in the fake set
    assert sorted(val.targets) == list(range(100)) and sorted(train.targets) == list(range(100))


def test_missing_folder_or_file_says_what_to_put_where(tmp_path, fake):
    with pytest.raises(DataError, match="cifar-100-python.tar.gz by hand") as err:
        CIFAR100(tmp_path / "nothing")
    assert "\n" not in str(err.value) and CIFAR100_URL in str(err.value)
    partial = tmp_path / "partial" / "cifar-100-python"
    partial.mkdir(parents=True)
    (partial / "train").write_bytes((fake / "cifar-100-python" / "train").read_bytes())
    with pytest.raises(DataError, match="lacks test, meta"):
        CIFAR100(tmp_path / "partial")


def test_cifar100_recipes_are_valid_configs():
    from ventralkit.engine.config import TrainConfig, list_recipes, load_toml, recipe_path

    names = [n for n in list_recipes() if n.startswith("cifar100-")]
    assert set(names) >= {"cifar100-finetune", "cifar100-adaptive", "cifar100-nmf", "cifar100-hierarchical",
                          "cifar100-hierarchical20"}
    for name in names:
        cfg = TrainConfig.from_dict({**load_toml(recipe_path(name)), "data_path": "x"}, source=name).validate()
        assert cfg.optimizer == "adam" and cfg.dataset == "cifar100"
    stages = load_toml(recipe_path("cifar100-hierarchical"))["stages"]
    assert [s["trainable"] for s in stages] == [["backbone", "head.shared"], ["head.parent"], ["head.child"]]


def test_staged_hierarchical_run_and_comparison(fake, tmp_path):
    """The three stages of cifar100-hierarchical, a few steps each, then the comparison table."""
    from ventralkit.analysis.compare import compare_runs
    from ventralkit.engine.config import TrainConfig, load_toml, recipe_path
    from ventralkit.engine.train import train

    recipe = load_toml(recipe_path("cifar100-hierarchical"))
    recipe["model_kwargs"]["backbone_pretrained"] = False  # the ImageNet weights are not in the test tree
    for stage in recipe["stages"]:
        stage["epochs"] = 1
    cfg = TrainConfig.from_dict({**recipe, "data_path": str(fake), "image_size": 32, "batch_size": 8, "workers": 0,
                                 "max_steps_per_epoch": 2, "progress": False, "keep_epochs": 0,
                                 "output_path": str(tmp_path / "run")})
    before = None
    train(cfg.validate())
    for stage in ("finetune", "parents", "children"):
        state = torch.load(tmp_path / "run" / stage / "checkpoints" / "last.pt", weights_only=False)["model"]
        if before is not None:  # each stage changes its own part only
            changed = {k.split(".")[0] if k.startswith("backbone") else ".".join(k.split(".")[:2])
                       for k in state if not torch.equal(state[k], before[k])}
            assert changed == {"parents": {"head.parent"}, "children": {"head.child"}}[stage]
        before = state
    rows = compare_runs([tmp_path / "run"]).rows
    assert [r.run for r in rows] == ["run/finetune", "run/parents", "run/children"]
    assert all(r.head == "hierarchical" and r.params_head == 72_350 for r in rows)
    assert [r.trainable for r in rows] == [552_267 + 34_500, 3_450, 34_400]


def test_flags_override_stage_tables():
    """defaults < recipe < config < flags holds inside [[stage]] tables as well."""
    from ventralkit.engine.config import TrainConfig

    cfg = TrainConfig.build(recipe="cifar100-hierarchical", data_path="x", epochs=1, lr=0.5)
    assert [st["epochs"] for st in cfg.stages] == [1, 1, 1]
    assert cfg.epochs == 1 and "lr" not in cfg.stages[0]  # stages without the key inherit the base value
    assert [st["trainable"] for st in cfg.stages] == [["backbone", "head.shared"], ["head.parent"], ["head.child"]]
