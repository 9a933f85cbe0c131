"""``ventralkit features`` of torchvision's AlexNet and ResNet-18 against thingsvision 2.7.3 itself (issue 23).

thingsvision is never a dependency: `make peer-thingsvision` installs it (with the tensorflow its import needs)
into .peers/thingsvision, and tests/scripts/thingsvision_reference.py runs it in a subprocess with that folder on
PYTHONPATH (or the running interpreter, when it can import thingsvision itself). Without either the test skips
and says how to install it.

Both sides load the same seeded random weights from one local state-dict file (ventralkit ``--ckpt_path``,
thingsvision ``model_path``; no download), read the same images (JPEG and PNG, RGB, greyscale and RGBA, none
of them 224 px square, so the resize and the crop both matter) and extract three modules of each model,
flattened. ventralkit's preprocessing for a torchvision model without weights is its DEFAULT weights' own
(Resize(256) + CenterCrop(224), bilinear, ImageNet mean/std); thingsvision's for ``pretrained=False`` is its
default transformation with the same numbers. They must agree within 1e-5; a control run with CORnet's square
resize instead shows that the comparison notices a preprocessing that differs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT / ".peers" / "thingsvision"
SCRIPT = ROOT / "tests" / "scripts" / "thingsvision_reference.py"
TOL = 1e-5

#: three modules per model: early, middle and late (names as torchvision's module tree has them)
MODULES = {"alexnet": ["features.2", "features.5", "classifier.4"],
           "resnet18": ["layer1", "layer3", "avgpool"]}

pytestmark = pytest.mark.slow  # thingsvision imports tensorflow: ~15-25 s on 2 busy cores


def _peer_env() -> dict | None:
    """The environment that runs thingsvision, or None when it is not installed anywhere we look."""
    env = dict(os.environ, OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    if (PEER / "thingsvision").is_dir():
        env["PYTHONPATH"] = os.pathsep.join([str(PEER), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        return env
    if importlib.util.find_spec("thingsvision") is not None:
        return env
    return None


def write_images(folder: Path) -> Path:
    """Five seeded images: smooth colour fields with noise, of sizes and modes that exercise the pipeline."""
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    shapes = [(260, 300, "RGB", "a.jpg"), (320, 240, "RGB", "b.png"), (231, 231, "L", "c.png"),
              (180, 400, "RGB", "d.jpg"), (300, 256, "RGBA", "e.png")]
    for h, w, mode, name in shapes:
        y, x = np.mgrid[0:h, 0:w] / max(h, w)
        base = np.stack([np.sin(6 * x + rng.uniform(0, 6)), np.cos(5 * y + rng.uniform(0, 6)), x * y], -1)
        pixels = np.clip(127 + 90 * base + rng.normal(0, 20, size=(h, w, 3)), 0, 255).astype(np.uint8)
        img = Image.fromarray(pixels).convert(mode)
        img.save(folder / name, quality=90) if name.endswith(".jpg") else img.save(folder / name)
    return folder


def seeded_weights(name: str, path: Path, seed: int = 0) -> Path:
    """torchvision's ``name`` at its own random initialisation under ``seed``, BatchNorm statistics and affine
    parameters drawn too (at their defaults eval-mode BatchNorm would be close to the identity), saved as a
    plain state dict."""
    import torchvision.models as tvm

    torch.manual_seed(seed)
    model = tvm.get_model(name, weights=None)
    gen = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
            m.weight.data.copy_(0.5 + torch.rand(n, generator=gen))
            m.bias.data.copy_(0.1 * torch.randn(n, generator=gen))
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The images, one weights file per model, and thingsvision's features of them (its own process)."""
    env = _peer_env()
    if env is None:
        pytest.skip("thingsvision 2.7.3 is not installed: run `make peer-thingsvision` (installs it into "
                    ".peers/thingsvision, never into .venv)")
    folder = tmp_path_factory.mktemp("thingsvision")
    images = write_images(folder / "imgs")
    weights = {name: seeded_weights(name, folder / f"{name}.pt") for name in MODULES}
    job = {"images": str(images), "batch_size": 3,
           "models": {name: {"weights": str(weights[name]), "modules": MODULES[name]} for name in MODULES}}
    (folder / "job.json").write_text(json.dumps(job))
    proc = subprocess.run([sys.executable, str(SCRIPT), str(folder / "job.json"), str(folder / "out.npz")],
                          env=env, cwd=folder, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(folder / "out.npz") as z:
        reference = {k: z[k] for k in z.files}
    return folder, images, weights, reference


def ventralkit_features(cli, name: str, weights: Path, images: Path, out: Path, *extra: str) -> dict:
    """``ventralkit features --model torchvision:NAME --ckpt_path WEIGHTS``: each module's N x D array, the
    file order and the manifest."""
    code, _, err = cli("features", "--model", f"torchvision:{name}", "--ckpt_path", weights, "--layers",
                       *MODULES[name], "--data_path", images, "-o", out, "--device", "cpu", "--batch_size", "2",
                       "--no_progress", *extra)
    assert code == 0, err
    files = [Path(p).name for p in (out / "images.txt").read_text().split()]
    feats = {m: np.load(out / f"{m}-t0.npy") for m in MODULES[name]}
    return {"files": files, "features": feats, "manifest": json.loads((out / "features.json").read_text())}


def test_reference_is_thingsvision_2_7_3(setup):
    assert str(setup[3]["version"]) == "2.7.3"


@pytest.mark.parametrize("layout", ["off", "auto"])
@pytest.mark.parametrize("name", sorted(MODULES))
def test_features_equal_thingsvision(cli, setup, name, layout):
    """``--channels_last off``: thingsvision's NCHW arithmetic, within 1e-5 absolute. The default (``auto``: NHWC
    weights and inputs on the CPU, engine/inference.py) sums the convolutions in another order, so float32
    rounding differs in proportion to the values: within 1e-5 of each layer's largest absolute value."""
    folder, images, weights, ref = setup
    ours = ventralkit_features(cli, name, weights[name], images, folder / f"vk_{name}_{layout}",
                               "--channels_last", layout)
    assert ours["files"] == list(ref[f"{name}/files"]) == ["a.jpg", "b.png", "c.png", "d.jpg", "e.png"]
    pre = ours["manifest"]["model_source"]["preprocessing"]
    assert (pre["image_size"], round(pre["image_size"] / pre["crop_fraction"])) == (224, 256)
    for module in MODULES[name]:
        theirs, mine = ref[f"{name}/{module}"], ours["features"][module]
        assert mine.shape == theirs.shape and mine.shape[0] == 5, (module, mine.shape, theirs.shape)
        assert np.abs(theirs).max() > 1e-2, f"{module}: thingsvision's features are all near zero"
        atol = TOL if layout == "off" else TOL * float(np.abs(theirs).max())
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=atol, err_msg=f"{name} {module} {layout}")


def test_a_different_preprocessing_is_noticed(cli, setup):
    """The control: the same model and weights with CORnet's square resize (no crop) instead of Resize +
    CenterCrop differ from thingsvision's features far beyond the tolerance, so the comparison above can fail."""
    folder, images, weights, ref = setup
    ours = ventralkit_features(cli, "alexnet", weights["alexnet"], images, folder / "vk_square",
                               "--transform", "square")
    diff = np.abs(ours["features"]["features.2"] - ref["alexnet/features.2"]).max()
    assert diff > 1000 * TOL
