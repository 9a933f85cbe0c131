"""What a user reads (issue 21 sections 4 and 5): a file that is no checkpoint, options that cannot be numbers,
resuming a finished run, and what a training run prints while it runs (once per signal, one line per epoch, plain
progress lines in a log file, a short config, counts in English)."""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

import ventralkit as vk
from conftest import make_image_folder
from ventralkit.errors import CheckpointError, TrainingDiverged

DIGITS = ["--dataset", "digits", "--batch_size", "8", "--workers", "0", "--max_steps_per_epoch", "2"]


def _one_line(code, stderr, *words):
    assert code == 2, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    for w in words:
        assert w in stderr, stderr


def _not_checkpoints(folder):
    """Files people pass by mistake: text, an image, random bytes, a plain (non-torch) pickle, a NumPy archive."""
    from PIL import Image

    folder.mkdir()
    (folder / "notes.txt").write_text("epoch 3: top-1 0.61\n")
    Image.new("RGB", (8, 8), (200, 30, 30)).save(folder / "image.png")
    (folder / "random.bin").write_bytes(bytes(random.Random(0).randrange(256) for _ in range(4096)))
    (folder / "starts_like_pickle.bin").write_bytes(b"\x80" + bytes(random.Random(1).randrange(256) for _ in range(500)))
    (folder / "plain.pkl").write_bytes(pickle.dumps({"model": [1, 2, 3]}))
    import numpy as np

    np.savez(folder / "arrays.npz", a=np.zeros(3))
    return sorted(p for p in folder.iterdir())


def test_a_file_that_is_no_checkpoint_says_so_in_one_line(cli, tmp_path):
    """Before: a text file gave ``KeyError: 101``; an image or random bytes were said to hold Python objects and the
    advice was --trust_checkpoint, i.e. to turn off the safety check for a file that is no checkpoint at all."""
    data = make_image_folder(tmp_path / "data", classes=2, train_per_class=2, val_per_class=1)
    flat = data / "val" / "class_0"
    for path in _not_checkpoints(tmp_path / "files"):
        runs = {
            "test": ["test", "--model", "Z", "--ckpt_path", path, "--data_path", flat, "--imsize", "32"],
            "features": ["features", "--model", "Z", "--ckpt_path", path, "--data_path", flat, "-o", tmp_path / "f"],
            "train --ckpt_path": ["train", "--model", "Z", "--ckpt_path", path, "--data_path", data,
                                  "-o", tmp_path / "t", "--workers", "0", "--no_progress"],
            "train --resume": ["train", "--resume", path],
        }
        for what, argv in runs.items():
            code, _, stderr = cli(*argv)
            _one_line(code, stderr, path.name, "not a PyTorch checkpoint")
            assert "trust_checkpoint" not in stderr, (what, stderr)
        with pytest.raises(CheckpointError, match="not a PyTorch checkpoint") as err:
            vk.load(path)
        assert "trust" not in str(err.value)
    assert not (tmp_path / "t").exists() and not (tmp_path / "f").exists()


def test_a_real_pickle_payload_still_asks_for_trust(tmp_path):
    """The old, non-zip format too: the check for "is this a checkpoint" must not hide the safety refusal."""
    import argparse

    sd = vk.create_model("cornet_z", num_classes=3).state_dict()
    path = tmp_path / "legacy.pth"
    torch.save({"state_dict": sd, "args": argparse.Namespace(lr=0.1)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="argparse.Namespace.*--trust_checkpoint"):
        vk.load(path)
    with pytest.warns(UserWarning, match="full unpickling"):
        assert vk.load(path, trust=True).model.info.num_classes == 3
    plain = tmp_path / "plain_legacy.pth"
    torch.save(sd, plain, _use_new_zipfile_serialization=False)
    assert vk.load(plain).model.info.num_classes == 3


def test_a_folder_as_checkpoint_says_it_is_a_folder_and_the_advice_works(cli, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save(vk.create_model("cornet_z", num_classes=4).state_dict(), run / "checkpoints" / "last.pt")
    with pytest.raises(CheckpointError, match="is a folder") as err:
        vk.load(run)
    advised = str(err.value).rsplit("e.g. ", 1)[1]
    assert advised == str(run / "checkpoints" / "last.pt")
    assert vk.load(advised).model.info.num_classes == 4  # following the advice works
    empty = tmp_path / "empty"
    empty.mkdir()
    flat = make_image_folder(tmp_path / "data", classes=2, train_per_class=1, val_per_class=1) / "val" / "class_0"
    for argv in (["test", "--model", "Z", "--ckpt_path", empty, "--data_path", flat], ["train", "--resume", empty]):
        code, _, stderr = cli(*argv)
        _one_line(code, stderr, str(empty), "is a folder")
        assert "does not exist" not in stderr


@pytest.mark.parametrize("argv", [["--lr", "nan"], ["--lr", "inf"], ["--momentum", "nan"], ["--val_every", "inf"],
                                  ["--milestones", "1", "nan"], ["--save_every_minutes", "nan"],
                                  ["--weight_decay", "-1"], ["--momentum", "-0.5"], ["--gamma", "0"]])
def test_numbers_that_make_no_sense_are_refused_before_anything_runs(cli, tmp_path, argv):
    """Before: --lr nan trained and then "diverged"; --val_every inf was an OverflowError; a negative
    --momentum or --weight_decay a ValueError traceback from the optimizer."""
    out = tmp_path / "run"
    code, stdout, stderr = cli("train", *DIGITS, "--epochs", "1", "--no_progress", "-o", out, *argv)
    _one_line(code, stderr, argv[0])
    assert "config:" not in stdout and not out.exists()


def test_nan_in_a_toml_file_is_refused(cli, tmp_path):
    toml = tmp_path / "r.toml"
    toml.write_text("lr = nan\n")
    code, _, stderr = cli("train", "--config", toml, *DIGITS, "--no_progress", "-o", tmp_path / "run")
    _one_line(code, stderr, "--lr", "finite")


def _diverge_at(monkeypatch, call: int):
    """Make the loss of the ``call``-th training step NaN (validation is not counted)."""
    calls = {"n": 0}
    real = torch.nn.CrossEntropyLoss.forward

    def flaky(self, logits, target):
        if torch.is_grad_enabled():
            calls["n"] += 1
        loss = real(self, logits, target)
        return loss * float("nan") if calls["n"] == call else loss

    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", flaky)


def _config(out, **kw):
    return vk.TrainConfig(model="cornet_z", dataset="digits", epochs=1, batch_size=8, max_steps_per_epoch=4,
                          workers=0, progress=False, output_path=str(out), **kw)


def test_divergence_names_last_pt_only_when_there_is_one(tmp_path, monkeypatch):
    _diverge_at(monkeypatch, 1)  # before any checkpoint was written
    with pytest.raises(TrainingDiverged) as err:
        vk.train(_config(tmp_path / "early", save_every_minutes=100))
    assert "last.pt" not in str(err.value) and "no checkpoint was saved" in str(err.value)
    _diverge_at(monkeypatch, 3)  # last.pt is saved after every step (save_every_minutes 0)
    with pytest.raises(TrainingDiverged) as err:
        vk.train(_config(tmp_path / "late", save_every_minutes=0))
    last = tmp_path / "late" / "checkpoints" / "last.pt"
    assert str(last) in str(err.value) and last.is_file()
    assert torch.load(last, weights_only=True)["global_step"] == 2  # the last good step, as the message says


def test_resume_auto_with_more_epochs_extends_a_finished_run(cli, tmp_path):
    """Before: "finished run ...; nothing to do" was printed, and then epoch 2 was trained anyway."""
    out = tmp_path / "run"
    cmd = ["train", *DIGITS, "--no_progress", "--resume", "auto", "-o", out]
    code, first, stderr = cli(*cmd, "--epochs", "1")
    assert code == 0, stderr
    code, stdout, stderr = cli(*cmd, "--epochs", "2")
    assert code == 0, stderr
    assert "extending the finished run" in stdout and "nothing to do" not in stdout and "done: 2 epochs" in stdout
    last = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert last["epoch"] == 2 and last["global_step"] == 4 and last["finished"]
    code, stdout, stderr = cli(*cmd, "--epochs", "2")  # the requeued job again: now there is nothing to do
    assert code == 0, stderr
    assert "nothing to do" in stdout and "done:" not in stdout and "extending" not in stdout
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["global_step"] == 4
    rows = (out / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
    assert "done: 1 epoch," in first and "1 epoch snapshot," in first  # not "1 epochs", "up to 1 epoch snapshots"


def test_a_run_prints_a_short_config_one_line_per_epoch_and_counts_in_english(cli, tmp_path):
    out = tmp_path / "run"
    code, stdout, stderr = cli("train", *DIGITS, "--epochs", "2", "--lr", "0.05", "--keep_epochs", "0",
                               "--no_progress", "-o", out)
    assert code == 0, stderr
    lines = stdout.splitlines()
    after = lines[lines.index("config:") + 1:]
    config = after[:next(i for i, ln in enumerate(after) if not ln.startswith("  "))]
    shown = {ln.split()[0]: ln for ln in config if " = " in ln}
    assert "(flag)" in shown["lr"] and "0.05" in shown["lr"] and "(dataset)" in shown["image_size"]
    assert {"model", "dataset", "output_path"} <= set(shown)  # the essentials, even at their defaults
    assert "momentum" not in shown and "nesterov" not in shown and len(config) < 20  # defaults stay in config.json
    assert str(out / "config.json") in config[-1]
    saved = json.loads((out / "config.json").read_text())
    assert saved["momentum"] == 0.9 and saved["nesterov"] is False  # ... where every option is
    assert "no epoch snapshots" in stdout and "0 epoch snapshots" not in stdout
    epochs = [ln for ln in lines if ln.startswith("epoch ")]
    assert [ln.split(":")[0] for ln in epochs] == ["epoch 1/2", "epoch 2/2"]
    rows = [r.split(",") for r in (out / "metrics.csv").read_text().splitlines()]
    head = rows[0]
    for line, row in zip(epochs, rows[1:]):  # the line says what metrics.csv records
        assert f"train loss {float(row[head.index('train_loss')]):.4f}" in line
        assert f"val loss {float(row[head.index('val_loss')]):.4f} top-1 {float(row[head.index('val_top1')]):.4f}" in line
    assert "done: 2 epochs," in stdout


def test_progress_written_to_a_file_is_plain_lines(cli, tmp_path, monkeypatch):
    """Before: tqdm's carriage returns and, with validation nested in training, cursor-up codes (ESC[A)."""
    from ventralkit.engine.progress import PlainProgress

    monkeypatch.delenv("VENTRALKIT_NO_PROGRESS", raising=False)
    monkeypatch.setattr(PlainProgress, "interval", 0.0)  # a line at every update, so every bar shows
    code, _, stderr = cli("train", *DIGITS, "--epochs", "1", "-o", tmp_path / "run")  # captured stderr: no tty
    assert code == 0, stderr
    assert "\r" not in stderr and "\x1b" not in stderr
    assert "train: 2/2 step (100%)" in stderr and "val: " in stderr


def test_progress_in_a_terminal_is_still_a_bar(monkeypatch):
    from tqdm.auto import tqdm

    from ventralkit.engine import progress

    monkeypatch.delenv("VENTRALKIT_NO_PROGRESS", raising=False)
    monkeypatch.setattr(progress, "is_terminal", lambda stream: True)
    bar = progress.progress_bar(range(3), desc="x")
    assert isinstance(bar, tqdm)
    bar.close()
    monkeypatch.setattr(progress, "is_terminal", lambda stream: False)
    assert isinstance(progress.progress_bar(range(3), desc="x"), progress.PlainProgress)


def test_ctrl_c_is_reported_once_not_by_every_data_worker(tmp_path):
    """Ctrl-C reaches the whole process group; before, each of the 2 DataLoader workers printed the line too."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "ventralkit.cli", "train", "--dataset", "digits", "--epochs", "1",
           "--batch_size", "8", "--workers", "2", "--log_every", "1", "--save_every_minutes", "100",
           "--no_progress", "-o", str(out)]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        metrics = out / "metrics.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (metrics.is_file() and metrics.read_text().count("\n") >= 2):
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert stdout.count("SIGINT received") == 1, stdout
    assert "--resume" in stderr
