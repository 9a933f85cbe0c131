"""Models from elsewhere (issue 23 items 1-3, 5): torchvision:NAME, timm:NAME, file.py:factory and vk.wrap become
ventralkit models: the interface, areas or stages, the preprocessing their weights were trained with (reproduced
pixel for pixel), provenance, and one line with exit code 2 for every bad input. Nothing downloads: torchvision
weights come from a file placed in a temporary TORCH_HOME; timm models are randomly initialised."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from ventralkit.errors import CheckpointError, ConfigError, ModelNotFoundError
from ventralkit.models.loading import load_model
from ventralkit.models.model_spec import canonical_spec, is_source_spec, parse_spec

try:
    import timm
except ImportError:  # the optional extra: its tests skip
    timm = None

needs_timm = pytest.mark.skipif(timm is None, reason="timm is not installed (pip install 'ventralkit[timm]')")


def _photo(seed=0, size=(300, 241)):
    """A non-square RGB image with detail at every scale, so a different resize or crop changes pixels."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))


# --------------------------------------------------------------------------- the --model string


def test_specs_are_told_apart_without_importing_anything(tmp_path):
    assert parse_spec("cornet_s").kind == "registered" and not is_source_spec("S")
    assert parse_spec("torchvision:resnet50") == parse_spec("torchvision:resnet50")
    assert (parse_spec("timm:resnet18.a1_in1k").kind, parse_spec("timm:resnet18.a1_in1k").name) == (
        "timm", "resnet18.a1_in1k")
    spec = parse_spec("nets/my.py:build")
    assert (spec.kind, spec.path, spec.name, spec.runs_code) == ("file", "nets/my.py", "build", True)
    # a file's path becomes absolute, so a checkpoint names the file wherever the next command runs
    assert canonical_spec("nets/my.py:build") == f"{Path('nets/my.py').resolve()}:build"
    for bad, why in (("torchvision:", "give a model name"), ("keras:resnet", "a prefix must be one of"),
                     ("nets.py:2build", "name the function")):
        with pytest.raises(ConfigError, match=why):
            parse_spec(bad)


# --------------------------------------------------------------------------- torchvision


def test_torchvision_alexnet_is_a_full_ventralkit_model():
    torch.manual_seed(0)
    loaded = load_model("torchvision:alexnet", num_classes=10)
    model = loaded.model.eval()
    # Brain-Score's published commitment for AlexNet (region_layer_map/alexnet.json), not made-up areas
    assert model.info.areas == {"V1": "features.2", "V2": "features.7", "V4": "features.7", "IT": "features.12"}
    assert model.info.extra["stages"] == {"stage1": "features.2", "stage2": "features.5", "stage3": "features.12"}
    assert isinstance(model, torch.nn.Module) and type(model).__name__ == "AlexNet"
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = model(x)
        feats = model.forward_features(x)
        assert logits.shape == (2, 10) and feats.shape == (2, 4096)
        assert torch.equal(model.forward_head(feats), logits)
        assert torch.equal(model.forward_head(feats, pre_logits=True), feats)
    assert model.get_classifier() is model.classifier[6]
    model.reset_classifier(3)
    assert model.classifier[6].out_features == 3 and model.info.num_classes == 3
    src = loaded.describe()["source"]
    assert src["library"] == "torchvision" and src["weights"] is None and src["commitment"]["plugin"] == "alexnet"
    assert "AlexNet_Weights.IMAGENET1K_V1 transforms()" in src["preprocessing_from"]


def test_resnet_stages_are_labelled_as_stages_not_areas():
    loaded = load_model("torchvision:resnet18", reset_classifier=True, num_classes=7)
    assert loaded.info.areas == {f"stage{i}": f"layer{i}" for i in range(1, 5)}  # no Brain-Score map for resnet18
    assert loaded.model.fc.out_features == 7 and loaded.info.num_classes == 7
    assert loaded.model.classifier_name == "fc"


@pytest.mark.parametrize("weights", ["ResNet50_Weights.IMAGENET1K_V2", "EfficientNet_B1_Weights.IMAGENET1K_V2",
                                     "ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1", "AlexNet_Weights.IMAGENET1K_V1"])
def test_torchvision_weights_preprocessing_is_reproduced_pixel_for_pixel(weights):
    """The weights' transforms() (resize 232/255/384/256, crop, bilinear or bicubic, mean, std) and ventralkit's
    evaluation pipeline of the same preprocessing give identical tensors (read from the enum: no download)."""
    import torchvision.models as tvm

    from ventralkit.data.transforms import eval_pipeline
    from ventralkit.models.sources.torchvision_source import weights_preprocessing

    enum_name, member = weights.split(".")
    w = getattr(tvm, enum_name)[member]
    pre = weights_preprocessing(w)
    assert pre.resize_size == w.transforms().resize_size[0] and pre.image_size == w.transforms().crop_size[0]
    img = _photo()
    assert torch.equal(eval_pipeline(pre)(img), w.transforms()(img))


def test_torchvision_weights_load_from_torch_home_and_are_recorded(tmp_path, monkeypatch):
    """A weights file under its torchvision name in TORCH_HOME is what --weights loads (no download); the record
    names the weights, file and sha256; a file whose sha256 does not start with its name's prefix is refused."""
    import torchvision.models as tvm

    from ventralkit.models.sources import torchvision_source as tvs

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    w = tvm.AlexNet_Weights.IMAGENET1K_V1
    path = tvs.cache_path(w)
    assert path == tmp_path / "th" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    path.parent.mkdir(parents=True)
    torch.manual_seed(3)
    reference = tvm.alexnet().state_dict()
    torch.save(reference, path)
    with pytest.raises(CheckpointError, match=r"not the 7be5be79\.\.\. its name promises"):
        load_model("torchvision:alexnet", weights="DEFAULT")
    # the real file's sha256 starts with the prefix; stand in for it (a crafted file cannot match 32 bits)
    real = "7be5be79" + "0" * 56
    monkeypatch.setattr(tvs, "file_sha256", lambda p: real)
    loaded = load_model("torchvision:alexnet", weights="IMAGENET1K_V1")
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in reference.items())
    d = loaded.describe()
    assert d["weights"] == "pretrained" and d["weights_file"] == str(path) and d["weights_sha256"] == real
    assert d["source"]["weights"] == "IMAGENET1K_V1" and d["source"]["weights_url"] == w.url
    assert d["source"]["commitment"]["exact"] is True
    with pytest.raises(ConfigError, match="score 1000 classes, not 10; add --reset_classifier"):
        load_model("torchvision:alexnet", weights="DEFAULT", num_classes=10)
    tuned = load_model("torchvision:alexnet", weights="DEFAULT", num_classes=10, reset_classifier=True)
    assert tuned.model.classifier[6].out_features == 10
    assert torch.equal(tuned.model.features[0].weight, reference["features.0.weight"])


def test_torchvision_download_failures_are_one_line(tmp_path, monkeypatch):
    import torch.hub

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setenv("VENTRALKIT_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"VENTRALKIT_OFFLINE is set .* place alexnet-owt-7be5be79\.pth") as e:
        load_model("torchvision:alexnet", weights="DEFAULT")
    assert "\n" not in str(e.value)
    monkeypatch.setenv("VENTRALKIT_OFFLINE", "0")

    def unreachable(url, dst, *a, **k):
        raise OSError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", unreachable)
    with pytest.raises(CheckpointError, match=r"could not be downloaded from https://.*Network is unreachable.*"
                                              r"place the file at") as e:
        load_model("torchvision:alexnet", weights="DEFAULT")
    assert "\n" not in str(e.value) and not list((tmp_path / "th").rglob("*.pth"))


def test_unknown_torchvision_names_suggest_close_ones():
    with pytest.raises(ModelNotFoundError, match=r"unknown torchvision model 'resnet19' \(did you mean resnet18"):
        load_model("torchvision:resnet19")
    with pytest.raises(ConfigError, match=r"--weights IMAGENET1K_V3: torchvision's resnet50 has weights "
                                          r"IMAGENET1K_V1, IMAGENET1K_V2 \(or DEFAULT\)"):
        load_model("torchvision:resnet50", weights="IMAGENET1K_V3")


def test_absent_layer_lists_close_names():
    from ventralkit.models.interface import record_activations

    model = load_model("torchvision:alexnet").model
    with pytest.raises(ConfigError, match=r"torchvision:alexnet has no layer 'features.22' \(did you mean features.2"):
        with record_activations(model, ["features.22"]):
            pass


def test_brainscore_commitments_name_modules_of_the_model():
    """Every stored region -> layer map names modules that exist in the model it is stored for (built on the meta
    device: names only), so a Brain-Score commitment can never point at nothing."""
    import torchvision.models as tvm

    from ventralkit.models.sources.published import published_commitments

    checked = 0
    for row in published_commitments():
        if row["source"] == "timm" and timm is None:
            continue
        try:
            with torch.device("meta"):
                model = (tvm.get_model(row["model"]) if row["source"] == "torchvision"
                         else timm.create_model(row["model"]))
        except (NotImplementedError, RuntimeError):  # RegNet computes its widths from data: not on meta
            continue
        names = {n for n, _ in model.named_modules()}
        assert set(row["areas"].values()) <= names, row
        assert set(row["areas"]) == {"V1", "V2", "V4", "IT"} and row["file"].endswith(".json")
        checked += 1
    assert checked >= 12


def test_checkpoint_of_a_torchvision_model_reloads_from_the_file_alone(tmp_path):
    """A ventralkit checkpoint stores the spec: checkpoint= alone rebuilds the model (random init, nothing
    downloaded) and loads its tensors; a plain state dict with another head than the default fits too."""
    from ventralkit.models.weights import CHECKPOINT_FORMAT

    torch.manual_seed(1)
    model = load_model("torchvision:resnet18", num_classes=5).model
    ckpt = {"format": CHECKPOINT_FORMAT, "model_name": "torchvision:resnet18", "num_classes": 5,
            "classes": list("abcde"), "config": {}, "model": model.state_dict(),
            "preprocessing": model.preprocessing.to_dict()}
    torch.save(ckpt, tmp_path / "best.pt")
    back = load_model(checkpoint=tmp_path / "best.pt")
    assert back.name == "torchvision:resnet18" and back.info.num_classes == 5 and back.classes == list("abcde")
    assert all(torch.equal(back.model.state_dict()[k], v) for k, v in model.state_dict().items())
    torch.save(model.state_dict(), tmp_path / "plain.pth")
    plain = load_model("torchvision:resnet18", checkpoint=tmp_path / "plain.pth")
    assert plain.model.fc.out_features == 5 and torch.equal(plain.model.fc.weight, model.fc.weight)
    with pytest.raises(ConfigError, match="--weights / --pretrained or --ckpt_path, not both"):
        load_model("torchvision:resnet18", checkpoint=tmp_path / "plain.pth", weights="DEFAULT")


# --------------------------------------------------------------------------- timm


@needs_timm
def test_timm_stage_outputs_equal_features_only():
    """ventralkit's timm:resnet18 stages (timm's feature_info: act1, layer1..layer4) recorded by hooks equal
    ``timm.create_model('resnet18', features_only=True)`` with the same weights within 1e-6."""
    from ventralkit.models.interface import record_activations

    torch.manual_seed(0)
    model = load_model("timm:resnet18").model.eval()
    assert list(model.info.areas.values()) == ["act1", "layer1", "layer2", "layer3", "layer4"]
    assert list(model.info.areas) == [f"stage{i}" for i in range(1, 6)]
    reference = timm.create_model("resnet18", features_only=True).eval()
    missing, unexpected = reference.load_state_dict(model.state_dict(), strict=False)
    assert not missing and set(unexpected) == {"fc.weight", "fc.bias"}
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad(), record_activations(model, list(model.info.areas.values())) as acts:
        model(x)
        expected = reference(x)
    assert len(expected) == 5
    for (name, outs), ref in zip(acts.items(), expected):
        assert outs[0].shape == ref.shape, name
        assert torch.allclose(outs[0], ref, atol=1e-6, rtol=0), name


@needs_timm
def test_timm_preprocessing_is_timms_eval_transform_pixel_for_pixel():
    """resnet18's pretrained config (224 px, crop_pct 0.95, bicubic): Resize(floor(224/0.95) = 235) +
    CenterCrop(224), as timm's own eval transform (timm rounds down; ventralkit must not round)."""
    from ventralkit.data.transforms import eval_pipeline

    loaded = load_model("timm:resnet18")
    pre = loaded.preprocessing
    assert (pre.image_size, pre.resize_size, pre.interpolation) == (224, 235, "bicubic")
    cfg = timm.data.resolve_model_data_config(loaded.model)
    img = _photo(1)
    assert torch.equal(eval_pipeline(pre)(img), timm.data.create_transform(**cfg)(img))
    assert loaded.describe()["source"]["preprocessing_from"] == "timm pretrained_cfg of resnet18.a1_in1k"


@needs_timm
def test_timm_interface_and_unknown_names():
    loaded = load_model("timm:resnet18", reset_classifier=True, num_classes=4)
    model = loaded.model.eval()
    assert model.get_classifier().out_features == 4 and loaded.info.num_classes == 4
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.forward_head(model.forward_features(x)), model(x))  # timm's own methods
    with pytest.raises(ModelNotFoundError, match=r"unknown timm model 'resnet19' \(did you mean resnet18"):
        load_model("timm:resnet19")
    with pytest.raises(ModelNotFoundError, match="timm's resnet18 has no pretrained tag 'zz_in1k'"):
        load_model("timm:resnet18.zz_in1k")


def test_timm_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm -> ImportError
    with pytest.raises(ConfigError, match=r"need timm, which is not installed: pip install 'ventralkit\[timm\]'"):
        load_model("timm:resnet18")


# --------------------------------------------------------------------------- the user's own modules


class TinyNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.head(self.pool(self.body(x)).flatten(1))


def test_wrap_gives_any_module_the_interface_and_records_its_preprocessing():
    import ventralkit as vk
    from ventralkit.models.preprocessing import IMAGENET_MEAN

    net = TinyNet()
    model = vk.wrap(net, name="tiny", areas={"V1": "body.2", "IT": "body.5"},
                    preprocess={"image_size": 32, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)})
    assert model is net and model.info.name == "tiny" and model.info.areas == {"V1": "body.2", "IT": "body.5"}
    assert model.preprocessing.image_size == 32 and model.info.mean == (0.5, 0.5, 0.5)
    assert model.classifier_name == "head" and model.info.num_classes == 10
    plain = vk.wrap(TinyNet(3))
    assert plain.preprocessing.image_size == 224 and plain.info.mean == IMAGENET_MEAN  # ImageNet's defaults
    assert "ImageNet's defaults" in plain.info.extra["source"]["preprocessing_from"]
    # stage ends: the last module at each spatial size (224, 112, 56 px)
    assert list(plain.info.areas.values()) == ["body.1", "body.4", "body.5"]
    with pytest.raises(ConfigError, match=r"has no layer 'body.9' \(did you mean body"):
        vk.wrap(TinyNet(), areas={"V1": "body.9"})
    with pytest.raises(ConfigError, match="wrap\\(\\) takes a torch.nn.Module, not a dict"):
        vk.wrap({})


def test_wrapped_module_goes_through_the_feature_extractor(tmp_path):
    import ventralkit as vk
    from ventralkit.data.embedded import write_image_folder

    imgs = write_image_folder(tmp_path / "imgs", classes=2, per_class=2, size=32, splits=None)
    model = vk.wrap(TinyNet(), name="tiny", areas={"V1": "body.2"}, preprocess={"image_size": 32})
    feats = vk.extract_features(model, imgs, output_dir=tmp_path / "out", workers=0)
    assert list(feats) == ["body.2-t0"] and feats["body.2-t0"].shape == (4, 8 * 16 * 16)
    manifest = json.loads((tmp_path / "out" / "features.json").read_text())
    assert manifest["transform"] == "center"  # a model from elsewhere: Resize + CenterCrop, not CORnet's square


FACTORY = '''
import torch.nn as nn

def build(num_classes=10):
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, num_classes))

def not_a_module():
    return {"weights": 1}

def broken():
    raise RuntimeError("out of cheese")

def fixed_head():
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(7))
'''


def test_factory_files_build_models_and_bad_ones_are_one_line(tmp_path):
    f = tmp_path / "nets.py"
    f.write_text(FACTORY)
    loaded = load_model(f"{f}:build", num_classes=3)
    assert loaded.info.num_classes == 3 and loaded.name == f"{f}:build"
    src = loaded.describe()["source"]
    assert src["library"] == "file" and src["code_sha256"] and src["weights"] is None
    (tmp_path / "bad.py").write_text("import numpy\ndef (:\n")
    cases = [
        (f"{tmp_path / 'missing.py'}:build", "no such file"),
        (f"{tmp_path / 'bad.py'}:build", r"bad.py failed to import \(SyntaxError"),
        (f"{f}:biuld", r"defines no function 'biuld' \(did you mean build"),
        (f"{f}:not_a_module", r"not_a_module\(\) returned a dict, not a torch.nn.Module"),
        (f"{f}:broken", r"broken\(\) raised RuntimeError: out of cheese"),
    ]
    for spec, message in cases:
        with pytest.raises(ConfigError, match=message) as e:
            load_model(spec)
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="--weights applies to torchvision and timm models"):
        load_model(f"{f}:build", weights="DEFAULT")


def test_checkpoint_of_a_factory_model_needs_the_file_named(tmp_path):
    """Reloading must not run a Python file the user did not name on this command: --model is required."""
    from ventralkit.models.weights import CHECKPOINT_FORMAT

    f = tmp_path / "nets.py"
    f.write_text(FACTORY)
    spec = f"{f}:build"
    model = load_model(spec, num_classes=3).model
    torch.save({"format": CHECKPOINT_FORMAT, "model_name": spec, "num_classes": 3, "config": {},
                "model": model.state_dict()}, tmp_path / "best.pt")
    with pytest.raises(CheckpointError, match=rf"built by {spec}, which runs that Python file; .*--model {spec}"):
        load_model(checkpoint=tmp_path / "best.pt")
    back = load_model(spec, checkpoint=tmp_path / "best.pt")
    assert torch.equal(back.model[4].weight, model[4].weight)


def test_the_brainscore_adapter_maps_published_areas_and_refuses_stages():
    """The Brain-Score adapter's region map comes from the same areas: AlexNet's published layers; a model with
    stages only commits to no region (stages are not brain areas)."""
    import ventralkit as vk
    from ventralkit.integrations.brainscore import region_layer_map

    assert region_layer_map(vk.create_model("torchvision:alexnet")) == {
        "V1": "features.2-t0", "V2": "features.7-t0", "V4": "features.7-t0", "IT": "features.12-t0"}
    assert region_layer_map(vk.create_model("torchvision:resnet18")) == {}


def test_training_data_of_a_source_model_uses_its_weights_preprocessing():
    """train prepares its data before it builds the model: the info it reads carries the weights' preprocessing
    (ResNet-50 IMAGENET1K_V2: Resize(232) + CenterCrop(224)), scaled to the run's size, without a download."""
    from ventralkit.models.preprocessing import native_preprocessing, training_preprocessing
    from ventralkit.models.sources import model_info_for

    info = model_info_for("torchvision:resnet50", "IMAGENET1K_V2")
    assert native_preprocessing(info).resize_size == 232 and info.input_size == 224
    assert training_preprocessing(info, 64, "resize_crop").resize_size == round(64 * 232 / 224)
    assert model_info_for("torchvision:resnet50").extra["preprocessing"]["crop_fraction"] == 224 / 232  # DEFAULT = V2
    assert model_info_for("cornet_z").name == "cornet_z"
