"""Numbers that agree across commands and one rule per option (issue 13 items 1, 3, 5, 13)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import ventralkit as vk
from ventralkit.data.embedded import write_digits_folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A CORnet-Z trained briefly on the embedded digits at 32 px (crop-based eval preprocessing)."""
    root = tmp_path_factory.mktemp("consistency")
    res = vk.train(vk.TrainConfig(model="cornet_z", dataset="digits", epochs=1, max_steps_per_epoch=20, workers=0,
                                  progress=False, output_path=str(root / "run")))
    data = write_digits_folder(root / "digits", image_size=32, per_class=6)
    return res.run_dir / "checkpoints" / "last.pt", data, root


def test_robustness_clean_error_equals_test_error(cli, trained):
    """The same images give the same error in `test` and `robustness` (the checkpoint's preprocessing)."""
    ckpt, data, root = trained
    croot = root / "c"
    (croot / "gaussian_noise").mkdir(parents=True)
    os.symlink(data / "val", croot / "gaussian_noise" / "1")  # a "corruption" that is the clean set itself
    code, _, stderr = cli("test", "--ckpt_path", ckpt, "--data_path", data, "--no_progress", "-o", root / "t")
    assert code == 0, stderr
    test_top1 = json.loads((root / "t" / "summary.json").read_text())["top1"]
    code, _, stderr = cli("robustness", "--ckpt_path", ckpt, "--data_path", croot, "--clean_path", data / "val",
                          "--quiet", "-o", root / "r")
    assert code == 0, stderr
    summary = json.loads((root / "r" / "summary.json").read_text())
    assert summary["clean_error"] == pytest.approx(1 - test_top1)
    assert summary["preprocess_used"] == ["eval"]
    # the Python API agrees without being told the size or the preprocessing
    rep = vk.evaluate_robustness(vk.create_model("cornet_z", checkpoint=str(ckpt)), croot, clean_path=data / "val",
                                 progress=False)
    assert rep.clean_error == pytest.approx(1 - test_top1)


def test_time_step_minus_one_is_the_last_everywhere(cli, tmp_path):
    from conftest import make_image_folder

    flat = make_image_folder(tmp_path / "d", classes=1, train_per_class=2, val_per_class=1) / "train" / "class_0"
    common = ["--model", "RT", "--random_init", "--layer", "V4", "--sublayer", "output", "--data_path", flat,
              "--imsize", "32", "--no_progress"]
    import torch

    torch.manual_seed(0)  # the same random weights for both runs
    assert cli("test", *common, "--time_step", "-1", "-o", tmp_path / "a")[0] == 0
    torch.manual_seed(0)
    assert cli("test", *common, "--time_step", "4", "-o", tmp_path / "b")[0] == 0
    a = np.load(tmp_path / "a" / "V4.output-t4.npy")
    b = np.load(tmp_path / "b" / "V4.output-t4.npy")
    assert np.array_equal(a, b)


def test_recipes_list_and_switch_off(cli):
    code, stdout, _ = cli("train", "--list_recipes")
    assert code == 0
    block = stdout.split("cifar100-finetune\n")[1].split("\ncifar100-hierarchical\n")[0]
    assert "model phinet" in block and "dataset cifar100" in block and "reproduces:" in block
    import argparse

    from ventralkit.cli.train import config_from_args, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["train", "--recipe", "cifar100-finetune", "--no-pretrained", "--data_path", "x"])
    cfg = config_from_args(args)
    assert cfg.pretrained is False and cfg.sources["pretrained"] == "flag" and cfg.sources["epochs"] == "recipe"


def test_plot_accepts_a_staged_run_as_compare_does(cli, tmp_path, monkeypatch):
    """Issue 13 item 14: `plot` and `compare` read a staged run's root through the same function.

    Issue 21 §6: the figure is read back, not only found on disk: each stage is a legend entry named
    by its folder, and its val top-1 line holds exactly that stage's val records."""
    import matplotlib.colors as mcolors

    import ventralkit.plots as plots

    root = tmp_path / "staged"
    for stage, steps in (("joint", 2), ("children", 3)):
        vk.train(vk.TrainConfig(model="cornet_z", dataset="digits", image_size=32, epochs=2, max_steps_per_epoch=steps,
                                batch_size=16, workers=0, progress=False, stage=stage, output_path=str(root / stage)))
    figs = []
    real = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, path, **kw: (figs.append(fig), real(fig, path, **kw))[1])
    code, stdout, stderr = cli("plot", root)
    assert code == 0, stderr
    assert stdout.strip().splitlines()[-1] == str(root / "plots" / "curves.png")  # training printed before it
    assert (root / "plots" / "curves.png").is_file()
    (fig,) = figs
    colour = {t.get_text().split(" (")[0]: mcolors.to_hex(h.get_color())
              for lg in fig.legends for h, t in zip(lg.legend_handles, lg.get_texts())}
    top1 = fig.axes[0]
    for stage in ("joint", "children"):
        val = [json.loads(ln) for ln in (root / stage / "metrics.jsonl").read_text().splitlines()]
        val = [r for r in val if r["phase"] == "val"]
        (line,) = [ln for ln in top1.lines
                   if ln.get_linestyle() == "-" and mcolors.to_hex(ln.get_color()) == colour[stage]]
        assert list(line.get_xdata()) == [r["epoch"] for r in val] == [1.0, 2.0]
        assert list(line.get_ydata()) == [r["top1"] for r in val]
    assert colour["joint"] != colour["children"]
    assert cli("compare", root, "-o", tmp_path / "cmp")[0] == 0
