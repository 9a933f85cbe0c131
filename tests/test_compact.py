"""PhiNet and ResNet-9 (models/compact): the numbers pinned by docs/reference/heads.md sections 1.1-1.3."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from ventralkit.errors import CheckpointError
from ventralkit.models import count_parameters, create_model, list_models, model_info
from ventralkit.models.compact.phinet import PhiNet, correct_pad, expansion_factor, make_divisible
from ventralkit.models.heads import HeadModel

# docs/reference/heads.md 1.2, channel table: top-level index -> (C_in, expand E, SE reduce R, C_out, stride, residual, params)
PHINET_BLOCKS = {
    2: (40, None, None, 24, 1, False, 1_448),
    3: (24, 88, 16, 24, 2, False, 8_232),
    4: (24, 80, 16, 24, 1, True, 7_488),
    5: (24, 72, 16, 40, 2, False, 7_928),
    6: (40, 112, 24, 88, 2, False, 21_344),
    7: (88, 224, 40, 176, 2, False, 80_320),
    8: (176, 400, 64, 176, 1, True, 197_552),
    9: (176, 352, 56, 344, 2, False, 227_728),
}


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return create_model("phinet", num_classes=0).eval()


def test_registered_names():
    names = set(list_models())
    assert {"phinet", "phinet_adaptive", "phinet_nmf", "phinet_nmf_sigmoid", "phinet_hierarchical10",
            "resnet9", "resnet9_hierarchical20", "resnet9_adaptive"} <= names
    info = model_info("phinet")
    assert info.family == "compact" and info.input_size == 160
    assert info.mean == pytest.approx((0.50708, 0.48655, 0.44092), abs=1e-5)
    assert model_info("resnet9").input_size == 32


def test_helpers_match_the_spec_formulas():
    assert make_divisible(43.2) == 40 and make_divisible(114) == 112 and make_divisible(18) == 24
    assert correct_pad(160) == (0, 1, 0, 1) and correct_pad(161) == (1, 1, 1, 1)
    assert [round(expansion_factor(4, 0.5, i, 7) * 7) for i in range(1, 8)] == [26, 24, 22, 20, 18, 16, 14]


def test_phinet_parameter_counts(backbone):
    assert count_parameters(backbone) == 552_267
    assert sum(p.numel() for p in backbone._layers[1].parameters()) == 227
    for index, (*_, params) in PHINET_BLOCKS.items():
        assert sum(p.numel() for p in backbone._layers[index].parameters()) == params, index
    assert count_parameters(PhiNet(num_classes=1000)) == 897_267  # docs/reference/heads.md 6.3: with the 344 -> 1000 top


def test_phinet_block_widths(backbone):
    for index, (c_in, expand, reduce, c_out, stride, residual, _) in PHINET_BLOCKS.items():
        block = backbone._layers[index]
        convs = [m for m in block._layers if isinstance(m, nn.Conv2d)]
        depthwise = next(c for c in convs if c.groups > 1)
        assert convs[0].in_channels == c_in and convs[-1].out_channels == c_out
        assert depthwise.out_channels == (expand or c_in) and depthwise.stride == (stride, stride)
        se = [m for m in block.modules() if hasattr(m, "se_conv")]
        assert (se[0].se_conv.out_channels if se else None) == reduce
        assert block.residual is residual
    for bn in (m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)):
        assert bn.eps == 1e-3 and bn.momentum == 0.999


def test_phinet_feature_maps(backbone):
    with torch.no_grad():
        assert backbone.forward_features(torch.zeros(1, 3, 160, 160)).shape == (1, 344, 3, 3)
        x = torch.randn(2, 3, 32, 32)
        assert backbone.forward_features(x).shape == (2, 344, 1, 1)
        assert backbone(x).shape == (2, 344)  # num_classes=0: the pooled embedding (timm convention)
    assert backbone.num_features == 344 and isinstance(backbone.get_classifier(), nn.Identity)


def _micromind_keys() -> dict[str, tuple]:
    """micromind's PhiNet state-dict names and shapes, written out from docs/reference/heads.md 1.2 (not from the model)."""
    keys: dict[str, tuple] = {}

    def bn(prefix, c):
        keys.update({f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
                     f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()})

    keys["_layers.1._layers.0.weight"] = (3, 1, 3, 3)  # first depthwise conv
    keys["_layers.1._layers.1.weight"] = (40, 3, 1, 1)
    bn("_layers.1._layers.2", 40)
    for i, (c_in, e, r, c_out, *_) in PHINET_BLOCKS.items():
        p = f"_layers.{i}._layers"
        if e is None:  # block1: dropout 0, depthwise 1, BN 2, act 3, project 4, BN 5
            keys[f"{p}.1.weight"] = (c_in, 1, 3, 3)
            bn(f"{p}.2", c_in)
            keys[f"{p}.4.weight"] = (c_out, c_in, 1, 1)
            bn(f"{p}.5", c_out)
            continue
        # expand 0, BN 1, act 2, dropout 3, depthwise 4, BN 5, act 6, SE 7, project 8, BN 9
        keys[f"{p}.0.weight"] = (e, c_in, 1, 1)
        bn(f"{p}.1", e)
        keys[f"{p}.4.weight"] = (e, 1, 3, 3)
        bn(f"{p}.5", e)
        keys[f"{p}.7.se_conv.weight"] = (r, e, 1, 1)
        keys[f"{p}.7.se_conv2.weight"] = (e, r, 1, 1)
        keys[f"{p}.8.weight"] = (c_out, e, 1, 1)
        bn(f"{p}.9", c_out)
    keys["classifier.2.weight"] = (1000, 344)
    keys["classifier.2.bias"] = (1000,)
    return keys


def test_phinet_state_dict_names_match_micromind():
    model = PhiNet(num_classes=1000)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == _micromind_keys()


def test_micromind_and_study_checkpoints_load(tmp_path):
    torch.manual_seed(1)
    src = PhiNet(num_classes=100)
    plain = tmp_path / "micromind.pth.tar"
    torch.save(src.state_dict(), plain)
    assert torch.equal(create_model("phinet", num_classes=100, checkpoint=str(plain)).classifier[2].weight,
                       src.classifier[2].weight)
    # the study's checkpoint: one state dict per module plus pickled trainer state (docs/reference/heads.md 2.2)
    feats = {k: v for k, v in src.state_dict().items() if not k.startswith("classifier")}
    study = {"key": "val_loss", "mode": "min", "epoch": 165, "optimizer": {"lr": 1e-4},
             "feature_extractor": feats, "classifier": {"2.weight": src.classifier[2].weight,
                                                        "2.bias": src.classifier[2].bias}}
    torch.save(study, tmp_path / "epoch_165.ckpt")
    loaded = create_model("phinet", num_classes=100, checkpoint=str(tmp_path / "epoch_165.ckpt"))
    for k, v in src.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_pretrained_phinet_says_where_to_get_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("VENTRALKIT_WEIGHTS", str(tmp_path))
    with pytest.raises(CheckpointError, match="huggingface.co/micromind/ImageNet") as err:
        create_model("phinet", pretrained=True)
    assert "\n" not in str(err.value)


def test_phinet_uniform_interface_and_head_keyword():
    model = create_model("phinet", num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 10)
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, 344)
    model.reset_classifier(7)
    assert model(x).shape == (2, 7) and model.info.num_classes == 7
    with_head = create_model("phinet", num_classes=10, head="adaptive", rank=4, alpha=0.5)
    assert isinstance(with_head, HeadModel) and with_head.backbone.config["alpha"] == 0.5
    assert with_head(x).shape == (2, 10)
    with pytest.raises(TypeError, match="rank"):
        create_model("phinet", rank=4)  # a head option without a head


def test_resnet9_counts_and_shapes():
    torch.manual_seed(0)
    model = create_model("resnet9").eval()
    assert count_parameters(model) == 30_441_528
    assert count_parameters(model.get_classifier()) == 102_900
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert model.forward_features(x).shape == (2, 1028, 2, 2)
        assert model(x).shape == (2, 100)
    model.reset_classifier(0)
    with torch.no_grad():
        assert model(x).shape == (2, 1028)
    assert model_info("resnet9").extra["cifar100_augment"] == "resnet9"
