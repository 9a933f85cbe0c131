"""Figures and the numbers they show: run comparison, training curves, robustness, V1 probe, class names."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest


def _run(folder, config, records):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def _val(epoch, top1, loss=1.0, top5=0.9):
    return {"phase": "val", "epoch": epoch, "step": 10 * epoch, "loss": loss, "top1": top1, "top5": top5}


# ---- compare: head parameters of the run, dataset in the title -------------------------------------


def test_compare_counts_the_head_of_the_run_not_of_the_registry(tmp_path):
    """The engine saves ``num_classes: null`` when the dataset decides; the class list then gives the count.

    PhiNet's head on CIFAR-100 is Linear(344, 100): 34,400 + 100 = 34,500 (docs/reference/heads.md 2.1),
    not the 1000-class 345,000; CORnet-Z's on the 10 digits is Linear(512, 10): 5,130, not 513,000."""
    import torch

    from ventralkit.analysis.compare import compare_runs
    from ventralkit.plots.compare import datasets_line

    fine = [f"class{i}" for i in range(100)]
    phinet = _run(tmp_path / "phinet", {"model": "phinet", "model_kwargs": {}, "num_classes": None,
                                        "classes": fine, "dataset": "cifar100"}, [_val(1, 0.4)])
    z = _run(tmp_path / "z", {"model": "cornet_z", "model_kwargs": {}, "num_classes": None, "dataset": "digits"},
             [_val(1, 0.8)])
    (z / "checkpoints").mkdir()  # no class list in the config: the checkpoint's num_classes
    torch.save({"format": "ventralkit", "num_classes": 10, "model": {}}, z / "checkpoints" / "last.pt")
    result = compare_runs([phinet, z], output=tmp_path / "out")
    rows = {r.run: r for r in result.rows}
    assert (rows["phinet"].params_head, rows["phinet"].num_classes, rows["phinet"].dataset) == (34_500, 100, "cifar100")
    assert (rows["z"].params_head, rows["z"].num_classes) == (5_130, 10)
    assert "34,500" in result.table and "345,000" not in result.table
    assert datasets_line(result.rows) == "cifar100, 100 classes; digits, 10 classes"
    assert result.files["png"].is_file()


def test_compare_names_an_image_folder_dataset_by_its_folder(tmp_path):
    from ventralkit.analysis.compare import compare_runs

    run = _run(tmp_path / "r", {"model": "cornet_z", "num_classes": 100, "dataset": "folder",
                                "data_path": "/data/MiniImageNet/"}, [_val(1, 0.5)])
    (row,) = compare_runs([run]).rows
    assert (row.dataset, row.num_classes, row.params_head) == ("MiniImageNet", 100, 51_300)


# ---- training curves ---------------------------------------------------------------------------------


def _axes_of(monkeypatch):
    """Capture the figure ``plot_runs`` draws (the file is still written)."""
    import ventralkit.plots.curves as curves

    seen = {}
    real = curves.save_figure

    def keep(fig, path, **kw):
        seen["fig"] = fig
        seen["axes"] = fig.axes
        seen["legends"] = [t.get_text() for lg in fig.legends for t in lg.get_texts()]
        return real(fig, path, **kw)

    monkeypatch.setattr(curves, "save_figure", keep)
    return seen


def test_curves_mark_non_finite_values_and_keep_the_panels_readable(tmp_path, monkeypatch):
    from ventralkit.plots.curves import plot_runs

    recs = []
    for e in range(1, 6):  # diverges at epoch 3: the records hold null for NaN
        recs.append({"phase": "train", "epoch": e, "step": e, "loss": None if e >= 3 else 2.0 / e, "top1": 0.1,
                     "top5": 0.5})
        recs.append(_val(e, 0.3 if e < 3 else 0.1, loss=None if e >= 3 else 2.2 / e))
    diverged = _run(tmp_path / "a", {"model": "cornet_z", "lr": 1.0, "workers": 4}, recs)
    ok = _run(tmp_path / "b", {"model": "cornet_z", "lr": 0.01, "workers": 2}, [_val(1, 0.094, loss=1e4)])
    seen = _axes_of(monkeypatch)
    out = plot_runs([diverged, ok], tmp_path / "curves.png")
    assert out.is_file()
    top1, top5, loss = seen["axes"]
    assert all(ax.get_ylabel() for ax in (top1, top5, loss))
    assert top1.get_ylim() == pytest.approx((0, 1.02))  # not zoomed onto 0.094..0.3
    assert loss.get_yscale() == "log"
    # the three missing epochs of both phases are marked with an x at the top of the loss panel
    marks = [ln for ln in loss.lines if ln.get_marker() == "x"]
    assert sorted(x for ln in marks for x in ln.get_xdata()) == [3, 3, 4, 4, 5, 5]
    assert "missing or non-finite value" in seen["legends"]
    # a one-point series is drawn with a marker
    one_point = [ln for ln in top1.lines if len(ln.get_xdata()) == 1 and ln.get_marker() not in (None, "None", "x")]
    assert one_point
    # labels: the option that differs (workers is bookkeeping), not every option; the shared model is the title
    assert "lr=1 (best val top-1 0.300)" in seen["legends"]
    assert "lr=0.01 (best val top-1 0.094)" in seen["legends"]
    assert seen["fig"]._suptitle.get_text() == "cornet_z"


def test_curves_of_a_run_without_any_finite_loss_say_so(tmp_path, monkeypatch):
    from ventralkit.plots.curves import plot_runs

    run = _run(tmp_path / "nan", {"model": "cornet_z"}, [_val(1, 0.1, loss=None), _val(2, 0.1, loss=None)])
    seen = _axes_of(monkeypatch)
    plot_runs([run], tmp_path / "c.png", zoom=True)
    loss = seen["axes"][2]
    assert [t.get_text() for t in loss.texts] == ["no finite cross-entropy loss recorded"]
    assert loss.get_ylim() == (0, 1)  # not the +-0.04 of an empty axis


def _visible_ticks(ax) -> list[float]:
    lo, hi = ax.get_xlim()
    return [float(t) for t in ax.get_xticks() if lo <= t <= hi]


def test_one_epoch_tells_train_from_val_and_reads_epoch_1(tmp_path, monkeypatch):
    """Issue 21 §5: one point per series, so line styles are invisible; the x axis read 0.945 ... 1.050."""
    from ventralkit.plots.curves import plot_runs

    train = {"phase": "train", "epoch": 1.0, "step": 5, "loss": 2.3, "top1": 0.16, "top5": 0.57}
    run = _run(tmp_path / "r1", {"model": "cornet_z"}, [train, _val(1.0, 0.10, loss=2.27, top5=0.58)])
    seen = _axes_of(monkeypatch)
    plot_runs([run], tmp_path / "c.png")
    for ax in seen["axes"]:
        points = [ln for ln in ax.lines if len(ln.get_xdata()) == 1]
        markers = {ln.get_marker() for ln in points}
        assert len(points) == 2 and len(markers) == 2 and None not in markers and "None" not in markers
        assert _visible_ticks(ax) == [1.0]
        lo, hi = ax.get_xlim()
        assert [t.get_text() for t in ax.get_xticklabels() if lo <= t.get_position()[0] <= hi] == ["1"]
    # the key shows the same two markers as the panels
    key = {h.get_label(): h.get_marker() for lg in seen["fig"].legends for h in lg.legend_handles}
    assert {key["val"], key["train"]} == markers


def test_runs_are_named_by_what_differs_else_by_folder(tmp_path, monkeypatch):
    """Issue 21 §5: a legend entry was the model plus up to four options and '...': name runs by what differs."""
    from ventralkit.plots.curves import plot_runs

    base = {"model": "cornet_z", "dataset": "digits", "lr": 0.01, "batch_size": 64, "epochs": 3, "seed": 0,
            "optimizer": "sgd", "output_path": "x", "workers": 2}
    a = _run(tmp_path / "lr-small", base, [_val(1, 0.5)])
    b = _run(tmp_path / "lr-big", {**base, "lr": 0.05, "workers": 0, "output_path": "y"}, [_val(1, 0.4)])
    seen = _axes_of(monkeypatch)
    plot_runs([a, b], tmp_path / "c.png")
    assert seen["legends"][-2:] == ["lr=0.01 (best val top-1 0.500)", "lr=0.05 (best val top-1 0.400)"]
    assert seen["fig"]._suptitle.get_text() == "cornet_z on digits"  # what they share, once
    # differing in many options: each run by its folder name, not an option list
    c = _run(tmp_path / "other", {**base, "lr": 0.1, "batch_size": 32, "epochs": 5, "seed": 2, "optimizer": "adamw"},
             [_val(1, 0.3)])
    plot_runs([a, b, c], tmp_path / "c.png")
    assert seen["legends"][-3:] == ["lr-small (best val top-1 0.500)", "lr-big (best val top-1 0.400)",
                                    "other (best val top-1 0.300)"]
    # the same stage of two staged runs: the folder names that tell them apart
    same = [_run(tmp_path / run / "joint", base, [_val(1, 0.2)]) for run in ("s1", "s2")]
    plot_runs(same, tmp_path / "c.png")
    assert [t.split(" (")[0] for t in seen["legends"][-2:]] == ["s1/joint", "s2/joint"]


def _cut_run(tmp_path):
    """A run folder as a killed job leaves it: two complete records, then a line cut short."""
    recs = [_val(1, 0.4), _val(2, 0.6)]
    run = _run(tmp_path / "killed", {"model": "cornet_z", "dataset": "digits", "num_classes": 10}, recs)
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write('{"phase": "val", "epoch": 3, "step": 30, "loss": 0.9, "to')
    return run


def test_plot_and_compare_read_a_run_killed_mid_line(cli, tmp_path, monkeypatch):
    """Issue 21 §4: a cut-off last line gave JSONDecodeError; the complete records are drawn and compared,
    with one warning naming the file, through the reader resume uses."""
    import ventralkit.plots as plots
    from ventralkit.engine.records import RunRecords, read_metrics

    run = _cut_run(tmp_path)
    figs = []
    real = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, path, **kw: (figs.append(fig), real(fig, path, **kw))[1])
    with pytest.warns(UserWarning, match=r"killed/metrics\.jsonl: 1 line that is not a complete record"):
        code, _, err = cli("plot", run, "-o", tmp_path / "c.png")
    assert code == 0, err
    val = [ln for ln in figs[-1].axes[0].lines if ln.get_linestyle() == "-"]
    assert [(list(ln.get_xdata()), list(ln.get_ydata())) for ln in val] == [([1.0, 2.0], [0.4, 0.6])]
    with pytest.warns(UserWarning, match="metrics.jsonl"):
        code, _, err = cli("compare", run, "-o", tmp_path / "cmp")
    assert code == 0, err
    assert "0.6000" in (tmp_path / "cmp" / "comparison.md").read_text()
    # resume keeps the same complete lines (one reader for both)
    RunRecords(run).truncate_after(global_step=10**6)
    assert (run / "metrics.jsonl").read_text().splitlines() == [json.dumps(r) for r in read_metrics(run)]


@pytest.mark.parametrize("content", [b'{"model": "cornet_z", "lr": 0.0', b'{"config": "cornet_z"}',
                                     b'{"model": "cornet_z", "model_kwargs": 5}', b"[1, 2]", b"\x89PNG\r\n\x1a\n\x00"])
def test_plot_and_compare_name_a_damaged_config_in_one_line(cli, tmp_path, content):
    """Issue 21 §4: a damaged config.json gave a traceback (or, cut short, was silently ignored)."""
    run = _run(tmp_path / "run", {"model": "cornet_z"}, [_val(1, 0.5)])
    (run / "config.json").write_bytes(content)
    for command, out in (("plot", tmp_path / "out" / "c.png"), ("compare", tmp_path / "cmp")):
        code, _, err = cli(command, run, "-o", out)
        assert code == 2, (command, err)
        assert str(run / "config.json") in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert not out.exists() and not (tmp_path / "out").exists()  # nothing half-made


def test_plot_and_compare_output_under_a_file_is_one_line(cli, tmp_path):
    """Issue 21 §4: `plot -o afile/x.png` gave FileExistsError; the line names the flag and the path."""
    run = _run(tmp_path / "run", {"model": "cornet_z"}, [_val(1, 0.5)])
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    for command, out in (("plot", afile / "x.png"), ("compare", afile), ("compare", afile / "sub")):
        code, _, err = cli(command, run, "-o", out)
        assert code == 2, (command, err)
        assert "-o/--output" in err and str(afile) in err and len(err.strip().splitlines()) == 1
    assert afile.read_text() == "not a folder"


# ---- the feedback study: no design hides another ------------------------------------------------------


def _pixel_gap(ax, a, b) -> float:
    """Distance on screen (pixels) between the first points of two lines."""
    pa, pb = (ax.transData.transform((ln.get_xdata()[0], ln.get_ydata()[0])) for ln in (a, b))
    return float(np.hypot(*(pa - pb)))


def test_feedback_figures_keep_the_feed_forward_point_visible(tmp_path, monkeypatch):
    """Issue 21 §5: the feed-forward dot hid under the gated one (same epoch, same accuracy, same marker)."""
    import ventralkit.plots.feedback as fb

    figs = _capture(monkeypatch, fb)
    curves = {("feedforward", 1): [[0.61], [0.61]], ("gated", 2): [[0.61], [0.61]]}  # one epoch, equal accuracy
    fb.plot_study(curves, {("feedforward", 1): 0.34, ("gated", 2): 0.34}, 100, tmp_path / "s.png",
                  {"dataset": "digits-occluded", "image_size": 32})
    epoch_ax = figs[-1].axes[0]
    ff, gated = [ln for ln in epoch_ax.lines if not ln.get_label().startswith("_")]  # not the error bars' caps
    assert "feed-forward" in ff.get_label() and "gated" in gated.get_label()
    size = max(ff.get_markersize(), gated.get_markersize()) * figs[-1].dpi / 72
    assert _pixel_gap(epoch_ax, ff, gated) > size  # neither covers the other, even at equal compute
    assert ff.get_marker() != gated.get_marker()
    assert _visible_ticks(epoch_ax) == [1.0]
    rows = [{"design": "gated", "outer_times": k, "pass": p, "v1_cka_first": 1.0, "v4_cka_first": 1.0,
             "readout_top1": 0.6} for k in (2, 3) for p in range(k)]
    fb.plot_inside(rows, tmp_path / "i.png")
    for ax in figs[-1].axes:
        two, three = ax.lines
        assert _pixel_gap(ax, two, three) > two.get_markersize() * figs[-1].dpi / 72
        assert _visible_ticks(ax) == [0.0, 1.0, 2.0]


# ---- robustness: the baseline caveat and what the figures show ---------------------------------------


def _errors(corruptions, severities=(1, 2, 3, 4, 5), value=0.5):
    return {c: {s: value for s in severities} for c in corruptions}


def test_alexnet_baseline_on_other_images_warns_and_notes_it():
    from ventralkit.analysis.robustness.metrics import BENCHMARK, alexnet_baseline, baseline_caveat, summarize

    base = alexnet_baseline()
    digits = [str(i) for i in range(10)]
    with pytest.warns(UserWarning, match=r"ImageNet-C errors \(1000 classes\) but these images have 10 classes"):
        summary = summarize(_errors(BENCHMARK), 0.1, base, classes=digits)
    assert summary["baseline_caveat"] in summary["notes"] and "--baseline RUN_DIR" in summary["baseline_caveat"]
    assert summary["mce"] is not None  # still computed, with the caveat next to it
    # Tiny-ImageNet's 200 WordNet ids are another dataset too; ImageNet's 1000 are not
    assert "200 classes" in baseline_caveat(base, [f"n{i:08d}" for i in range(200)])
    assert baseline_caveat(base, [f"n{i:08d}" for i in range(1000)]) is None
    assert baseline_caveat(base, 1000) is None and baseline_caveat(base, None) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a run baseline (dataset unknown) and no baseline: no caveat
        assert summarize(_errors(BENCHMARK), 0.1, None, classes=digits)["baseline_caveat"] is None


def test_robustness_figures_show_missing_as_missing_and_name_the_groups(tmp_path, monkeypatch):
    import ventralkit.plots.robustness as rp

    figs = []
    real = rp.save_figure
    monkeypatch.setattr(rp, "save_figure", lambda fig, path, **kw: (figs.append(fig), real(fig, path, **kw))[1])
    errors = _errors(["gaussian_noise", "shot_noise", "snow"], (1, 3))
    del errors["snow"][3]
    rp.plot_error_heatmap(errors, tmp_path / "h.png", title="m", mce=0.52, baseline_name="alexnet")
    ax = figs[-1].axes[0]
    texts = [t.get_text() for t in ax.texts]
    # the noise group is complete: impulse_noise (not evaluated) is a row of n/a; snow has no severity 3;
    # the weather group's frost, fog and brightness are shown as missing too
    assert [t.get_text() for t in ax.get_yticklabels()][:3] == ["gaussian_noise", "shot_noise", "impulse_noise"]
    assert texts.count("n/a") == 2 + 1 + 3 * 2
    assert "mCE 52.0% vs alexnet" in ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["noise", "weather"]

    means = {"gaussian_noise": 0.4, "shot_noise": None}
    rp.plot_corruption_bars(means, tmp_path / "b.png", baseline={"gaussian_noise": 0.88}, baseline_name="alexnet",
                            mce=0.45, caveat="the alexnet baseline holds ImageNet-C errors")
    fig = figs[-1]
    ax = fig.axes[0]
    heights = {t.get_text(): p.get_height() for t, p in zip(ax.get_xticklabels(), ax.patches)}
    assert heights["gaussian_noise"] == pytest.approx(40)
    assert "not evaluated" in [t.get_text() for t in ax.texts]  # shot_noise: a hatched slot, not a 0 bar
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:2] == ["noise", "not evaluated"] and "alexnet (another dataset, see note)" in legend
    assert any("Note: the alexnet baseline holds ImageNet-C" in t.get_text() for t in fig.texts)

    rp.plot_robustness_comparison({"a": {"snow": 0.5, "fog": 0.6}, "b": {"snow": 0.4}}, tmp_path / "c.png",
                                  scores={"a": 0.5, "b": None}, severities={"a": [1, 2, 3, 4, 5], "b": [1, 3, 5]})
    ax = figs[-1].axes[0]
    assert "different severities" in ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:3] == ["a (mCE 50.0%) [severities 1,2,3,4,5]", "b [severities 1,3,5]", "not evaluated"]


def _rgb_distance(a, b) -> float:
    from matplotlib.colors import to_rgb

    return float(np.linalg.norm(np.subtract(to_rgb(a), to_rgb(b))))


def test_robustness_comparison_colours_name_the_runs_only(tmp_path, monkeypatch):
    """Issue 21 §5: group-coloured corruption names (noise blue, blur green ...) clashed with the run colours
    (tab10 blue, green ...): a blue label read as a run. Groups are named by position instead."""
    import ventralkit.plots.robustness as rp

    figs = _capture(monkeypatch, rp)
    models = {f"run{i}": {"gaussian_noise": 0.3, "defocus_blur": 0.4, "snow": 0.5, "contrast": 0.6} for i in range(4)}
    rp.plot_robustness_comparison(models, tmp_path / "c.png", clean_errors={m: 0.1 for m in models})
    ax = figs[-1].axes[0]
    run_colours = [h.get_facecolor() for h in ax.get_legend().legend_handles][:4]
    label_colours = {t.get_color() for t in ax.get_xticklabels()}
    texts = [t for t in ax.texts]
    for colour in run_colours:  # nothing else in the figure is drawn in a run's colour
        assert all(_rgb_distance(colour, c) > 0.3 for c in label_colours | {t.get_color() for t in texts})
    assert len(label_colours) == 1  # the labels do not encode the groups by colour ...
    named = {t.get_text(): t.get_position()[0] for t in texts}  # ... their names stand above their columns
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert {g: named.get(g) for g in ("noise", "blur", "weather", "digital")} == {
        "noise": pytest.approx(np.mean([ticks.index(c) for c in ("gaussian_noise", "shot_noise", "impulse_noise")])),
        "blur": pytest.approx(np.mean([ticks.index("defocus_blur"), ticks.index("zoom_blur")])),
        "weather": pytest.approx(np.mean([ticks.index("snow"), ticks.index("brightness")])),
        "digital": pytest.approx(np.mean([ticks.index("contrast"), ticks.index("jpeg_compression")]))}


# ---- V1 probe figures ----------------------------------------------------------------------------------


def _capture(monkeypatch, module):
    figs = []
    real = module.save_figure
    monkeypatch.setattr(module, "save_figure", lambda fig, path, **kw: (figs.append(fig), real(fig, path, **kw))[1])
    return figs


def test_v1_histograms_label_every_panel_round_ticks_and_silent_panels(tmp_path, monkeypatch):
    import ventralkit.plots.v1 as pv
    from ventralkit.analysis.v1_probe.compare import REFERENCES

    figs = _capture(monkeypatch, pv)
    rng = np.random.default_rng(0)
    columns = {"peak_sf": rng.uniform(0.5, 10, 50), "preferred_orientation": rng.uniform(0, 180, 50),
               "surround_diameter": np.full(50, np.nan)}  # no unit with a defined value
    pv.plot_property_histograms(columns, REFERENCES, tmp_path / "h.png", title="t",
                                properties=["peak_sf", "preferred_orientation", "surround_diameter"])
    axes = [ax for ax in figs[-1].axes if ax.get_visible() and ax.axison]
    assert [ax.get_ylabel() for ax in axes] == ["fraction of units"] * 3
    assert [ax.get_xlabel() for ax in axes] == ["peak spatial frequency (cycles/deg)", "preferred orientation (deg)",
                                                "surround diameter (deg)"]
    # log bins 0.35..22.4 cycles/deg: 1-2-5 ticks; orientations: multiples of 45 deg
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["0.5", "1", "2", "5", "10", "20"]
    assert [t.get_text() for t in axes[1].get_xticklabels()] == ["0", "45", "90", "135"]
    assert "no responsive units" in [t.get_text() for t in axes[2].texts]
    assert "n=0 units" in axes[2].get_title()
    legend = [t.get_text() for lg in figs[-1].legends for t in lg.get_texts()]
    assert legend == ["model (responsive units)", "monkey V1 (published)"]


def test_v1_tuning_curves_explain_the_baseline_and_say_when_nothing_responds(tmp_path, monkeypatch):
    import ventralkit.plots.v1 as pv

    figs = _capture(monkeypatch, pv)
    n = 3
    curves = {"orientation_axis": np.arange(0, 180, 15.0), "orientation": np.zeros((n, 12)),
              "contrast_axis": np.array([0.05, 0.1, 0.5, 1.0]), "contrast": np.zeros((n, 4))}
    columns = {"responsive_orientation": np.zeros(n), "circular_variance": np.full(n, np.nan),
               "baseline": np.zeros(n), "c50": np.full(n, np.nan)}
    pv.plot_tuning_curves(curves, columns, tmp_path / "t.png", title="cornet_rt V2.output")
    fig = figs[-1]
    assert fig._suptitle.get_text() == "cornet_rt V2.output: no responsive units (rows show silent units)"
    caption = " ".join(" ".join(t.get_text().split()) for t in fig.texts)
    assert "dashed grey: its response to a blank grey screen" in caption and "c50 = contrast giving half" in caption
    assert [t.get_text() for lg in fig.legends for t in lg.get_texts()] == ["response", "baseline (blank screen)"]
    assert all("no response" in [t.get_text() for t in ax.texts] for ax in fig.axes)
    contrast_ax = fig.axes[1]
    assert contrast_ax.get_xscale() == "log"
    labels = [t.get_text() for t in contrast_ax.get_xticklabels() if t.get_text()]
    assert labels and all("^" not in t for t in labels)  # 0.05, 0.1, ... not 10^-1


def test_v1_runs_are_named_by_their_folder_unless_labelled(tmp_path, monkeypatch):
    import ventralkit.plots.v1 as pv
    from ventralkit.analysis.v1_probe.compare import comparison, load_run

    rows = "property,score\npeak_sf,0.5\n"
    for name, meta in (("rt_step0", {"label": "cornet_rt", "model": "cornet_rt"}),
                       ("rt_step4", {"label": "RT last step", "model": "cornet_rt"})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.csv").write_text(rows)
        (tmp_path / name / "run.json").write_text(json.dumps({**meta, "mean_score": None}))
    runs = [load_run(tmp_path / "rt_step0"), load_run(tmp_path / "rt_step4")]
    assert [r.label for r in runs] == ["rt_step0", "RT last step"]
    header, table = comparison(runs, "score")
    figs = _capture(monkeypatch, pv)
    pv.plot_comparison(header, table, tmp_path / "c.png")
    ax = figs[-1].axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["rt_step0", "RT last step", "no score"]  # the NaN mean scores: hatched, not 0 bars
    assert ax.get_ylabel() == "score (similarity / ceiling)"


# ---- class names in any script -----------------------------------------------------------------------


def test_class_names_the_default_font_draws_are_kept():
    from ventralkit.plots.text import drawable_labels

    labels = drawable_labels(["cat", "café", "жук", "λ"])  # DejaVu Sans, matplotlib's default, has these
    assert (labels.texts, labels.family, labels.note) == (["cat", "café", "жук", "λ"], None, None)


def test_cjk_and_emoji_names_use_a_font_that_has_them_or_become_indices(tmp_path, monkeypatch):
    from matplotlib import font_manager

    import ventralkit.plots.text as text
    from ventralkit.plots.evaluation import confusion_matrix_png

    names = ["cat", "猫", "🐍 snake"]
    # a machine without any font for them (matplotlib ships none): indices and a note
    dejavu = [e for e in font_manager.fontManager.ttflist if e.name.startswith("DejaVu")]
    monkeypatch.setattr(font_manager.fontManager, "ttflist", dejavu)
    labels = text.drawable_labels(names)
    assert labels.texts == ["cat", "1", "2"] and labels.replaced == [1, 2]
    assert labels.note.startswith("2 class names use characters no installed font can draw")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)" when it draws boxes
        out = confusion_matrix_png(np.eye(3) * 4 + 1, names, tmp_path / "confusion.png")
    assert out.is_file()
    # a machine with a font that has them (a CJK font, say): the names stay, drawn with that font as fallback
    fake = font_manager.FontEntry(fname="/fonts/NotoSansCJK.ttc", name="Noto Sans CJK JP")
    monkeypatch.setattr(font_manager.fontManager, "ttflist", dejavu + [fake])
    real = text._charmap
    monkeypatch.setattr(text, "_charmap", lambda path: frozenset(map(ord, "猫🐍")) if path == fake.fname else real(path))
    labels = text.drawable_labels(names)
    assert labels.texts == names and labels.family == ["DejaVu Sans", "Noto Sans CJK JP"] and labels.note is None
