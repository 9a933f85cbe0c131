"""The training CLI: original CORnet flags, run-folder contract, recipes, and every bad input of issue 4
(one line naming the file or flag, exit code 2, nothing half-written)."""

from __future__ import annotations

import json
import os

import pytest
import torch

from conftest import make_image_folder, records_through

FAST = ["--imsize", "32", "--batch_size", "4", "--workers", "0", "--no_progress"]


def test_original_cornet_flags_and_run_folder_contract(cli, image_folder, tmp_path):
    out = tmp_path / "run"
    code, stdout, _ = cli("train", "--model", "Z", "--workers", "0", "--ngpus", "0", "--step_size", "1",
                          "--epochs", "2", "--lr", ".01", "--data_path", image_folder, "--output_path", out,
                          "--imsize", "32", "--batch_size", "4", "--log_every", "2", "--no_progress")
    assert code == 0
    assert "config:" in stdout and f"run folder: {out}" in stdout
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == "cornet_z" and cfg["step_size"] == 1 and cfg["lr"] == 0.01
    assert cfg["ventralkit_version"] and cfg["num_params"] > 0 and cfg["classes"] == ["class_0", "class_1", "class_2"]
    recs = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if r["phase"] == "train"]
    val = [r for r in recs if r["phase"] == "val"]
    assert set(train[0]) >= {"phase", "epoch", "step", "loss", "top1", "top5", "learning_rate", "dur", "data_load_dur"}
    assert set(val[0]) >= {"phase", "epoch", "step", "loss", "top1", "top5", "dur"}
    assert len(val) == 2
    # StepLR(step_size=1, x0.1), stepped per batch with the fractional epoch (docs/reference/cornet.md 3.3):
    # epoch 1's batches train at 0.01 except the last one (frac epoch 1.0 -> 0.001)
    lrs = [r["learning_rate"] for r in train]
    assert lrs[-1] == pytest.approx(0.0001) and max(lrs) == pytest.approx(0.01)
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,train_loss") and len(rows) == 3
    for f in ("last.pt", "best.pt", "epoch_01.pt", "epoch_02.pt"):
        assert (out / "checkpoints" / f).is_file(), f
    assert (out / "plots" / "curves.png").stat().st_size > 1000
    # the run can be repeated from its folder, and its checkpoint is a weight file for create_model
    import ventralkit as vk

    m = vk.create_model("cornet_z", num_classes=3, checkpoint=str(out / "checkpoints" / "best.pt"))
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    code, _, _ = cli("train", "--config", out, "--epochs", "1", "-o", tmp_path / "again", "--no_progress")
    assert code == 0 and json.loads((tmp_path / "again" / "config.json").read_text())["step_size"] == 1


def test_keep_n_epoch_snapshots(cli, image_folder, tmp_path):
    out = tmp_path / "run"
    assert cli("train", "--data_path", image_folder, "--epochs", "3", "--keep_epochs", "1", "-o", out, *FAST)[0] == 0
    assert sorted(p.name for p in (out / "checkpoints").glob("epoch_*.pt")) == ["epoch_03.pt"]


def test_recipes_are_listed_and_load(cli):
    code, out, _ = cli("train", "--list_recipes")
    assert code == 0 and "cornet-s-imagenet" in out and "demo-digits" in out
    from ventralkit.engine.config import TrainConfig

    cfg = TrainConfig.build(recipe="cornet-s-imagenet", data_path="x").validate()
    assert (cfg.model, cfg.epochs, cfg.step_size, cfg.lr) == ("cornet_s", 43, 20, 0.1)
    cfg = TrainConfig.build(recipe="cornet-s100-miniimagenet", data_path="x").validate()
    assert cfg.batch_size == 16 and cfg.model_kwargs == {"outer_times": 1}


def _bad(cli, *argv):
    code, out, err = cli(*argv)
    assert code == 2, (out, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_missing_data_path(cli):
    assert "--data_path" in _bad(cli, "train", "--model", "Z", *FAST)


def test_no_train_or_val_folder(cli, tmp_path):
    (tmp_path / "d" / "train" / "a").mkdir(parents=True)
    msg = _bad(cli, "train", "--data_path", tmp_path / "nowhere", *FAST)
    assert "nowhere" in msg and "not a folder" in msg
    make_image_folder(tmp_path / "only_train")
    import shutil

    shutil.rmtree(tmp_path / "only_train" / "val")
    msg = _bad(cli, "train", "--data_path", tmp_path / "only_train", "-o", tmp_path / "o", *FAST)
    assert "val/" in msg
    assert not (tmp_path / "o").exists(), "nothing may be written on bad input"


def test_empty_class_folder(cli, image_folder, tmp_path):
    (image_folder / "train" / "class_9").mkdir()
    msg = _bad(cli, "train", "--data_path", image_folder, "-o", tmp_path / "o", *FAST)
    assert "class_9" in msg and "no images" in msg


def test_non_image_files_are_ignored(cli, image_folder, tmp_path):
    (image_folder / "train" / "class_0" / "notes.txt").write_text("not an image")
    (image_folder / "train" / "class_0" / ".DS_Store").write_bytes(b"\0\1")
    assert cli("train", "--data_path", image_folder, "--epochs", "1", "-o", tmp_path / "o", *FAST)[0] == 0


def test_truncated_jpeg_is_skipped_or_fatal_per_flag(cli, image_folder, tmp_path):
    bad = image_folder / "train" / "class_1" / "img_000.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    code, out, _ = cli("train", "--data_path", image_folder, "--epochs", "1", "-o", tmp_path / "o", *FAST)
    assert code == 0 and "1 unreadable image left out" in out  # left out (not replaced) and listed
    assert (tmp_path / "o" / "skipped.txt").read_text().startswith(f"{bad}\t")
    # in a worker process too: the one line survives DataLoader's re-raise
    msg = _bad(cli, "train", "--data_path", image_folder, "--epochs", "1", "-o", tmp_path / "o2",
               "--on_bad_image", "error", "--imsize", "32", "--batch_size", "4", "--workers", "1", "--no_progress")
    assert "img_000.jpg" in msg and "--on_bad_image skip" in msg


def test_unknown_model(cli, image_folder):
    msg = _bad(cli, "train", "--model", "cornet_q", "--data_path", image_folder, *FAST)
    assert "unknown model 'cornet_q'" in msg and "cornet_" in msg


def test_checkpoint_of_another_architecture(cli, image_folder, tmp_path):
    import ventralkit as vk

    torch.save(vk.create_model("cornet_rt").state_dict(), tmp_path / "rt.pt")
    msg = _bad(cli, "train", "--model", "Z", "--ckpt_path", tmp_path / "rt.pt", "--data_path", image_folder, *FAST)
    assert "cornet_z" in msg and "missing" in msg


def test_class_count_mismatch(cli, image_folder, tmp_path):
    import ventralkit as vk

    torch.save(vk.create_model("cornet_z", num_classes=5).state_dict(), tmp_path / "z5.pt")
    msg = _bad(cli, "train", "--model", "Z", "--ckpt_path", tmp_path / "z5.pt", "--data_path", image_folder, *FAST)
    assert "num_classes=5" in msg


@pytest.mark.parametrize("value", ["0", "-3"])
def test_bad_batch_size(cli, image_folder, value):
    assert "--batch_size" in _bad(cli, "train", "--data_path", image_folder, "--batch_size", value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; covered by the file-as-folder case")
def test_unwritable_output_folder_permissions(cli, image_folder, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    assert "--output_path" in _bad(cli, "train", "--data_path", image_folder, "-o", ro / "run", *FAST)


def test_output_folder_that_cannot_be_created(cli, image_folder, tmp_path):
    (tmp_path / "file").write_text("x")
    msg = _bad(cli, "train", "--data_path", image_folder, "-o", tmp_path / "file" / "run", *FAST)
    assert "--output_path" in msg


def test_corrupt_or_truncated_resume_file(cli, image_folder, tmp_path):
    out = tmp_path / "run"
    assert cli("train", "--data_path", image_folder, "--epochs", "1", "-o", out, *FAST)[0] == 0
    last = out / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    msg = _bad(cli, "train", "--resume", last)
    assert str(last) in msg and "corrupt or truncated" in msg
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    assert "garbage.pt" in _bad(cli, "train", "--resume", tmp_path / "garbage.pt")


def test_weights_only_checkpoint_cannot_resume(cli, image_folder, tmp_path):
    import ventralkit as vk

    torch.save(vk.create_model("cornet_z").state_dict(), tmp_path / "w.pt")
    assert "--checkpoint" in _bad(cli, "train", "--resume", tmp_path / "w.pt")


def test_unknown_option_in_config_file(cli, tmp_path):
    (tmp_path / "c.toml").write_text('model = "cornet_z"\nlearning_rat = 0.1\n')
    assert "learning_rat" in _bad(cli, "train", "--config", tmp_path / "c.toml", "--dataset", "digits")


def test_fine_tune_head_only_keeps_the_rest_frozen(tmp_path, image_folder):
    """trainable=["classifier"] (-> decoder.linear) + reset_classifier: only the new head changes."""
    import ventralkit as vk
    from ventralkit.engine.train import train

    src = vk.create_model("cornet_z", num_classes=7)
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "z7.pth")
    res = train(model="cornet_z", checkpoint=str(tmp_path / "z7.pth"), reset_classifier=True,
                trainable=["classifier"], data_path=str(image_folder), image_size=32, epochs=1, batch_size=4,
                workers=0, lr=0.1, output_path=str(tmp_path / "ft"), progress=False)
    trained = res.model.state_dict()
    for k, v in src.state_dict().items():
        if not k.startswith("decoder.linear"):
            assert torch.equal(v, trained[k]), k
    assert trained["decoder.linear.weight"].shape == (3, 512)
    cfg = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert cfg["num_trainable"] == 512 * 3 + 3


def test_frozen_batchnorm_eval_keeps_statistics_train_updates_them():
    """frozen_bn="eval" (default) keeps a frozen BatchNorm's running stats; "train" is main.py's model.train()."""
    import torch.nn as nn

    from ventralkit.engine.train import set_train_mode

    x = torch.randn(8, 3, 6, 6) * 3 + 1
    for mode, moves in (("eval", False), ("train", True)):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(64, 2))
        set_train_mode(model, ["3"], mode)
        assert model[1].training is moves and model[3].training
        before = model[1].running_mean.clone()
        model(x)
        assert (not torch.equal(before, model[1].running_mean)) is moves, mode


def test_augment_and_eval_transform_modes():
    """flip / none keep the images' own size (V1-ResNet main.py on 64 px Tiny-ImageNet); crop_flip crops to s."""
    from PIL import Image

    from ventralkit import model_info
    from ventralkit.data.transforms import eval_transform, train_transform
    from ventralkit.engine.config import TrainConfig
    from ventralkit.errors import ConfigError

    info = model_info("cornet_z")
    img = Image.new("RGB", (50, 40), (200, 10, 10))
    assert train_transform(info, 32)(img).shape == (3, 32, 32)
    assert train_transform(info, 32, "flip")(img).shape == (3, 40, 50)
    assert train_transform(info, 32, "none")(img).shape == (3, 40, 50)
    assert eval_transform(info, 32)(img).shape == (3, 32, 32)
    assert eval_transform(info, 32, "none")(img).shape == (3, 40, 50)
    # the fine-tuning recipe reproduces main.py --mode finetune --dataset tinyimagenet (docs/reference/v1_resnet.md 4)
    cfg = TrainConfig.build(recipe="v1-tinyimagenet-finetune", data_path="x")
    assert (cfg.augment, cfg.eval_transform, cfg.frozen_bn) == ("flip", "none", "train")
    with pytest.raises(ConfigError, match="--augment must be one of"):
        TrainConfig.build(augment="random", data_path="x").validate()


def test_onecycle_schedule_and_gradient_clipping(tmp_path):
    """scheduler="onecycle" follows PyTorch's OneCycleLR per batch; clip_grad_value bounds every update."""
    import ventralkit as vk
    from ventralkit.engine.train import train

    common = dict(model="cornet_z", dataset="digits", image_size=16, batch_size=8, workers=0, epochs=2,
                  max_steps_per_epoch=3, log_every=1, progress=False, keep_epochs=0, optimizer="sgd", momentum=0.0,
                  weight_decay=0.0)
    train(scheduler="onecycle", lr=0.5, output_path=str(tmp_path / "oc"), **common)
    lrs = [json.loads(ln)["learning_rate"] for ln in (tmp_path / "oc" / "metrics.jsonl").read_text().splitlines()
           if json.loads(ln)["phase"] == "train"]
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5, momentum=0.9)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.5, epochs=2, steps_per_epoch=3)
    expected = []
    for _ in range(6):
        opt.step()
        ref.step()
        expected.append(ref.get_last_lr()[0])
    assert lrs == pytest.approx(expected)  # a record per step, lr read after the step
    assert max(lrs) == pytest.approx(0.5, rel=0.05)  # the peak is --lr

    torch.manual_seed(0)
    start = vk.create_model("cornet_z", num_classes=10).state_dict()
    res = train(scheduler="constant", lr=1.0, clip_grad_value=1e-6, seed=0, output_path=str(tmp_path / "clip"),
                **{**common, "epochs": 1})
    moved = 0.0
    for k, v in res.model.state_dict().items():
        if k.endswith(("weight", "bias")):  # SGD, lr 1, no momentum: 3 steps move a weight by <= 3e-6 (+ rounding)
            change = (v - start[k]).abs().max().item()
            assert change <= 3e-6 + 1e-8, k
            moved = max(moved, change)
    assert moved > 1e-6  # the gradients were clipped, not dropped


def test_fp16_recipe_on_the_cpu_falls_back_to_fp32(cli, tmp_path):
    """GPU recipes (amp = "fp16", e.g. v1-tinyimagenet-finetune) stay runnable on a CPU, with a note."""
    code, out, err = cli("train", "--model", "Z", "--dataset", "digits", "--imsize", "16", "--epochs", "1",
                         "--max_steps_per_epoch", "1", "--batch_size", "4", "--workers", "0", "--amp", "fp16",
                         "--device", "cpu", "--no_progress", "-o", tmp_path / "r")
    assert code == 0, err
    assert "amp fp16 needs CUDA; training in fp32" in out
    assert json.loads((tmp_path / "r" / "config.json").read_text())["amp"] == "none"


def test_resume_is_exact_with_onecycle_clipping_and_mixing(tmp_path, steps_run):
    """Resuming from an epoch snapshot runs only the second epoch and reproduces the uninterrupted run bit
    for bit (CPU), with the OneCycle schedule (momentum cycling), gradient clipping and CutMix/MixUp all in
    play; the first epoch's records stay as they were written."""
    from ventralkit.engine.train import train
    from ventralkit.errors import ConfigError

    common = dict(model="cornet_z", dataset="digits", image_size=16, batch_size=8, workers=0, epochs=2,
                  max_steps_per_epoch=3, progress=False, keep_epochs=-1, optimizer="adam", scheduler="onecycle",
                  lr=0.01, clip_grad_value=0.05, mixup_alpha=0.5, cutmix_alpha=0.5, log_every=1)
    full = train(output_path=str(tmp_path / "full"), **common)
    first_epoch = records_through(tmp_path / "full", 3)
    steps_run.clear()
    resumed = train(output_path=str(tmp_path / "resumed"), resume=str(tmp_path / "full/checkpoints/epoch_01.pt"),
                    **common)
    assert steps_run == [(3, 1, 0), (4, 1, 1), (5, 1, 2)]  # epoch 2 only, from its first step
    assert (tmp_path / "full/metrics.jsonl").read_text().splitlines()[:len(first_epoch)] == first_epoch
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a one-cycle schedule cannot be stretched: changing --epochs on resume is refused before any step
    steps_run.clear()
    with pytest.raises(ConfigError, match="onecycle schedule spans 6 steps, this run 9"):
        train(output_path=str(tmp_path / "longer"), resume=str(tmp_path / "full/checkpoints/epoch_01.pt"),
              **{**common, "epochs": 3})
    assert steps_run == []


def test_folder_transform_options_are_refused_for_other_datasets():
    from ventralkit.engine.config import TrainConfig
    from ventralkit.errors import ConfigError

    with pytest.raises(ConfigError, match="--augment applies to image folders"):
        TrainConfig.build(dataset="digits", augment="flip").validate()


def test_figures_without_a_suffix_are_png(tmp_path):
    import matplotlib.pyplot as plt

    from ventralkit.plots import save_figure

    fig, ax = plt.subplots()
    ax.plot([0, 1])
    assert save_figure(fig, tmp_path / "curves") == tmp_path / "curves.png"
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG" and len(list(tmp_path.iterdir())) == 1


def test_resume_reads_its_checkpoint_once_and_validates_the_config_once(cli, image_folder, tmp_path, monkeypatch):
    """Issue 22: `train --resume LAST_PT` read the file twice (for its config, then to resume) and checked the
    config twice (the command, then the engine); each is done once now."""
    from ventralkit.engine.config import TrainConfig

    out = tmp_path / "run"
    assert cli("train", "--data_path", image_folder, "--epochs", "1", "-o", out, *FAST)[0] == 0
    last = out / "checkpoints" / "last.pt"
    loads, checks = [], []
    real_load, real_validate = torch.load, TrainConfig.validate

    def counting_load(f, *args, **kwargs):
        loads.append(str(f))
        return real_load(f, *args, **kwargs)

    def counting_validate(self):
        checks.append(self.epochs)
        return real_validate(self)

    monkeypatch.setattr(torch, "load", counting_load)
    monkeypatch.setattr(TrainConfig, "validate", counting_validate)
    code, stdout, err = cli("train", "--resume", last, "--epochs", "2", "--no_progress")
    assert code == 0, err
    assert "extending the finished run" in stdout and "epoch 2/2" in stdout
    assert loads.count(str(last)) == 1
    assert checks == [2]


def _train_parser():
    import argparse

    from ventralkit.cli.train import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser


def test_every_option_reaches_its_config_field():
    """Each TrainConfig field offered on the command line (its own option, generated from the field's
    metadata, or a shared one of cli/common) lands in that field, under every alias; choices are the ones
    validate() checks. A value unlike the default is given for each, so a lost or misrouted option shows."""
    import dataclasses

    from ventralkit.cli.train import config_from_args
    from ventralkit.engine.config import TrainConfig

    parser = _train_parser()
    sub = parser._subparsers._group_actions[0].choices["train"]
    by_dest = {a.dest: a for a in sub._actions}
    defaults = TrainConfig()
    examples = {int: "3", float: "0.25", str: "x"}
    checked = 0
    for f in dataclasses.fields(TrainConfig):
        meta = f.metadata
        if meta["shared"] or meta["flags"] == () or f.name in ("recipe", "resume"):  # these two read files
            continue
        action = by_dest[f.name]
        assert tuple(action.option_strings) == (meta["flags"] or (f"--{f.name}",)), f.name
        if meta["choices"]:
            assert list(action.choices) == list(meta["choices"]), f.name
        for flag in action.option_strings:
            if action.nargs == 0:  # a switch
                argv, expected = [flag], True
            elif meta["choices"]:
                expected = next(c for c in meta["choices"] if c != getattr(defaults, f.name))
                argv = [flag, expected]
            elif action.nargs == "+":
                argv, expected = [flag, "2", "5"], [action.type("2"), action.type("5")]
            else:
                argv, expected = [flag, examples[action.type or str]], (action.type or str)(examples[action.type or str])
            args = parser.parse_args(["train", "--dataset", "digits", *argv])
            assert getattr(config_from_args(args), f.name) == expected, (f.name, flag)
            checked += 1
    assert checked >= 38  # every optimisation, speed and run option of its own, with its aliases
    # the shared options and the negations
    args = parser.parse_args(["train", "--model", "S", "-j", "2", "--imsize", "64", "--batch_size", "8", "--amp", "bf16",
                              "--device", "cpu", "--checkpoint", "w.pt", "--data_path", "d", "--num_classes", "7",
                              "--no_progress", "--no_pretrained", "--trust_checkpoint"])
    cfg = config_from_args(args)
    assert (cfg.model, cfg.workers, cfg.image_size, cfg.batch_size, cfg.amp, cfg.device, cfg.checkpoint,
            cfg.data_path, cfg.num_classes, cfg.progress, cfg.pretrained, cfg.trust_checkpoint) == \
        ("cornet_s", 2, 64, 8, "bf16", "cpu", "w.pt", "d", 7, False, False, True)
    assert [parser.parse_args(["train", flag, "r/last.pt"]).resume for flag in ("--resume", "--restore_path")] == \
        ["r/last.pt"] * 2
    assert parser.parse_args(["train", "--recipe", "demo-digits"]).recipe == "demo-digits"
    with pytest.raises(Exception, match="give --pretrained or --no-pretrained, not both"):
        config_from_args(parser.parse_args(["train", "--pretrained", "--no-pretrained"]))
