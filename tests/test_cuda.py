"""Every path on CUDA (issue 15): ``pytest -m cuda tests/test_cuda.py``, run by ``make gpu-check``.

Skipped as a whole where there is no CUDA device (CI). Images are tiny so the file runs in a few
minutes on one GPU. fp32 comparisons with the CPU run with TF32 off (TF32 matmuls/convolutions keep
10 mantissa bits, so a 1e-3 agreement would not hold with them); bf16 runs are checked for finiteness
and, against fp32, to bf16's precision.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.cuda
if not torch.cuda.is_available():
    pytest.skip("no CUDA device (run with `make gpu-check` on a GPU machine)", allow_module_level=True)

from conftest import make_image_folder  # noqa: E402

import ventralkit as vk  # noqa: E402
from ventralkit.models.registry import list_models, model_info  # noqa: E402

CUDA = torch.device("cuda")

#: (model, kwargs): every registered model (each V1 component type, each head), plus CORnet-S100's
#: feedback modes with two passes
MODELS = [(name, {}) for name in list_models()] + [
    ("cornet_s100", {"outer_times": 2, "feedback": "replace"}),
    ("cornet_s100", {"outer_times": 2, "feedback": "additive"}),
]
#: torch.compile costs tens of seconds a model, so one per family of layers: CORnet-S's blocks are inside
#: S100; the suite compiles cornet_z, cornet_s, cornet_s100, v1_resnet50_composite_a and phinet again
COMPILED = [("cornet_rt", {}), ("cornet_s100", {"outer_times": 2, "feedback": "additive"}),
            ("v1_resnet50_composite_a", {}), ("resnet9_adaptive", {})]


def _id(p):
    name, kw = p
    return name + "".join(f"-{k}={v}" for k, v in kw.items())


def _size(name: str) -> int:
    """Tiny inputs; the V1-ResNets take only their 64 px."""
    return 64 if model_info(name).family == "v1_resnet" else 32


def _logits(out):
    return out["logits"] if isinstance(out, dict) else out


def _loss(model, out, target):
    head_loss = getattr(model, "head_loss", None)
    return head_loss(out, target) if head_loss is not None else F.cross_entropy(_logits(out).float(), target)


@pytest.fixture
def no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _batch(name, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, _size(name), _size(name), generator=g)
    y = torch.randint(0, model_info(name).num_classes, (n,), generator=g)
    return x, y


def _fwd_bwd_bf16(model, x, y):
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(x)
        loss = _loss(model, out, y)
    loss.backward()
    return _logits(out).float(), loss


@pytest.mark.parametrize("spec", MODELS, ids=_id)
def test_forward_backward_bf16_channels_last(spec):
    name, kw = spec
    model = vk.create_model(name, **kw).to(CUDA, memory_format=torch.channels_last).train()
    x, y = _batch(name)
    logits, loss = _fwd_bwd_bf16(model, x.to(CUDA).contiguous(memory_format=torch.channels_last), y.to(CUDA))
    assert logits.shape == (4, model.info.num_classes) and torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(g.device.type == "cuda" and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("spec", COMPILED, ids=_id)
def test_compiled_matches_eager_bf16_channels_last(spec):
    name, kw = spec
    torch.manual_seed(0)
    model = vk.create_model(name, **kw).to(CUDA, memory_format=torch.channels_last).eval()
    x, y = _batch(name)
    x, y = x.to(CUDA).contiguous(memory_format=torch.channels_last), y.to(CUDA)
    eager, _ = _fwd_bwd_bf16(model, x, y)
    model.zero_grad(set_to_none=True)
    compiled, loss = _fwd_bwd_bf16(torch.compile(model), x, y)
    assert torch.isfinite(loss)
    scale = eager.abs().max().clamp_min(1e-3)
    assert ((compiled - eager).abs().max() / scale) < 5e-2  # bf16 keeps 8 bits: kernels may round differently


@pytest.mark.parametrize("spec", MODELS, ids=_id)
def test_fp32_cuda_logits_equal_cpu(spec, no_tf32):
    name, kw = spec
    torch.manual_seed(0)
    model = vk.create_model(name, **kw).eval()
    x, _ = _batch(name)
    with torch.no_grad():
        cpu = _logits(model(x))
        gpu = _logits(model.to(CUDA)(x.to(CUDA))).cpu()
    scale = cpu.abs().max().clamp_min(1e-3)
    assert ((gpu - cpu).abs().max() / scale) < 1e-3


# ---- the engine ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("cuda") / "data", classes=3, train_per_class=8,
                             val_per_class=3, size=40)


def _train(folder, out, **kw):
    from ventralkit.engine.train import train

    opts = dict(model="cornet_z", data_path=str(folder), image_size=32, batch_size=4, workers=2, epochs=2,
                lr=0.01, progress=False, keep_epochs=-1, device="cuda", amp="bf16", channels_last=True,
                compile=True, log_every=1, output_path=str(out))
    return train(**{**opts, **kw})


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_train_resume_evaluate(folder, tmp_path, backend, no_tf32):
    """bf16 + channels_last + compile, pinned memory and workers; resume from the epoch-1 snapshot; the
    trained weights evaluate alike on CUDA and on the CPU."""
    from torch.utils.data import DataLoader

    from ventralkit.data.folders import ImageFolderDataset
    from ventralkit.data.transforms import eval_transform
    from ventralkit.engine.evaluate import evaluate

    opts = dict(data_backend=backend, compile=backend == "cpu")  # one backend compiles: compiling costs ~30 s
    full = _train(folder, tmp_path / "full", **opts)
    assert full.last_val is not None and np.isfinite(full.last_val["loss"])
    resumed = _train(folder, tmp_path / "resumed", resume=str(tmp_path / "full/checkpoints/epoch_01.pt"), **opts)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    # the same batches, crops and flips; CUDA kernels (atomics in backward) need not be bit-reproducible
    for k in a:
        if a[k].is_floating_point():
            assert torch.allclose(a[k].float(), b[k].float(), rtol=1e-2, atol=1e-3), k
    ckpt = torch.load(tmp_path / "full/checkpoints/last.pt", map_location="cpu", weights_only=True)
    assert "cuda" in ckpt["rng"]  # the CUDA generators are saved for the resume

    val = ImageFolderDataset(folder / "val", eval_transform(model_info("cornet_z"), 32))
    loader = DataLoader(val, batch_size=4, num_workers=1, pin_memory=True)
    model = full.model.float()
    on_gpu = evaluate(model.to(CUDA), loader, device=CUDA, progress=False)
    on_cpu = evaluate(model.cpu(), DataLoader(val, batch_size=4), device="cpu", progress=False)
    assert on_gpu.n == on_cpu.n == 9 and np.array_equal(on_gpu.confusion, on_cpu.confusion)
    assert on_gpu.loss == pytest.approx(on_cpu.loss, rel=1e-4, abs=1e-5)


def test_device_decode_on_cuda_matches_cpu(folder):
    from ventralkit.data.device_decode import RawCropDataset
    from ventralkit.data.folders import ImageFolderDataset
    from ventralkit.data.sampling import SeededDataset

    info = model_info("cornet_z")
    raw_set = RawCropDataset(ImageFolderDataset(folder / "train"), 32, info.mean, info.std)
    batch, _ = raw_set.collate(SeededDataset(raw_set, 1).__getitems__([(0, i) for i in range(12)]))
    gpu = batch.pin_memory().to(CUDA, non_blocking=True)
    assert gpu.device.type == "cuda"
    cpu = batch.to("cpu")
    # nvJPEG and libjpeg-turbo may round the IDCT / upsampling differently by a few levels
    diff = ((gpu.cpu() - cpu) * torch.tensor(info.std).view(1, 3, 1, 1)).abs()
    assert diff.mean() < 2 / 255 and diff.max() < 24 / 255


# ---- analyses -------------------------------------------------------------------------------------------
def test_features_cuda_equal_cpu(folder, no_tf32):
    from ventralkit.analysis.features import extract_features

    model = vk.create_model("cornet_s").eval()
    kw = dict(layers=["V4.output", "decoder.avgpool"], image_size=32, batch_size=4, progress=False)
    cpu = extract_features(model, folder / "val", device="cpu", **kw)
    gpu = extract_features(model, folder / "val", device="cuda", **kw)
    assert cpu.keys() == gpu.keys() and len(cpu) > 2  # V4 fires four times
    for k in cpu:
        scale = max(float(np.abs(cpu[k]).max()), 1e-3)
        assert np.abs(gpu[k] - cpu[k]).max() / scale < 1e-3, k


def test_robustness_cuda_equal_cpu(tmp_path, folder, no_tf32):
    from ventralkit.cli import main

    val = tmp_path / "val"
    shutil.copytree(folder / "val", val)
    assert main(["corrupt", str(val), str(tmp_path / "c"), "-j", "0", "--quiet", "--corruptions", "fog",
                 "contrast", "--severities", "1", "5"]) == 0
    model = vk.create_model("cornet_z", num_classes=3).eval()
    kw = dict(clean_path=val, batch_size=4, workers=0, image_size=32, corruptions=["fog", "contrast"],
              severities=[1, 5], progress=False)
    cpu = vk.evaluate_robustness(model, tmp_path / "c", device="cpu", **kw)
    gpu = vk.evaluate_robustness(model, tmp_path / "c", device="cuda", **kw)
    assert cpu.accuracies == gpu.accuracies and cpu.clean_error == gpu.clean_error


def test_v1_probe_cuda_equal_cpu(no_tf32):
    from ventralkit.analysis.v1_probe import probe_v1
    from ventralkit.analysis.v1_probe.stimuli import StimulusConfig

    stim = StimulusConfig.quick(visual_degrees=8.0)
    kw = dict(image_size=64, quick=True, stimuli=stim, n_boot=20, figures=False)
    model = vk.create_model("cornet_z").eval()  # one set of random weights for both
    cpu = probe_v1(model, device="cpu", **kw)
    gpu = probe_v1(model, device="cuda", **kw)
    assert cpu.units.keys() == gpu.units.keys()
    for k, v in cpu.units.items():
        v, w = np.asarray(v), np.asarray(gpu.units[k])
        if v.dtype.kind == "f":
            np.testing.assert_allclose(w, v, rtol=1e-3, atol=1e-5, equal_nan=True, err_msg=k)
        else:
            assert np.array_equal(v, w), k


# ---- torchrun ------------------------------------------------------------------------------------------
def test_torchrun_nccl(folder, tmp_path):
    """``torchrun`` with one process per GPU (two where there are two, so NCCL carries the all-reduce;
    with one process ventralkit starts no process group)."""
    nproc = min(2, torch.cuda.device_count())
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    cmd = [torchrun, "--standalone", "--nproc_per_node", str(nproc), "-m", "ventralkit.cli", "train",
           "--model", "Z", "--data_path", str(folder), "--imsize", "32", "--epochs", "1", "--batch_size", "4",
           "--workers", "1", "--device", "cuda", "--amp", "bf16", "--channels_last", "--no_progress",
           "-o", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NCCL_DEBUG": "INFO" if nproc > 1 else "WARN"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = json.loads((tmp_path / "ddp" / "config.json").read_text())
    assert cfg["world_size"] == nproc and (tmp_path / "ddp/checkpoints/last.pt").is_file()
    if nproc > 1:
        assert "NCCL" in proc.stdout + proc.stderr
