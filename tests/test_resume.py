"""An interrupted run (SIGKILL during epoch 2) resumes to a state bit-identical to an uninterrupted one
(issue 4, checkpoints that lose nothing)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
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


def checkpoint_differences(a, b, path=""):
    """Every entry where two checkpoints differ, as ``/key/key/...`` paths: tensors (dtype, shape and every
    element), numbers, strings and the nested dicts, lists and tuples holding them (the generators' states
    are tuples of tensors and ints), keys present in one only included."""
    if isinstance(a, dict) and isinstance(b, dict):
        found = [f"{path}/{k}" for k in sorted(a.keys() ^ b.keys(), key=str)]
        for k in sorted(a.keys() & b.keys(), key=str):
            found += checkpoint_differences(a[k], b[k], f"{path}/{k}")
        return found
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if type(a) is not type(b) or len(a) != len(b):
            return [path]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in checkpoint_differences(x, y, f"{path}/{i}")]
    if torch.is_tensor(a) or torch.is_tensor(b):
        same = (torch.is_tensor(a) and torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape
                and torch.equal(a, b))
        return [] if same else [path]
    same = type(a) is type(b) and (a == b or (isinstance(a, float) and a != a and b != b))  # nan == nan here
    return [] if same else [path]


def _load(path):
    return torch.load(path, weights_only=False)


def _new_process_entropy(entropy: int) -> None:
    """Stand-in for starting a new process: its global generators begin somewhere else (the operating
    system's entropy), which a run must not depend on."""
    np.random.seed(entropy)
    random.seed(entropy)
    torch.manual_seed(entropy)


def test_resumed_run_and_straight_run_agree_in_every_checkpoint_entry(tmp_path):
    """Issue 22: --seed seeded only torch's generator, so numpy's and Python's started from each process's
    entropy: two runs with one seed saved different rng/numpy and rng/python, and a run resumed from epoch 1
    ended with a last.pt that differed from a straight run's. Every entry is compared here, generators
    included; only the entries naming the run folder may differ."""
    from ventralkit.engine.train import train

    common = dict(model="cornet_z", dataset="digits", image_size=16, batch_size=8, workers=0, epochs=2,
                  max_steps_per_epoch=2, log_every=1, progress=False, keep_epochs=-1, seed=7)
    _new_process_entropy(1)
    train(output_path=str(tmp_path / "straight"), **common)
    _new_process_entropy(2)
    train(output_path=str(tmp_path / "again"), **common)
    straight, again = tmp_path / "straight" / "checkpoints", tmp_path / "again" / "checkpoints"
    # the same seed: the same state after epoch 1, generators included
    assert checkpoint_differences(_load(straight / "epoch_01.pt"), _load(again / "epoch_01.pt")) == \
        ["/config/output_path"]
    _new_process_entropy(3)
    train(resume=str(again / "epoch_01.pt"), **common)  # writes again/checkpoints/last.pt anew
    a, b = _load(straight / "last.pt"), _load(again / "last.pt")
    assert a["finished"] and b["finished"] and a["global_step"] == b["global_step"] == 4
    assert checkpoint_differences(a, b) == ["/config/output_path", "/config/resume"]


def test_resume_inside_an_epoch_with_mixing_agrees_in_every_checkpoint_entry(tmp_path, monkeypatch):
    """A run stopped inside epoch 2 and resumed from its last.pt ends as the straight run does, every entry
    of last.pt compared. With CutMix/MixUp the main process draws from torch's global generator at every
    step, so the resume must not move that stream: creating the epoch's DataLoader iterator again on resume
    drew one more number from it (its base seed), which shifted every later mixing draw."""
    from ventralkit.engine.guard import NonFiniteGuard
    from ventralkit.engine.train import train

    common = dict(model="cornet_z", dataset="digits", image_size=16, batch_size=8, workers=0, epochs=2,
                  max_steps_per_epoch=3, log_every=1, progress=False, keep_epochs=0, seed=5, mixup_alpha=0.5,
                  cutmix_alpha=0.5, save_every_minutes=0)
    _new_process_entropy(1)
    train(output_path=str(tmp_path / "straight"), **common)

    real_step_ok = NonFiniteGuard.step_ok

    def interrupted(self, loss, global_step, *args):  # Ctrl-C during the 5th step (epoch 2, step 2)
        if global_step == 4:
            raise KeyboardInterrupt
        return real_step_ok(self, loss, global_step, *args)

    _new_process_entropy(2)
    monkeypatch.setattr(NonFiniteGuard, "step_ok", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(output_path=str(tmp_path / "stopped"), **common)
    monkeypatch.setattr(NonFiniteGuard, "step_ok", real_step_ok)
    last = tmp_path / "stopped" / "checkpoints" / "last.pt"
    assert (_load(last)["epoch"], _load(last)["step_in_epoch"]) == (1, 1)
    _new_process_entropy(3)
    train(resume=str(last), **common)
    a, b = _load(tmp_path / "straight" / "checkpoints" / "last.pt"), _load(last)
    assert b["finished"] and b["global_step"] == 6
    assert checkpoint_differences(a, b) == ["/config/output_path", "/config/resume"]


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
    # every other entry too: optimiser, schedule, meters, counters and every generator (torch, numpy,
    # Python), which two processes seeded alike must agree on; only where each run lives may differ
    assert checkpoint_differences(a, b) == ["/config/output_path", "/config/resume"]
    # the records written before the kill are kept as they were, the rest follow without gaps or repeats
    lines = (killed / "metrics.jsonl").read_text().splitlines()
    assert lines[:len(before)] == before
    steps = lambda run: [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps(killed) == steps(straight)
