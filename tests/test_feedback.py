"""Gated CORnet-S100 feedback, the occluded digits, and ``ventralkit study feedback`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ventralkit.cli import main
from ventralkit.data.embedded import digits_datasets, occluded_digits_datasets, occlusion_level
from ventralkit.engine.config import TrainConfig
from ventralkit.errors import ConfigError
from ventralkit.models import create_model


def _s100(outer_times: int, feedback: str = "gated"):
    torch.manual_seed(0)
    return create_model("cornet_s100", num_classes=10, outer_times=outer_times, feedback=feedback)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gated_starts_as_the_feedforward_network(mode):
    x = torch.randn(3, 3, 32, 32)
    ref = _s100(1)
    getattr(ref, mode)()
    with torch.no_grad():
        want = ref(x)
    for k in (2, 3):
        model = _s100(k)
        model.load_state_dict(ref.state_dict(), strict=False)  # the shared weights; per-pass BNs are fresh
        getattr(model, mode)()
        with torch.no_grad():
            assert torch.equal(model(x), want)


def test_gated_gain_learns_from_zero_and_additive_differs():
    x = torch.randn(4, 3, 32, 32)
    model = _s100(2)
    assert model.V4_to_V1_gain.shape == (1, 3, 1, 1) and not model.V4_to_V1_gain.any()
    model(x).logsumexp(1).sum().backward()
    assert model.V4_to_V1_gain.grad.abs().sum() > 0  # the gate gets a gradient although it is zero
    ref, additive = _s100(1), _s100(2, "additive")
    additive.load_state_dict(ref.state_dict(), strict=False)
    ref.eval(), additive.eval()
    with torch.no_grad():
        assert not torch.allclose(additive(x), ref(x))  # without the gate, feedback changes the function


@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_gated_feedback_is_on_the_image_scale_whatever_the_projection(scale):
    """The study's first gated design added the raw projection (sd 29-59 against the image's 1.5), so any open
    gain drowned the image; now the projection is normalised per channel and the gain alone sets its weight."""
    model = _s100(2).train()
    with torch.no_grad():
        model.V4_to_V1.weight.mul_(scale)
        model.V4_to_V1_gain.fill_(0.5)
    inputs = []
    handle = model.V1.conv1.register_forward_hook(lambda m, args, out: inputs.append(args[0].detach()))
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        model(x)
    handle.remove()
    assert torch.equal(inputs[0], x)  # pass 0 sees the image
    feedback = inputs[1] - x  # pass 1 sees the image plus the gated feedback
    sd = feedback.transpose(0, 1).reshape(3, -1).std(1, unbiased=False)
    assert torch.allclose(sd, torch.full((3,), 0.5), atol=1e-3)


def _pixels(ds, n=None):
    n = len(ds) if n is None else n
    return np.stack([np.asarray(ds.image(i), dtype=np.float32)[..., 0].ravel() for i in range(n)])


def _nearest_mean_accuracy(train, val) -> float:
    """Nearest class mean on raw pixels: a model-free measure of how hard the images are."""
    xt, yt = _pixels(train), np.array(train.targets)
    xv, yv = _pixels(val), np.array(val.targets)
    means = np.stack([xt[yt == c].mean(0) for c in range(10)])
    pred = ((xv[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    return float((pred == yv).mean())


def test_occluded_digits_deterministic_and_degraded():
    a_train, a_val, classes = occluded_digits_datasets(0.5, image_size=16)
    b_train, _, _ = occluded_digits_datasets(0.5, image_size=16)
    clean_train, clean_val, _ = digits_datasets(image_size=16)
    assert classes == [str(d) for d in range(10)] and len(a_train) == 1438 and len(a_val) == 359
    assert np.array_equal(_pixels(a_train, 20), _pixels(b_train, 20))  # same pixels every time
    assert a_train.targets == clean_train.targets
    level0, _, _ = occluded_digits_datasets(0.0, image_size=16)
    assert np.array_equal(_pixels(level0, 20), _pixels(clean_train, 20))
    clean_acc = _nearest_mean_accuracy(clean_train, clean_val)
    occluded_acc = _nearest_mean_accuracy(a_train, a_val)
    hard_acc = _nearest_mean_accuracy(*occluded_digits_datasets(1.0, image_size=16)[:2])
    assert clean_acc > 0.85 and occluded_acc < clean_acc - 0.1 and hard_acc < occluded_acc


def test_occlusion_level_option():
    assert occlusion_level("digits-occluded") == 0.5
    assert occlusion_level("digits-occluded:0.7") == 0.7
    TrainConfig(dataset="digits-occluded:0.25").validate()
    for bad in ("digits-occluded:1.5", "digits-occluded:x", "digits-occluded:nan"):
        with pytest.raises(ConfigError, match="occlusion level"):
            TrainConfig(dataset=bad).validate()


def _study(tmp_path, *extra):
    return main(["study", "feedback", "-o", str(tmp_path / "study"), "--outer_times", "1", "2", "--designs", "gated",
                 "--seeds", "0", "--epochs", "1", "--imsize", "16", "--batch_size", "8",
                 "--max_steps_per_epoch", "1", *extra])


@pytest.mark.slow
def test_study_end_to_end_and_skips_finished_runs(tmp_path, capsys, monkeypatch):
    import ventralkit.studies.feedback as fs

    monkeypatch.setattr(fs, "INSIDE_MAX_IMAGES", 40)
    assert _study(tmp_path) == 0
    out = tmp_path / "study"
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == ["feedforward-o1-s0", "gated-o2-s0"]
    rows = list(__import__("csv").DictReader((out / "feedback_study.csv").open()))
    assert [(r["design"], r["outer_times"], r["seeds"]) for r in rows] == [("feedforward", "1", "1"),
                                                                          ("gated", "2", "1")]
    assert float(rows[1]["gmac_per_image"]) > float(rows[0]["gmac_per_image"])
    assert (out / "feedback_study.png").stat().st_size > 0 and (out / "feedback_study.md").is_file()
    inside = list(__import__("csv").DictReader((out / "feedback_inside.csv").open()))
    assert [r["pass"] for r in inside] == ["0", "1"] and (out / "feedback_inside.png").is_file()
    for r in inside:
        assert 0 <= float(r["readout_top1"]) <= 1
    assert -1 <= float(inside[1]["v1_cka_prev"]) <= 1.0001
    ckpts = out / "runs" / "gated-o2-s0" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.pt"]  # --keep best: last.pt went after the record
    record = json.loads((ckpts.parent / "study_run.json").read_text())  # the per-pass rows, kept with the run
    assert [(r["pass"], r["readout_top1"]) for r in record["inside"]] == [(int(r["pass"]), float(r["readout_top1"]))
                                                                          for r in inside]
    stamp = (ckpts / "best.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert _study(tmp_path, "--no_inside", "--at_epoch", "1") == 0
    printed = capsys.readouterr().out
    assert printed.count("finished, skipped") == 2 and "training" not in printed
    assert "val top-1 after epoch 1." in (out / "feedback_study_epoch1.md").read_text()
    assert (out / "feedback_study_epoch1.png").is_file()
    assert "val top-1 after the last epoch." in (out / "feedback_study.md").read_text()  # not overwritten
    assert (ckpts / "best.pt").stat().st_mtime_ns == stamp
    before = (out / "feedback_inside.csv").read_bytes()
    (out / "feedback_inside.csv").unlink()
    assert _study(tmp_path, "--report_only") == 0  # the per-pass analysis from the record: last.pt is gone
    assert (out / "feedback_inside.csv").read_bytes() == before
    assert _study(tmp_path, "--lr", "0.1") == 2  # another setting in the same folder is refused
    assert json.loads((out / "study.json").read_text())["lr"] == 0.01


def test_study_bad_options_exit_2_before_writing(tmp_path, capsys):
    assert _study(tmp_path, "--designs", "gated", "sideways") == 2
    assert "--designs" in capsys.readouterr().err
    assert _study(tmp_path, "--dataset", "folder") == 2
    assert _study(tmp_path, "--at_epoch", "2") == 2  # beyond --epochs 1
    assert not (tmp_path / "study").exists()


def test_only_gated_has_per_pass_skip_and_projection_norms():
    """gated keeps no BatchNorm shared by two passes that feedback makes different; additive's keys are unchanged."""
    gated, additive = _s100(3).state_dict(), _s100(3, "additive").state_dict()
    for key in ("V2.norm_skip_p1.running_mean", "V4.norm_skip_p2.weight", "V4_to_V1_norm_p2.running_var"):
        assert key in gated and key not in additive
    assert "V4_to_V1_norm_p2.weight" not in gated  # no affine parameters: the gain is the only scale
    assert set(additive) < set(gated)


# ---- the per-pass analysis (feedback_inside.csv), checked against the model itself


N_INSIDE = 96  # val images the per-pass analysis reads in these tests


def _calibrated_gated(gain: float):
    """A gated outer_times-2 model with weights from the seed and every BatchNorm's statistics measured on
    the val images: untrained, yet its predictions spread over the classes (with the fresh statistics 0 and
    1 every image lands in one class, and every pass would read out the same accuracy)."""
    from torch.utils.data import DataLoader, Subset

    from ventralkit.data import load_datasets
    from ventralkit.models.registry import model_info

    model = _s100(2)
    with torch.no_grad():
        model.V4_to_V1_gain.fill_(gain)
    val = Subset(load_datasets("digits-occluded", None, model_info("cornet_s100"), 16).val, range(N_INSIDE))
    images, target = next(iter(DataLoader(val, batch_size=N_INSIDE)))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a plain average of what it sees
    model.train()
    with torch.no_grad():
        model(images)
    return model.eval(), images, target


def _inside(tmp_path, monkeypatch, model):
    """``inside_analysis`` on a run folder holding ``model`` as its last checkpoint."""
    import ventralkit.studies.feedback as fs

    monkeypatch.setattr(fs, "INSIDE_MAX_IMAGES", N_INSIDE)
    run = fs.StudyRun("gated", 2, 0)
    (tmp_path / "checkpoints").mkdir()
    torch.save({"model": model.state_dict(), "num_classes": 10, "finished": True},
               tmp_path / "checkpoints" / "last.pt")
    return fs.inside_analysis(tmp_path, run, {"dataset": "digits-occluded", "image_size": 16})


def _top1(model, images, target) -> float:
    with torch.no_grad():
        return round(model(images).argmax(1).eq(target).float().mean().item(), 4)


def test_per_pass_readout_is_the_models_own_accuracy_after_each_pass(tmp_path, monkeypatch):
    """Pass 0's read-out is the feed-forward network's top-1 (the same weights without feedback) and the
    last pass's is the model's own top-1 on the same images; an open gate makes V1 differ between passes."""
    model, images, target = _calibrated_gated(gain=1.0)
    own = _top1(model, images, target)
    model.outer_times = 1  # the same weights and norms run once: the feed-forward network, pass 0 alone
    first = _top1(model, images, target)
    model.outer_times = 2
    assert own != first  # else reading one pass for both could not be told apart
    rows = _inside(tmp_path, monkeypatch, model)
    assert [r["pass"] for r in rows] == [0, 1]
    assert rows[0]["readout_top1"] == first and rows[1]["readout_top1"] == own
    assert rows[0]["v1_cka_prev"] is None and rows[0]["v1_cka_first"] == 1.0
    assert rows[1]["v1_cka_prev"] == rows[1]["v1_cka_first"] < 0.95  # the feedback changed what V1 sees
    assert rows[1]["gain"] == "1 1 1"


def test_with_the_gate_at_zero_consecutive_passes_are_the_same(tmp_path, monkeypatch):
    """At gain 0 pass 1 sees the image alone: V1 and V4 repeat pass 0 (CKA 1) and the read-out is unchanged."""
    model, images, target = _calibrated_gated(gain=0.0)
    rows = _inside(tmp_path, monkeypatch, model)
    for area in ("v1", "v4"):
        assert rows[1][f"{area}_cka_prev"] == pytest.approx(1.0, abs=1e-4)
        assert rows[1][f"{area}_cka_first"] == pytest.approx(1.0, abs=1e-4)
    own = _top1(model, images, target)
    assert rows[0]["readout_top1"] == rows[1]["readout_top1"] == own
    assert rows[1]["gain"] == "0 0 0"
