"""An interrupted run (SIGKILL during epoch 2) resumes to a state bit-identical to an uninterrupted one
(issue 4, checkpoints that lose nothing)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import make_image_folder, records_through


def _train_cmd(data, out, *extra):
    return [sys.executable, "-m", "ventralkit.cli", "train", "--model", "Z", "--data_path", str(data),
            "--imsize", "32", "--epochs", "2", "--batch_size", "2", "--workers", "0", "--lr", "0.01",
            "--log_every", "1", "--save_every_minutes", "0", "--keep_epochs", "1", "--no_progress",
            "-o", str(out), *extra]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "VENTRALKIT_NO_PROGRESS": "1"}


def _last_train_step(path):
    if not path.exists():
        return 0
    steps = []
    for ln in path.read_text().splitlines():
        try:
            rec = json.loads(ln)
        except json.JSONDecodeError:
            continue
        steps.append(rec["step"])
    return max(steps, default=0)


@pytest.mark.slow
def test_sigkill_during_epoch_two_then_resume_is_bit_identical(tmp_path, cli, steps_run):
    data = make_image_folder(tmp_path / "data", classes=3, train_per_class=16, val_per_class=2)
    steps_per_epoch = 3 * 16 // 2
    total = 2 * steps_per_epoch

    straight = tmp_path / "straight"
    subprocess.run(_train_cmd(data, straight), check=True, env=_env(), capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(data, killed), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _last_train_step(killed / "metrics.jsonl") < steps_per_epoch + 3:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    ckpt = torch.load(killed / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["epoch"] == 1 and 0 < ckpt["step_in_epoch"] < steps_per_epoch, "not interrupted inside epoch 2"
    saved_step = ckpt["global_step"]
    assert saved_step == steps_per_epoch + ckpt["step_in_epoch"]
    before = records_through(killed, saved_step)
    assert len(before) >= saved_step  # log_every 1: a train record per step, plus the validation

    # the resume runs in this process, so that the steps it takes can be counted
    code, out, err = cli("train", "--resume", killed / "checkpoints" / "last.pt", "--no_progress")
    assert code == 0, err
    assert f"step {ckpt['step_in_epoch'] + 1} of {steps_per_epoch} (global step {saved_step + 1})" in out
    # it trains exactly the steps the killed run had not saved, continuing where it stopped
    assert [s[0] for s in steps_run] == list(range(saved_step, total))
    assert steps_run[0][1:] == (1, ckpt["step_in_epoch"])

    a = torch.load(straight / "checkpoints" / "last.pt", weights_only=False)
    b = torch.load(killed / "checkpoints" / "last.pt", weights_only=False)
    assert a["finished"] and b["finished"]
    assert a["global_step"] == b["global_step"] == total
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    # the records written before the kill are kept as they were, the rest follow without gaps or repeats
    lines = (killed / "metrics.jsonl").read_text().splitlines()
    assert lines[:len(before)] == before
    steps = lambda run: [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps(killed) == steps(straight)
