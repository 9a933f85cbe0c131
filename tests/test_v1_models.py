"""The 13 V1-ResNet types: parameter counts and state-dict layouts of the original (docs/reference/v1_resnet.md
sections 2-3), shapes at 64x64, checkpoint round trips, the uniform interface, options, no
cross-model leakage, fine-tuning set-up and a short training run."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from ventralkit.errors import CheckpointError, ConfigError
from ventralkit.models import count_parameters, create_model, list_models, model_info, record_activations
from ventralkit.models.v1 import MODEL_TYPES

# docs/reference/v1_resnet.md section 3: total / trainable parameters with the 1000-class head and with a
# 200-class head, number of state-dict keys and buffer elements
SPEC = {
    "v1_resnet50": (25_557_032, 25_557_032, 23_917_832, 23_917_832, 320, 53_173),
    "v1_resnet50_center_surround": (25_559_459, 25_559_336, 23_920_259, 23_920_136, 335, 53_173),
    "v1_resnet50_local_rf": (34_957_352, 34_957_352, 33_318_152, 33_318_152, 320, 53_173),
    "v1_resnet50_div_norm": (26_736_683, 26_736_683, 25_097_483, 25_097_483, 349, 606_727),
    "v1_resnet50_tuned_norm": (25_754_408, 25_557_800, 24_115_208, 23_918_600, 328, 606_673),
    "v1_resnet50_cortical_magnification": (25_557_032, 25_557_032, 23_917_832, 23_917_832, 322, 606_673),
    "v1_resnet50_composite_a": (35_156_346, 34_959_656, 33_517_146, 33_320_456, 338, 606_673),
    "v1_resnet50_composite_b": (35_154_728, 34_958_120, 33_515_528, 33_318_920, 328, 606_673),
    "v1_resnet50_composite_c": (34_958_970, 34_958_888, 33_319_770, 33_319_688, 332, 606_673),
    "v1_resnet50_composite_d": (35_156_346, 34_959_656, 33_517_146, 33_320_456, 338, 606_673),
    "v1_resnet50_composite_e": (25_754_408, 25_557_800, 24_115_208, 23_918_600, 328, 606_673),
    "v1_resnet50_composite_f": (34_957_352, 34_957_352, 33_318_152, 33_318_152, 322, 606_673),
    "v1_resnet50_composite_g": (35_154_728, 34_958_120, 33_515_528, 33_318_920, 328, 606_673),
}
NAMES = list(SPEC)

F32, F16 = torch.float32, torch.float16
DOG = {"kernel_dists": (5, 5), "sigma1": (256, 1, 1), "sigma2_scale": (256, 1, 1), "total_scale": (256, 1, 1),
       "bias": (16,)}
LRF = (1, 64, 64, 16, 16, 9)
POLAR = {"pooling_masks": ((540, 32, 32), F16), "pooling_mask_counts": ((540,), F16)}
TUNED = {f"layer1.{b}.dn.{k}": (s, F32) for b in range(3) for k, s in
         (("channel_distances", (256, 256)), ("sigmas", (256,)))}


def composite_dog(blocks=(0, 1)):
    keys = {f"layer1.{b}.conv2.conv.weight": ((64, 64, 3, 3), F32) for b in blocks}
    keys |= {f"layer1.{b}.conv2.dog.dog_conv.{k}": (s, F32) for b in blocks for k, s in DOG.items()}
    return keys


def lpp(prefix="lpp."):
    return {prefix + k: v for k, v in POLAR.items()}


# docs/reference/v1_resnet.md section 3, "State-dict keys that differ from torchvision resnet50": (removed, added or reshaped)
LAYOUT = {
    "v1_resnet50": (set(), {}),
    "v1_resnet50_center_surround": (
        {f"layer1.{b}.conv2.weight" for b in range(3)},
        {f"layer1.{b}.conv2.0.weight": ((64, 64, 3, 3), F32) for b in range(3)}
        | {f"layer1.{b}.conv2.1.dog_conv.{k}": (s, F32) for b in range(3) for k, s in DOG.items()}),
    "v1_resnet50_local_rf": ({"layer1.2.conv2.weight"}, {"layer1.2.conv2.1.weight": (LRF, F32)}),
    "v1_resnet50_div_norm": (set(), {f"layer1.{b}.dn.{k}": ((256, 256, 1, 1), F32) for b in range(3)
                                     for k in ("A", "rho", "sigma", "theta", "v", "w")}
                             | {f"layer1.{b}.dn.bias": ((1,), F32) for b in range(3)}
                             | {f"layer1.{b}.dn.{k}": ((3, 3), F32) for b in range(3) for k in ("x_coords", "y_coords")}
                             | lpp()),
    "v1_resnet50_tuned_norm": (set(), TUNED | lpp()),
    "v1_resnet50_composite_a": ({"layer1.0.conv2.weight", "layer1.1.conv2.weight"},
                                composite_dog() | {"layer1.2.conv2.weight": (LRF, F32)} | TUNED | lpp()),
    "v1_resnet50_composite_b": (set(), {"layer1.2.conv2.weight": (LRF, F32)} | TUNED | lpp()),
    "v1_resnet50_composite_c": ({"layer1.0.conv2.weight", "layer1.1.conv2.weight"},
                                composite_dog() | {"layer1.2.conv2.weight": (LRF, F32)} | lpp()),
    "v1_resnet50_composite_e": (set(), TUNED | lpp()),
    "v1_resnet50_composite_f": (set(), {"layer1.2.conv2.weight": (LRF, F32)} | lpp()),
}
LAYOUT["v1_resnet50_composite_d"] = LAYOUT["v1_resnet50_composite_a"]
LAYOUT["v1_resnet50_composite_g"] = LAYOUT["v1_resnet50_composite_b"]

#: torchvision module name -> the cortical-magnification Sequential's index
SEQUENTIAL_PREFIX = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7", "fc": "10"}


@pytest.fixture(scope="module")
def torchvision_keys():
    from torchvision.models import resnet50

    return {k: (tuple(v.shape), v.dtype) for k, v in resnet50().state_dict().items()}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def bn_noise(model: nn.Module) -> None:
    """Non-trivial BatchNorm statistics, so eval-mode outputs depend on every buffer."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)


def test_all_13_types_are_registered_with_metadata():
    assert list_models("v1_resnet50*") == sorted(NAMES)
    assert {t.name for t in MODEL_TYPES} == set(NAMES)
    for name in NAMES:
        info = model_info(name)
        assert info.family == "v1_resnet" and info.input_size == 64 and info.num_classes == 1000
        assert info.mean == info.std == (0.5, 0.5, 0.5)
        assert info.areas["V1"] == ("4" if name.endswith("magnification") else "layer1")
    comps = {n: model_info(n).extra["components"] for n in NAMES}
    assert comps["v1_resnet50"] == []
    assert comps["v1_resnet50_composite_a"] == ["center_surround", "local_rf", "tuned_norm", "cortical_magnification"]
    assert comps["v1_resnet50_composite_d"] == ["center_surround", "local_rf", "tuned_norm"]
    assert comps["v1_resnet50_div_norm"] == ["div_norm"]


@pytest.mark.parametrize("name", NAMES)
def test_counts_layout_and_shapes_match_the_original(name, torchvision_keys):
    total, trainable, total200, trainable200, n_keys, n_buffers = SPEC[name]
    model = create_model(name).eval()
    assert (count_parameters(model), count_parameters(model, trainable_only=True)) == (total, trainable)
    state = model.state_dict()
    assert len(state) == n_keys
    assert sum(b.numel() for b in model.buffers()) == n_buffers

    # key layout: torchvision's keys, minus the replaced ones, plus the added / reshaped ones
    if name.endswith("magnification"):
        expected = {}
        for k, v in torchvision_keys.items():
            module, rest = k.split(".", 1)
            expected[f"{SEQUENTIAL_PREFIX[module]}.{rest}"] = v
        expected |= lpp("3.")
    else:
        removed, added = LAYOUT[name]
        expected = {k: v for k, v in torchvision_keys.items() if k not in removed} | added
    assert {k: (tuple(v.shape), v.dtype) for k, v in state.items()} == expected

    # V1 = layer1 output (N, 256, 16, 16) and logits at 64x64
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad(), record_activations(model, [model.info.areas["V1"]]) as acts:
        logits = model(x)
    assert acts[model.info.areas["V1"]][0].shape == (1, 256, 16, 16)
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()

    del model, state
    model200 = create_model(name, num_classes=200)
    assert (count_parameters(model200), count_parameters(model200, trainable_only=True)) == (total200, trainable200)


@pytest.mark.parametrize("name", ["v1_resnet50_composite_a", "v1_resnet50_cortical_magnification"])
def test_original_checkpoint_round_trip_gives_identical_logits(name, tmp_path):
    source = create_model(name).eval()
    bn_noise(source)
    path = tmp_path / "best_model_acc.pt"
    # the layout main.py writes: its state dict under 'model', next to training bookkeeping
    torch.save({"args": {}, "device": "cpu", "current_epoch": 9, "valid_loss": 1.0, "valid_acc": 0.5,
                "model": source.state_dict(), "optimizer": {}, "lr_scheduler": {}}, path)
    loaded = create_model(name, checkpoint=str(path)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(source(x), loaded(x))
    for k, v in loaded.state_dict().items():
        assert v.dtype == source.state_dict()[k].dtype


def test_fine_tuned_200_class_checkpoint_loads_into_a_200_class_model(tmp_path):
    # main.py bug 1 (docs/reference/v1_resnet.md section 4): validating a fine-tuned model loads the 200-way file into a
    # 1000-way model. Here the head takes the file's size unless told otherwise; a contradiction is one line.
    tuned = create_model("v1_resnet50_cortical_magnification")
    tuned.reset_classifier(200)
    path = tmp_path / "finetuned.pt"
    torch.save({"model": tuned.state_dict()}, path)
    model = create_model("v1_resnet50_cortical_magnification", num_classes=200, checkpoint=str(path))
    assert model.get_classifier().out_features == 200
    assert create_model("v1_resnet50_cortical_magnification", checkpoint=str(path)).info.num_classes == 200
    with pytest.raises(CheckpointError, match="num_classes=200"):
        create_model("v1_resnet50_cortical_magnification", num_classes=1000, checkpoint=str(path))


@pytest.mark.parametrize("name", ["v1_resnet50_composite_a", "v1_resnet50_cortical_magnification"])
def test_uniform_interface(name):
    model = create_model(name).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (1, 2048, 2, 2)
        assert model.forward_head(feats, pre_logits=True).shape == (1, 2048)
        assert torch.equal(model.forward_head(feats), model(x))
    assert model.get_classifier() is model.get_submodule(model.classifier_name)
    assert model.classifier_name == ("10" if name.endswith("magnification") else "fc")


@pytest.mark.parametrize("name", ["v1_resnet50_composite_a", "v1_resnet50_cortical_magnification"])
def test_fine_tuning_trains_exactly_the_new_head(name, tmp_path, monkeypatch):
    """``train --checkpoint ORIGINAL --reset_classifier --num_classes 200 --trainable classifier``, as the study
    fine-tuned: docs/reference/v1_resnet.md section 3 counts 409,800 trainable parameters (2048 x 200 + 200).
    For the Sequential model the original froze everything (main.py bug 2) or appended a second head ``fc``
    (eval-script bug). Only the new head may move; the backbone's weights and BatchNorm statistics keep
    their bytes."""
    import json

    from conftest import make_image_folder
    from ventralkit.engine import train as engine

    torch.manual_seed(0)
    original = create_model(name)
    n_children = len(list(original.children()))
    head = original.classifier_name
    original = original.state_dict()
    torch.save({"model": original}, tmp_path / "original.pt")
    built = {}  # the weights the engine starts from: the original's, with a fresh 200-class head

    def build_model(cfg, num_classes):
        model = build(cfg, num_classes)
        assert len(list(model.children())) == n_children
        built.update({k: v.clone() for k, v in model.state_dict().items()})
        return model

    build = engine.build_model
    monkeypatch.setattr(engine, "build_model", build_model)
    data = make_image_folder(tmp_path / "data", classes=2, train_per_class=2, val_per_class=1, size=64)
    engine.train(model=name, checkpoint=str(tmp_path / "original.pt"), reset_classifier=True, num_classes=200,
                 trainable=["classifier"], data_path=str(data), image_size=64, batch_size=2, epochs=1,
                 max_steps_per_epoch=2, workers=0, lr=0.1, device="cpu", progress=False, keep_epochs=0,
                 output_path=str(tmp_path / "run"))
    assert json.loads((tmp_path / "run/config.json").read_text())["num_trainable"] == 409_800
    after = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)["model"]
    new_head = {f"{head}.weight", f"{head}.bias"}
    assert after.keys() == built.keys() == original.keys() and after[f"{head}.weight"].shape == (200, 2048)
    assert all(torch.equal(built[k], original[k]) for k in original if k not in new_head)
    assert {k for k in built if not torch.equal(built[k], after[k])} == new_head


def test_models_built_in_one_process_do_not_leak_settings():
    # the original sets class attributes: tuned_norm turns cortical magnification off, and a
    # composite_a built afterwards in the same process silently loses it (docs/reference/v1_resnet.md section 2)
    tuned = create_model("v1_resnet50_tuned_norm")
    a = create_model("v1_resnet50_composite_a")
    d = create_model("v1_resnet50_composite_d")
    b = create_model("v1_resnet50_composite_b")
    assert not tuned.cortical_magnification and a.cortical_magnification and not d.cortical_magnification
    assert b.cortical_magnification
    assert type(a.layer1[0].conv2).__name__ == "ConvDoG" and type(b.layer1[0].conv2) is nn.Conv2d
    assert type(a.layer1[2].dn).__name__ == "TunedNormalization"
    assert type(create_model("v1_resnet50_composite_c").layer1[0].dn) is nn.Identity
    # and the forward really goes through the polar transform
    calls = []
    a.lpp.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        a.eval()(torch.randn(1, 3, 64, 64))
    assert calls == [1]


def test_options_are_per_model_and_checked():
    fixed = create_model("v1_resnet50_composite_a", corrected=True)
    dog = fixed.layer1[0].conv2.dog.dog_conv
    assert dog.per_kernel_norm and dog.normalized_prefactor
    assert fixed.layer1[1].dn.center_on_self and fixed.lpp.sector_fill == "angular"
    assert not fixed.lpp.antialias  # the resize stays pinned to the 2023 behaviour
    unused_polar = create_model("v1_resnet50_composite_d", corrected=True)  # max-pool stem, idle lpp buffers
    assert unused_polar.layer1[0].dn.center_on_self and unused_polar.lpp.sector_fill == "stretch"
    plain = create_model("v1_resnet50_composite_a")
    assert not plain.layer1[0].conv2.dog.dog_conv.per_kernel_norm and plain.lpp.sector_fill == "stretch"
    bs = create_model("v1_resnet50_composite_a", polar_pad_radius=True, polar_antialias=True)
    assert bs.lpp.pad_radius and bs.lpp.antialias
    assert create_model("v1_resnet50_local_rf", local_rf_dropout=0.0).layer1[2].conv2[0].p == 0.0
    with pytest.raises(ConfigError, match="center_surround"):
        create_model("v1_resnet50_composite_b", dog_per_kernel_norm=True)
    with pytest.raises(ConfigError, match="did you mean polar_antialias"):
        create_model("v1_resnet50_composite_a", polar_antialas=True)
    with pytest.raises(ConfigError, match="64x64"):
        plain.eval()(torch.randn(1, 3, 96, 96))


def test_two_training_steps_of_a_composite_model():
    model = create_model("v1_resnet50_composite_a", num_classes=5)
    model.train()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    assert len(frozen) == 7  # 2 x (kernel_dists, zero bias) + 3 channel-distance matrices
    sigma_before = model.layer1[0].dn.sigmas.detach().clone()
    lrf_before = model.layer1[2].conv2.weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-5)
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([1, 3])
    for _ in range(2):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
    for n, p in model.named_parameters():
        if n in frozen:
            assert p.grad is None and torch.equal(p, frozen[n]), n
    assert not torch.equal(model.layer1[0].dn.sigmas, sigma_before)
    assert not torch.equal(model.layer1[2].conv2.weight, lrf_before)
