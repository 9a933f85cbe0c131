"""Preemption-safe training (issue 12 item 4): a scheduler's SIGTERM saves last.pt and says how to resume,
--resume auto reruns the same command, a failed checkpoint write keeps the previous one."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import ventralkit as vk
from ventralkit.errors import CheckpointError


def _train_cmd(out, *extra):
    return [sys.executable, "-m", "ventralkit.cli", "train", "--dataset", "digits", "--epochs", "2",
            "--max_steps_per_epoch", "30", "--batch_size", "8", "--workers", "0", "--log_every", "2",
            "--save_every_minutes", "100", "--no_progress", "-o", str(out), *extra]


@pytest.mark.slow
def test_sigterm_saves_and_resume_auto_finishes(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_train_cmd(out, "--resume", "auto"), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "SIGTERM" in stderr and "--resume" in stderr and len(stderr.strip().splitlines()) == 1
    last = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert 0 < last["global_step"] < 60 and not last["finished"]
    assert not (out / ".lock").exists()
    # a requeued job reruns the very same command
    done = subprocess.run(_train_cmd(out, "--resume", "auto"), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming from" in done.stdout and "done: 2 epochs" in done.stdout
    final = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert final["finished"] and final["global_step"] == 60
    steps = [json.loads(ln)["step"] for ln in metrics.read_text().splitlines() if '"train"' in ln]
    assert steps == sorted(set(steps)) and steps[-1] == 60  # no record written twice
    again = subprocess.run(_train_cmd(out, "--resume", "auto"), env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "finished run" in again.stdout and "done:" not in again.stdout


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    import ventralkit.engine.checkpoint as ck

    real, calls = ck.torch.save, {"n": 0}

    def disk_full(obj, fh, *a, **k):
        calls["n"] += 1
        if calls["n"] >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, fh, *a, **k)

    monkeypatch.setattr(ck.torch, "save", disk_full)
    out = tmp_path / "run"
    cfg = vk.TrainConfig(model="cornet_z", dataset="digits", epochs=1, max_steps_per_epoch=4, batch_size=8,
                         workers=0, save_every_minutes=0, progress=False, output_path=str(out))
    with pytest.raises(CheckpointError, match="No space left on device.*previous checkpoint is intact") as err:
        vk.train(cfg)
    assert "\n" not in str(err.value)
    kept = torch.load(out / "checkpoints" / "last.pt", weights_only=True)  # still whole and loadable
    assert kept["global_step"] in (1, 2) and not list((out / "checkpoints").glob(".*.partial"))


@pytest.mark.slow
def test_sigterm_to_the_whole_job_with_data_workers_saves_without_a_traceback(tmp_path):
    """``timeout``, ``scancel`` and preemption signal every process of the job, the data-loading workers too:
    the run still saves last.pt and says how to resume, with no traceback and no process left."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = _train_cmd(out)
    cmd[cmd.index("--workers") + 1] = "2"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 2):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr and "killed by signal" not in stderr, stderr
    assert "SIGTERM" in stderr and "--resume" in stderr and len(stderr.strip().splitlines()) == 1, stderr
    last = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert 0 < last["global_step"] < 60 and not last["finished"]
    time.sleep(0.5)
    left = [p for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == proc.pid]
    assert not left, f"processes left in the job's group: {left}"


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
