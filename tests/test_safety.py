"""Runs you can trust at real scale (issue 12): safe checkpoint loading, the layouts the seed systems wrote,
divergence guard, dataset defaults, run-folder ownership, one loader, user errors in one line."""

from __future__ import annotations

import argparse
import json
import os
import sys

import pytest
import torch

import ventralkit as vk
from conftest import make_image_folder
from ventralkit.errors import CheckpointError

FAST = ["--imsize", "32", "--batch_size", "4", "--workers", "0", "--no_progress"]


class _Payload:
    """A pickle that runs a shell command when unpickled: what a malicious .pth would hold."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def payload(tmp_path):
    """A CORnet-Z-shaped checkpoint whose pickle also holds an os.system call, and the file it would create."""
    marker = tmp_path / "PWNED"
    sd = vk.create_model("cornet_z", num_classes=3).state_dict()
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": sd, "extra": _Payload(marker)}, path)
    return path, marker


def _one_line(code, stderr, *words):
    assert code == 2, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    for w in words:
        assert w in stderr, stderr


def test_payload_never_runs_in_any_command(cli, payload, image_folder, tmp_path):
    path, marker = payload
    flat = image_folder / "train" / "class_0"
    runs = {
        "test": ["test", "--model", "Z", "--ckpt_path", path, "--data_path", flat, "--imsize", "32"],
        "features": ["features", "--model", "Z", "--ckpt_path", path, "--data_path", flat, "-o", tmp_path / "f"],
        "train --ckpt_path": ["train", "--model", "Z", "--ckpt_path", path, "--data_path", image_folder,
                              "-o", tmp_path / "t", *FAST],
        "train --resume": ["train", "--resume", path, "-o", tmp_path / "r"],
        "v1-probe": ["v1-probe", "--model", "Z", "--ckpt_path", path, "--quick", "-o", tmp_path / "v"],
        "robustness": ["robustness", "--model", "Z", "--ckpt_path", path, "--data_path", tmp_path / "c",
                       "-o", tmp_path / "rb"],
    }
    (tmp_path / "c" / "fog").mkdir(parents=True)
    os.symlink(image_folder / "val", tmp_path / "c" / "fog" / "1")  # a valid -C tree, so the file is opened
    for what, argv in runs.items():
        code, _, stderr = cli(*argv)
        _one_line(code, stderr, "--trust_checkpoint")
        assert not marker.exists(), f"{what} ran the payload"
    with pytest.raises(CheckpointError, match="trust=True"):
        vk.create_model("cornet_z", num_classes=3, checkpoint=str(path))
    with pytest.raises(CheckpointError, match="posix.system|os.system"):
        vk.load(path)
    assert not marker.exists()


def test_trusted_file_loads_with_a_warning(tmp_path):
    """An argparse.Namespace in a checkpoint (common in lab code) needs full unpickling: opt-in only."""
    sd = vk.create_model("cornet_z", num_classes=3).state_dict()
    path = tmp_path / "ns.pth"
    torch.save({"state_dict": sd, "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointError, match="argparse.Namespace"):
        vk.create_model("cornet_z", checkpoint=str(path))
    with pytest.warns(UserWarning, match="full unpickling"):
        model = vk.create_model("cornet_z", checkpoint=str(path), trust=True)
    assert torch.equal(model.state_dict()["decoder.linear.weight"], sd["decoder.linear.weight"])


def test_no_file_grants_the_trust_permission(cli, payload, image_folder, tmp_path):
    """--trust_checkpoint holds for the command that gives it: a run made with it stores it in config.json and in
    last.pt, but repeating (--config) or resuming (--resume) that run must not trust its initial checkpoint again,
    which may since have been swapped for a payload; a TOML file cannot grant it either."""
    evil, marker = payload
    initial = tmp_path / "ns.pth"  # needs full unpickling, harmless
    torch.save({"state_dict": torch.load(evil, weights_only=False)["state_dict"], "args": argparse.Namespace(lr=0.1)},
               initial)
    marker.unlink(missing_ok=True)  # loading the payload above to reuse its weights ran it once, here in the test
    run = tmp_path / "run"
    with pytest.warns(UserWarning, match="full unpickling"):
        code, _, stderr = cli("train", "--model", "Z", "--num_classes", "3", "--ckpt_path", initial, "--trust_checkpoint",
                              "--data_path", image_folder, "--epochs", "1", "--max_steps_per_epoch", "1", "-o", run,
                              *FAST)
    assert code == 0, stderr
    assert json.loads((run / "config.json").read_text())["trust_checkpoint"] is True
    os.replace(evil, initial)  # the run's initial checkpoint is now a payload
    for argv in (["--config", run, "-o", tmp_path / "again", "--data_path", image_folder, *FAST],
                 ["--resume", run / "checkpoints" / "last.pt", "--epochs", "2"]):
        code, _, stderr = cli("train", *argv)
        _one_line(code, stderr, "--trust_checkpoint")
        assert not marker.exists(), argv
    toml = tmp_path / "cfg.toml"
    toml.write_text(f'model = "Z"\ncheckpoint = "{initial}"\ntrust_checkpoint = true\n')
    code, _, stderr = cli("train", "--config", toml, "--data_path", image_folder, "-o", tmp_path / "t", *FAST)
    _one_line(code, stderr, "trust_checkpoint", "--trust_checkpoint")
    assert not marker.exists() and not (tmp_path / "t").exists()


def test_the_layouts_the_seed_systems_wrote_load_without_a_flag(tmp_path):
    """docs/reference/cornet.md 3.4 (run.py's checkpoint), v1_resnet.md 4 (main.py's), heads.md 2.2 (study)."""
    z = vk.create_model("cornet_z")
    sd = {f"module.{k}": v for k, v in z.state_dict().items()}  # DataParallel's prefix
    opt = torch.optim.SGD(z.parameters(), lr=0.1, momentum=0.9)
    torch.save({"epoch": 43, "arch": "cornet_z", "flags": {"lr": 0.1, "step_size": 20, "ngpus": 1},
                "state_dict": sd, "optimizer": opt.state_dict()}, tmp_path / "zoo.pth")
    loaded = vk.create_model("Z", checkpoint=str(tmp_path / "zoo.pth"))
    assert torch.equal(loaded.state_dict()["V1.conv.weight"], z.state_dict()["V1.conv.weight"])

    r = vk.create_model("v1_resnet50", num_classes=200)
    sched = torch.optim.lr_scheduler.StepLR(torch.optim.SGD(r.parameters(), lr=0.1), 30)
    torch.save({"args": {"lr": 0.1, "mode": "finetune", "epochs": 10}, "device": torch.device("cpu"),
                "best_acc": 0.61, "epoch": 9, "model": r.state_dict(), "optimizer": sched.optimizer.state_dict(),
                "lr_scheduler": sched.state_dict()}, tmp_path / "main.pth")
    got = vk.create_model("v1_resnet50", checkpoint=str(tmp_path / "main.pth"))
    assert got.info.num_classes == 200  # read from the file's classifier

    from ventralkit.models.compact.phinet import PhiNet

    src = PhiNet(num_classes=100)
    feats = {k: v for k, v in src.state_dict().items() if not k.startswith("classifier")}
    torch.save({"epoch": 165, "optimizer": {"lr": 1e-4}, "feature_extractor": feats,
                "classifier": {"2.weight": src.classifier[2].weight, "2.bias": src.classifier[2].bias}},
               tmp_path / "study.ckpt")
    assert vk.create_model("phinet", checkpoint=str(tmp_path / "study.ckpt")).info.num_classes == 100


def test_finetuning_from_a_converted_checkpoint(cli, image_folder, tmp_path):
    """Issue 12 item 6: the study's PhiNet checkpoint through --ckpt_path --reset_classifier (cifar100-finetune)."""
    from ventralkit.models.compact.phinet import PhiNet

    src = PhiNet(num_classes=100)
    feats = {k: v for k, v in src.state_dict().items() if not k.startswith("classifier")}
    torch.save({"feature_extractor": feats, "classifier": {"2.weight": src.classifier[2].weight,
                                                           "2.bias": src.classifier[2].bias}}, tmp_path / "s.ckpt")
    out = tmp_path / "ft"
    code, _, stderr = cli("train", "--model", "phinet", "--ckpt_path", tmp_path / "s.ckpt", "--reset_classifier",
                          "--num_classes", "3", "--trainable", "classifier", "--data_path", image_folder,
                          "--epochs", "1", "--max_steps_per_epoch", "1", "-o", out, *FAST)
    assert code == 0, stderr
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    # the backbone came from the file (trainable: classifier only, so it is unchanged)
    key = next(k for k in feats if k.endswith("weight"))
    assert torch.equal(ckpt["model"][key], feats[key])
    assert ckpt["model"]["classifier.2.weight"].shape[0] == 3


def test_api_load_brings_classes_size_and_preprocessing(tmp_path):
    """Issue 13 item 3: a run's checkpoint alone gives the model, its classes, image size and preprocessing."""
    res = vk.train(vk.TrainConfig(model="cornet_z", dataset="digits", image_size=32, epochs=1, batch_size=64,
                                  max_steps_per_epoch=2, workers=0, progress=False, output_path=str(tmp_path / "run")))
    ckpt = res.run_dir / "checkpoints" / "last.pt"
    loaded = vk.load(ckpt)
    assert loaded.name == "cornet_z" and loaded.classes == [str(d) for d in range(10)]
    assert loaded.image_size == 32 and loaded.eval_transform == "resize_crop" and loaded.weights == "checkpoint"
    model = vk.create_model("cornet_z", checkpoint=str(ckpt))  # no num_classes needed
    # info.input_size keeps one meaning (the architecture's native size); the trained size is the preprocessing's
    assert model.info.num_classes == 10 and model.info.input_size == 224 and model.preprocessing.image_size == 32
    # best.pt holds weights only; epoch snapshots are hard links of last.pt (issue 12 item 9)
    best = torch.load(res.run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert "optimizer" not in best and "model" in best
    snap = res.run_dir / "checkpoints" / "epoch_01.pt"
    assert os.stat(snap).st_ino == os.stat(ckpt).st_ino


def test_divergence_stops_with_exit_3_and_saves_nothing_non_finite(cli, tmp_path):
    out = tmp_path / "nan"
    code, stdout, stderr = cli("train", "--model", "Z", "--dataset", "digits", "--lr", "1e6", "--epochs", "2",
                               "--max_steps_per_epoch", "5", "--save_every_minutes", "0", "--workers", "0",
                               "--no_progress", "-o", out)
    assert code == 3, stderr
    assert "diverged" in stderr and "--lr" in stderr and "epoch 1" in stderr and "done:" not in stdout
    for f in (out / "checkpoints").glob("*.pt"):
        state = torch.load(f, weights_only=True)["model"]
        assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()), f


def test_skip_drops_non_finite_steps_and_counts_them(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = torch.nn.CrossEntropyLoss.forward

    def flaky(self, logits, target):
        calls["n"] += 1
        loss = real(self, logits, target)
        return loss * float("nan") if calls["n"] == 2 else loss

    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", flaky)
    res = vk.train(vk.TrainConfig(model="cornet_z", dataset="digits", epochs=1, max_steps_per_epoch=4, workers=0,
                                  log_every=1, on_nonfinite="skip", progress=False, output_path=str(tmp_path / "s")))
    recs = [json.loads(ln) for ln in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert recs[-2]["skipped_steps"] == 1 if recs[-1]["phase"] == "val" else recs[-1]["skipped_steps"] == 1
    assert all(torch.isfinite(p).all() for p in res.model.parameters())


@pytest.mark.slow
def test_digits_defaults_train(cli, tmp_path):
    """Issue 12 item 3: --dataset digits with no other flag reaches >= 0.9 val top-1 in its default epochs."""
    out = tmp_path / "d"
    code, stdout, stderr = cli("train", "--dataset", "digits", "--no_progress", "-o", out)
    assert code == 0, stderr
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["image_size"] == 32 and cfg["sources"]["image_size"] == "dataset" and cfg["sources"]["dataset"] == "flag"
    assert "(dataset)" in stdout
    best = max(json.loads(ln)["top1"] for ln in (out / "metrics.jsonl").read_text().splitlines() if '"val"' in ln)
    assert best >= 0.9


def test_run_folder_belongs_to_one_run(cli, image_folder, tmp_path, monkeypatch):
    out = tmp_path / "run"
    base = ["train", "--model", "Z", "--data_path", image_folder, "--epochs", "1", "--max_steps_per_epoch", "1", *FAST]
    assert cli(*base, "-o", out)[0] == 0
    before = (out / "config.json").read_text()
    code, _, stderr = cli(*base, "--lr", "0.5", "-o", out)
    _one_line(code, stderr, "already holds a run", "--overwrite", "--resume")
    assert (out / "config.json").read_text() == before
    assert cli(*base, "--lr", "0.5", "--overwrite", "-o", out)[0] == 0
    assert json.loads((out / "config.json").read_text())["lr"] == 0.5
    # --config RUN repeats the run in a new folder, never over the old one
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = cli("train", "--config", out, "--no_progress")
    assert code == 0, stderr
    assert json.loads((out / "config.json").read_text())["lr"] == 0.5 and str(out) + "\n" not in stdout
    # --resume from another directory writes beside its checkpoint (absolute run folder)
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    code, _, stderr = cli("train", "--resume", str(out / "checkpoints" / "last.pt"), "--epochs", "2")
    assert code == 0, stderr
    assert not (other / "runs").exists() and json.loads((out / "config.json").read_text())["epochs"] == 2
    assert json.loads((out / "config.json").read_text())["output_path"] == str(out.resolve())


def test_failed_starts_leave_nothing_behind(cli, image_folder, tmp_path):
    bad = image_folder / "train" / "class_1" / "img_000.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    out = tmp_path / "o"
    code, _, stderr = cli("train", "--data_path", image_folder, "--on_bad_image", "error", "--epochs", "1",
                          "-o", out, *FAST)
    assert code == 2 and "img_000.jpg" in stderr
    assert not out.exists()
    code, _, stderr = cli("train", "--model", "v1_resnet50_cortical_magnification", "--data_path", image_folder,
                          "--epochs", "1", "-o", out, *FAST)
    _one_line(code, stderr, "64x64")  # found on the meta device, before the folder is made
    assert not out.exists()
    code, _, stderr = cli("train", "--model", "S", "--data_path", image_folder, "--epochs", "1", "-o", out,
                          *FAST[2:], "--imsize", "7")
    _one_line(code, stderr, "--image_size", "at least 16")  # one rule for every command (issue 13 item 5)
    assert not out.exists()


def test_user_errors_are_one_line(cli, image_folder, tmp_path):
    if not torch.cuda.is_available():
        code, _, stderr = cli("train", "--model", "Z", "--ngpus", "1", "--data_path", image_folder, "-o",
                              tmp_path / "g", *FAST)
        _one_line(code, stderr, "CUDA")
    code, _, stderr = cli("train", "--model", "Z", "--model_kwargs", '{"timez": 2}', "--data_path", image_folder,
                          "-o", tmp_path / "k", *FAST)
    _one_line(code, stderr, "timez")
    for argv in (["--imsize", "0"], ["--keep_epochs", "-5"]):
        code, _, stderr = cli("train", "--data_path", image_folder, "-o", tmp_path / "x", *FAST, *argv)
        _one_line(code, stderr, argv[0].lstrip("-"))
    assert not (tmp_path / "g").exists() and not (tmp_path / "k").exists() and not (tmp_path / "x").exists()


def test_over_size_image_is_one_line(cli, tmp_path, monkeypatch):
    from PIL import Image

    data = make_image_folder(tmp_path / "data", classes=2, train_per_class=2, val_per_class=1)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # every 32 x 32 image is now over twice the limit
    code, _, stderr = cli("train", "--data_path", data, "--on_bad_image", "error", "--epochs", "1",
                          "-o", tmp_path / "o", *FAST)
    _one_line(code, stderr, "cannot read image", "--on_bad_image skip")


def test_symlink_loop_counts_each_real_image_once(tmp_path):
    from ventralkit.data.folders import ImageFolderDataset

    data = make_image_folder(tmp_path / "data", classes=2, train_per_class=6, val_per_class=1)
    os.symlink(data / "train", data / "train" / "class_0" / "loop")  # a link back up the tree
    os.symlink(data / "train" / "class_1", data / "train" / "class_0" / "again")
    ds = ImageFolderDataset(data / "train")
    assert len(ds) == 12 and ds.targets.count(0) == 6 and ds.targets.count(1) == 6


def test_lock_refuses_a_second_writer_and_is_taken_over_after_a_kill(tmp_path):
    import subprocess
    import time

    from ventralkit.engine.run_folder import RunFolder
    from ventralkit.errors import ConfigError

    folder = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from ventralkit.engine.run_folder import RunFolder\n"
        f"rf = RunFolder(__import__('pathlib').Path({str(folder)!r})).__enter__(); print('locked', flush=True); "
        "time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match=f"in use by process {holder.pid}"):
            RunFolder(folder).__enter__()
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    with RunFolder(folder) as rf:  # the killed holder's lock is gone with it
        rf.commit()
