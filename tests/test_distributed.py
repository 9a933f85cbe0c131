"""Two processes with DistributedDataParallel (gloo, CPU) via torchrun: rank-0 records and checkpoints,
weights identical across ranks after training (issue 4, multi-GPU via torchrun)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import make_image_folder


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tmp_path):
    # 3 validation images over 2 ranks: uneven shards (2 + 1), which padding would have turned into 4
    data = make_image_folder(tmp_path / "data", classes=3, train_per_class=4, val_per_class=1)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "ventralkit.cli", "train", "--model", "Z", "--dataset", "folder", "--data_path", str(data),
           "--imsize", "32", "--epochs", "2", "--batch_size", "2", "--workers", "0", "--lr", "0.01",
           "--device", "cpu", "--log_every", "1", "--no_progress", "-o", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VENTRALKIT_NO_PROGRESS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["world_size"] == 2
    recs = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in recs if r["phase"] == "train"]
    # 12 images over 2 ranks at batch 2: 3 steps per epoch, logged once per step by rank 0 only
    assert train_steps == [1, 2, 3, 4, 5, 6]
    val = [r for r in recs if r["phase"] == "val"]
    assert len(val) == 2 and all(0 <= r["top1"] <= 1 for r in val)
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["finished"] and ckpt["global_step"] == 6
    assert not any(k.startswith("module.") for k in ckpt["model"])
    # the sharded validation equals a single-process evaluation of the final weights: each image once
    from torch.utils.data import DataLoader

    import ventralkit as vk
    from ventralkit.data.folders import ImageFolderDataset
    from ventralkit.data.transforms import eval_transform
    from ventralkit.engine.evaluate import evaluate

    model = vk.create_model("cornet_z", num_classes=3, checkpoint=str(out / "checkpoints" / "last.pt"))
    ds = ImageFolderDataset(data / "val", eval_transform(model.info, 32))
    ref = evaluate(model, DataLoader(ds, batch_size=2), device="cpu", progress=False)
    assert ref.n == 3
    assert val[-1]["top1"] == pytest.approx(ref.top1) and val[-1]["loss"] == pytest.approx(ref.loss, rel=1e-5)


@pytest.mark.slow
def test_every_registered_model_trains_under_ddp(tmp_path):
    """Issue 12 item 5: two DDP steps of each registered model (cornet_s100 at outer_times=1, whose V4_to_V1
    gets no gradient, included); a BatchNorm model's sharded validation equals a single-process one."""
    import ventralkit as vk

    data = make_image_folder(tmp_path / "data", classes=2, train_per_class=4, val_per_class=2, size=64)
    out = tmp_path / "runs"
    script = os.path.join(os.path.dirname(__file__), "scripts", "ddp_every_model.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29523",
           script, str(data), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VENTRALKIT_NO_PROGRESS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = json.loads((out / "done.json").read_text())
    assert [m for m in vk.list_models() if not done.get(m)] == []
    ddp, single = done["cornet_s_val"]["ddp"], done["cornet_s_val"]["single"]
    assert ddp[0] == pytest.approx(single[0]) and ddp[1] == pytest.approx(single[1], rel=1e-5)


@pytest.mark.slow
def test_sync_bn_on_the_cpu_is_one_line(tmp_path):
    """--sync_bn: PyTorch's SyncBatchNorm is GPU-only, so under torchrun on the CPU it is refused in one line
    before the run folder is made (on CUDA it converts the BatchNorms to SyncBatchNorm)."""
    data = make_image_folder(tmp_path / "data", classes=2, train_per_class=4, val_per_class=1)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29529",
           "-m", "ventralkit.cli", "train", "--model", "S", "--sync_bn", "--data_path", str(data), "--imsize", "32",
           "--epochs", "1", "--batch_size", "2", "--max_steps_per_epoch", "2", "--workers", "0", "--lr", "0.01",
           "--device", "cpu", "--no_progress", "-o", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VENTRALKIT_NO_PROGRESS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "ventralkit train: error: --sync_bn needs CUDA" in proc.stderr
    assert not out.exists()
