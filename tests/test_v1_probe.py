"""In-silico V1 electrophysiology (``ventralkit.analysis.v1_probe``): stimuli, properties, scoring, CLI.

Hand-built "models" (a Gabor filter bank, a difference-of-Gaussians unit) have known answers; the
CLI runs CORnet-Z at 64 px with the quick stimulus grid.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

from ventralkit.analysis.v1_probe import (
    REFERENCES,
    StimulusConfig,
    area_commitments,
    brainscore_layers,
    grating,
    load_references,
    probe_v1,
)
from ventralkit.analysis.v1_probe import compare as cmp
from ventralkit.analysis.v1_probe import properties as P
from ventralkit.analysis.v1_probe import stimuli as S
from ventralkit.errors import ConfigError, DataError

SIZE, DEG = 32, 4.0  # 8 pixels per degree
PPD = SIZE / DEG


def _kernel_coords(k):
    c = (torch.arange(k, dtype=torch.float64) - k // 2) / PPD
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return xx, yy


class FilterModel(nn.Module):
    """A fixed linear filter bank + ReLU, with the ``info`` attributes the probe reads."""

    def __init__(self, kernels: torch.Tensor, name: str):
        super().__init__()
        k = kernels.shape[-1]
        self.conv = nn.Conv2d(3, kernels.shape[0], k, padding=k // 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_((kernels / 3).unsqueeze(1).expand(-1, 3, -1, -1).float())
        self.output = nn.ReLU()
        self.info = SimpleNamespace(name=name, input_size=SIZE, mean=(0.5,) * 3, std=(0.5,) * 3,
                                    areas={"V1": "output"}, time_steps={})

    def forward(self, x):
        return self.output(self.conv(x))


def gabor_bank(orientations, sf=1.54, sigma=0.35, k=17) -> FilterModel:
    xx, yy = _kernel_coords(k)
    ks = []
    for th in orientations:
        t = math.radians(th)
        g = torch.exp(-(xx ** 2 + yy ** 2) / (2 * sigma ** 2)) * torch.cos(2 * math.pi * sf * (xx * math.cos(t) + yy * math.sin(t)))
        ks.append(g - g.mean())
    return FilterModel(torch.stack(ks), "gabor_bank")


def dog_unit(sc=0.2, ss=0.6, k=29) -> FilterModel:
    xx, yy = _kernel_coords(k)
    r2 = xx ** 2 + yy ** 2
    centre = torch.exp(-r2 / (2 * sc ** 2)) / (2 * math.pi * sc ** 2)
    surround = torch.exp(-r2 / (2 * ss ** 2)) / (2 * math.pi * ss ** 2)
    return FilterModel((centre - surround)[None] / PPD ** 2, "dog")


def _circ_dist(a, b):
    return np.abs((np.asarray(a) - np.asarray(b) + 90) % 180 - 90)


QUICK = StimulusConfig.quick(visual_degrees=DEG)


# ---------------------------------------------------------------------------------------------
# stimuli


def test_benchmark_grids_match_the_spec():
    cfg = StimulusConfig()
    assert len(S.SPATIAL_FREQUENCIES) == 22 and S.SPATIAL_FREQUENCIES[0] == pytest.approx(0.386, abs=1e-3)
    assert S.SPATIAL_FREQUENCIES[-1] == pytest.approx(14.672, abs=1e-3)
    assert len(S.RADII) == 12 and S.RADII[0] == pytest.approx(0.105, abs=1e-3) and S.RADII[-1] == pytest.approx(4.757, abs=1e-3)
    sets = S.benchmark_sets(cfg)
    assert {k: len(v) for k, v in sets.items()} == {"orientation": 1152, "spatial_frequency": 2112, "size": 2304}


def test_grating_geometry_orientation_sf_contrast_aperture():
    # 0 deg: luminance varies along x (vertical bars); 2 cpd over 8 deg = 16 cycles across 224 px
    img = grating(0, 2.0, image_size=224, visual_degrees=8)
    assert img.shape == (224, 224) and 0 <= img.min() and img.max() <= 1
    assert np.allclose(img, img[0:1, :], atol=1e-9)  # constant down each column
    spectrum = np.abs(np.fft.rfft(img[0] - 0.5))
    assert int(np.argmax(spectrum)) == 16
    horiz = grating(90, 2.0, image_size=64)
    assert np.allclose(horiz, horiz[:, 0:1], atol=1e-9)
    low = grating(0, 1.0, contrast=0.25, image_size=224)
    assert low.max() - 0.5 == pytest.approx(0.125, rel=0.05)
    disc = grating(0, 1.0, radius=1.0, image_size=64, visual_degrees=8)
    assert disc[0, 0] == 0.5 and disc[-1, -1] == 0.5 and np.ptp(disc[24:40, 24:40]) > 0.5


def test_render_normalises_with_model_mean_std():
    x = S.render_gratings({"orientation": [0.0], "contrast": [0.0]}, 16, 4.0, mean=(0.485, 0.456, 0.406),
                          std=(0.229, 0.224, 0.225))
    assert x.shape == (1, 3, 16, 16)
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([(0.5 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0.5 - 0.406) / 0.225]))


# ---------------------------------------------------------------------------------------------
# properties on hand-made curves


def test_circular_variance_isotropic_is_one_and_tuned_is_zero():
    ori = np.arange(0, 180, 15.0)
    assert P.circular_variance(np.ones(12), ori) == pytest.approx(1.0)
    delta = np.zeros(12)
    delta[3] = 5.0
    assert P.circular_variance(delta, ori) == pytest.approx(0.0, abs=1e-12)
    narrow = np.exp(np.cos(2 * np.deg2rad(ori - 45)) * 8)
    assert P.circular_variance(narrow, ori) < 0.3
    assert P.preferred_orientation(narrow, ori) == pytest.approx(45, abs=1)
    assert math.isnan(P.orientation_bandwidth(np.ones(12), ori))  # never falls to 1/sqrt(2): unselective
    assert 5 < P.orientation_bandwidth(narrow, ori) < 30
    assert P.orthogonal_preferred_ratio(narrow, ori) < 0.01


def test_sf_and_size_tuning_definitions():
    sf = np.array(S.SPATIAL_FREQUENCIES)
    curve = np.exp(-((np.log2(sf) - 1.0) ** 2) / (2 * 0.6 ** 2))  # Gaussian in log2 SF around 2 cpd
    t = P.spatial_frequency_tuning(curve, sf)
    assert t["peak_sf"] == pytest.approx(2.0, rel=0.08)
    # 1/sqrt(2) cut-offs of a log-Gaussian: +-sigma*sqrt(ln 2) octaves
    assert t["sf_bandwidth"] == pytest.approx(2 * 0.6 * math.sqrt(math.log(2)), abs=0.15)
    assert t["sf_selective"] == 1.0 and 0 < t["sf_bandwidth_ratio"] < 100
    assert P.spatial_frequency_tuning(np.linspace(1, 2, 22), sf)["sf_selective"] == 0.0  # low-pass: no low cut-off
    radii = np.array(S.RADII)
    suppressed = np.array([1, 3, 6, 9, 10, 8, 6, 5, 5, 5, 5, 5], float)
    s = P.size_tuning(suppressed, radii)
    assert s["surround_suppression_index"] == pytest.approx(0.5)
    assert s["grating_summation_field"] == pytest.approx(2 * radii[4])
    assert s["surround_diameter"] == pytest.approx(2 * radii[7])
    flat = P.size_tuning(np.linspace(1, 10, 12), radii)
    assert flat["surround_suppression_index"] == 0 and math.isnan(flat["grating_summation_field"])


def test_contrast_response_recovers_naka_rushton():
    c = np.array(S.CONTRASTS)
    y = 2 + 40 * c ** 2.5 / (c ** 2.5 + 0.15 ** 2.5)
    fit = P.contrast_response(y, c, baseline=2.0)
    assert fit["c50"] == pytest.approx(0.15, rel=0.1) and fit["contrast_exponent"] == pytest.approx(2.5, abs=0.3)
    assert fit["contrast_r2"] > 0.999


# ---------------------------------------------------------------------------------------------
# scoring


def test_ks_similarity_and_ceiling():
    ref = REFERENCES["peak_sf"]
    q = ref.histogram()
    assert cmp.ks_similarity(q, q) == 1.0
    point = np.zeros_like(q)
    point[0] = 1
    assert cmp.ks_similarity(point, q) <= 1e-12 + (1 - np.max(np.abs(np.cumsum(point) - np.cumsum(q) / q.sum())) / max(1 - q[0] / q.sum(), 1))
    ceil = cmp.ceiling(ref, n_boot=300)
    assert 0.9 < ceil < 1.0  # Brain-Score's published ceiling for this benchmark: 0.967
    good, _ = cmp.bootstrap_similarity(cmp.reference_pool(ref), ref, n_boot=300, seed=1)
    bad, _ = cmp.bootstrap_similarity(np.full(100, 20.0), ref, n_boot=300)
    assert good > 0.9 and bad < 0.2
    assert cmp.bootstrap_similarity(np.full(50, np.nan), ref, n_boot=50) == (0.0, 0.0)
    pref = REFERENCES["preferred_orientation"]  # bins start at -22.5: 170 deg belongs to the first bin
    assert pref.map_values([170.0, 10.0, 100.0]).tolist() == [-10.0, 10.0, 100.0]


def test_reference_file(tmp_path):
    f = tmp_path / "ref.json"
    f.write_text(json.dumps({"circular_variance": {"values": [0.2, 0.4, None, 0.6], "source": "test"}}))
    refs = load_references(f)
    assert refs["circular_variance"].has_data and refs["circular_variance"].sample_size == 4
    assert refs["circular_variance"].bins == REFERENCES["circular_variance"].bins
    f.write_text(json.dumps({"new_thing": {"counts": [1, 2]}}))
    with pytest.raises(DataError, match="needs 'bins'"):
        load_references(f)


# ---------------------------------------------------------------------------------------------
# whole probe on hand-built models


def test_gabor_bank_recovers_its_orientations():
    built = [0.0, 30.0, 60.0, 90.0, 120.0, 150.0]
    r = probe_v1(gabor_bank(built), quick=True, stimuli=QUICK, n_boot=50)
    assert r.layer == "output" and len(r.units["channel"]) == len(built)
    assert np.all(r.units["responsive_orientation"] == 1)
    assert np.all(_circ_dist(r.units["preferred_orientation"], built) <= 5), r.units["preferred_orientation"]
    assert np.all(r.units["circular_variance"] < 0.6)
    assert np.all(np.isfinite(r.units["orientation_bandwidth"]))
    assert np.allclose(r.units["peak_sf"], 1.54, rtol=0.35)


def test_dog_unit_is_isotropic_and_surround_suppressed():
    r = probe_v1(dog_unit(), stimuli=QUICK, n_boot=50, contrast=False)
    assert r.units["circular_variance"][0] > 0.9
    assert r.units["surround_suppression_index"][0] > 0.2
    assert np.isfinite(r.units["grating_summation_field"][0])
    assert "contrast" not in r.curves


def test_bad_layer_is_one_clear_line():
    with pytest.raises(ConfigError) as err:
        probe_v1(gabor_bank([0.0]), "conv2", stimuli=QUICK)
    msg = str(err.value)
    assert "\n" not in msg and "conv2" in msg and "conv" in msg
    plain = nn.Sequential(nn.Conv2d(3, 2, 3))
    with pytest.raises(ConfigError, match="commits no module to V1"):
        probe_v1(plain, stimuli=QUICK)
    with pytest.raises(ConfigError, match="time step"):
        probe_v1(gabor_bank([0.0]), time_step=3, stimuli=QUICK)
    for bad in ({"visual_degrees": 0.0}, {"visual_degrees": float("nan")}, {"batch_size": 0}, {"image_size": 0}):
        with pytest.raises(ConfigError, match="must be a positive number"):
            probe_v1(gabor_bank([0.0]), stimuli=QUICK, **bad)


def test_units_behind_a_polar_transform_are_the_ones_looking_at_the_centre():
    """Cortical magnification maps rows to eccentricity: the middle of layer1 does not look at fixation,
    so the probe picks the position whose receptive field does (docs/reference/ecosystem.md 7.2: RF within 0.15 deg)."""
    from ventralkit import create_model
    from ventralkit.analysis.v1_probe.responses import prepare_layer, receptive_field_centers

    torch.manual_seed(0)
    model = create_model("v1_resnet50_cortical_magnification", num_classes=10)
    info = model.info
    lp = prepare_layer(model, "4", info.input_size, info.mean, info.std)
    assert lp.center[0] == 0  # the innermost eccentricity ring
    assert lp.rf_offset_px * 8 / info.input_size < 0.15
    middle = receptive_field_centers(model, lp, [(8, 8)], info.input_size, info.mean, info.std)[0]
    assert np.hypot(*(middle - (info.input_size - 1) / 2)) * 8 / info.input_size > 1.0  # the middle is > 1 deg off


class Recurrent(nn.Module):
    """One module called three times per forward pass (a recurrent area)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 5, padding=2)
        self.output = nn.Identity()
        self.info = SimpleNamespace(name="recurrent", input_size=16, mean=(0.5,) * 3, std=(0.5,) * 3,
                                    areas={"V1": "output"}, time_steps={"V1": 3})

    def forward(self, x):
        drive = self.conv(x)
        h = torch.zeros_like(drive)
        for _ in range(3):
            h = self.output(torch.relu(drive + 0.8 * h))
        return h


TINY = StimulusConfig(visual_degrees=4.0, orientations=(0.0, 45.0, 90.0, 135.0), phases=(0.0, 180.0),
                      orientation_sfs=(1.54,), orientation_cycles=(3.0,), spatial_frequencies=(0.5, 1.0, 2.0, 4.0),
                      sf_orientations=(0.0, 90.0), sf_radii=(1.5,), radii=(0.25, 0.5, 1.0, 2.0), size_sfs=(1.54,),
                      size_orientations=(0.0, 90.0), contrasts=(0.25, 1.0), contrast_phases=(0.0, 180.0))


def test_time_steps_and_positions_of_a_recurrent_module():
    model = Recurrent()
    assert area_commitments(model)["V1"].time_steps == (0, 1, 2)
    first = probe_v1(model, time_step=0, stimuli=TINY, n_boot=20)
    last = probe_v1(model, stimuli=TINY, n_boot=20, positions=3)
    assert (first.time_step, first.n_time_steps, last.time_step) == (0, 3, 2)
    assert len(first.units["channel"]) == 4 and len(last.units["channel"]) == 4 * 9
    assert sorted(set(last.units["row"])) == [7, 8, 9]
    # 16 px over 4 deg: Nyquist 2 cycles/deg, so of the SFs 0.5, 1, 2, 4 only 0.5 and 1 are drawn
    assert first.n_images == {"orientation": 8, "spatial_frequency": 8, "size": 16, "blank": 1,
                              "contrast": first.n_images["contrast"]}
    centre = (last.units["row"] == 8) & (last.units["col"] == 8)
    assert not np.allclose(first.curves["orientation"], last.curves["orientation"][centre])


def test_area_commitments_of_registered_models():
    c = area_commitments("cornet_s")
    assert c["V1"] == ("V1.output", (0,))
    assert c["V4"].module == "V4.output" and c["V4"].time_steps == (0, 1, 2, 3)
    assert brainscore_layers(c)["IT"] == ["IT.output-t0", "IT.output-t1"]
    assert area_commitments(nn.Linear(2, 2)) == {}


# ---------------------------------------------------------------------------------------------
# CLI


def test_cli_cornet_z_writes_csv_summary_figures_and_compares(cli, tmp_path):
    out = tmp_path / "z"
    with pytest.warns(UserWarning, match=r"Nyquist") as caught:  # printed as one 'warning: ...' line by the CLI
        code, stdout, stderr = cli("v1-probe", "--model", "Z", "--random_init", "--imsize", "64", "--quick",
                                   "--n_boot", "50", "--device", "cpu", "-o", out)
    assert code == 0, stderr
    assert "circular_variance" in stdout and "mean score" in stdout
    for f in ("units.csv", "summary.csv", "summary.txt", "run.json", "curves.npz",
              "figures/tuning_curves.png", "figures/property_histograms.png"):
        assert (out / f).is_file(), f
    meta = json.loads((out / "run.json").read_text())
    assert meta["layer"] == "V1.output" and meta["n_units"] == 64 and meta["image_size"] == 64
    # 64 px over 8 deg: 8 px/deg, Nyquist 4 cycles/deg; the quick grid's 4.36 ... 12.3 cpd are left out (one line)
    assert meta["spatial_frequency_limit"]["nyquist_cpd"] == 4.0
    warned = [str(w.message) for w in caught if "Nyquist" in str(w.message)]
    assert len(warned) == 1 and "\n" not in warned[0]
    assert "below 4 cycles/deg" in warned[0] and "4.36-12.3 cycles/deg" in warned[0]
    header = (out / "units.csv").read_text().splitlines()[0].split(",")
    assert {"channel", "preferred_orientation", "circular_variance", "peak_sf", "surround_suppression_index",
            "c50"} <= set(header)
    code, stdout, stderr = cli("v1-probe", "--compare", out, out, "-o", tmp_path / "cmp")
    assert code == 0, stderr
    # runs without --label are named by their folder (the default label is only the model's name)
    assert "z (2)" in stdout and "cornet_z (2)" not in stdout and (tmp_path / "cmp" / "comparison.csv").is_file()
    code, _, stderr = cli("v1-probe", "--model", "Z", "--random_init", "--layer", "V9.output", "--imsize", "64", "-o", tmp_path / "bad")
    assert code == 2 and "no layer 'V9.output'" in stderr and len(stderr.strip().splitlines()) == 1


def test_gratings_beyond_nyquist_are_removed_not_aliased():
    """64 px over 8 deg = 8 px/deg: 4 cpd is 0.5 cycles/pixel; a 10.37 cpd grating would alias to ~2.4 cpd."""
    from ventralkit.analysis.v1_probe.stimuli import grating_luminance

    params = {"orientation": np.array([0.0, 0.0, 45.0]), "sf": np.array([3.5, 10.37, 5.0]),
              "phase": np.zeros(3), "contrast": np.ones(3), "radius": np.full(3, np.inf)}
    lum = grating_luminance(params, 64, 8.0)
    assert lum[0].std() > 0.1  # below the limit: drawn (attenuated by pixel averaging only)
    assert torch.allclose(lum[1], torch.full_like(lum[1], 0.5))  # beyond it: grey, no alias
    assert lum[2].std() > 0.05  # oblique 5 cpd: 0.44 cycles/pixel along x and y, representable


def test_schiller_properties_use_the_raw_f0_curve():
    """Brain-Score's Schiller1976 benchmarks read the phase-averaged F0 curve at the largest-F0 condition,
    while peak SF (De Valois 1982) follows the stronger of F0 - baseline and F1: a simple-cell-like unit
    whose modulated (F1) response peaks at another SF than its mean gets the two from different curves."""
    s = S.benchmark_sets(QUICK)["spatial_frequency"]
    radii, sfs, oris, phases = (len(s.axis_values(k)) for k in ("radius", "sf", "orientation", "phase"))
    sf = np.asarray(s.axis_values("sf"))
    bump = lambda centre: np.exp(-((np.log2(sf) - np.log2(centre)) ** 2) / (2 * 0.5 ** 2))  # noqa: E731
    ph = np.deg2rad(np.asarray(s.axis_values("phase")))
    # F0 = 10 + 10 bump(1 cpd); F1 = 60 bump(4 cpd): F1 is the preferred component
    rate = (10 + 10 * bump(1.0))[:, None] + 30 * bump(4.0)[:, None] * np.cos(ph)[None, :]
    rates = {"spatial_frequency": np.broadcast_to(rate[None, None, :, None, :],
                                                  (1, radii, sfs, oris, phases)).copy()}
    cols, _ = P.compute_properties(rates, {"spatial_frequency": s}, np.array([1.0]))
    assert cols["peak_sf"][0] == pytest.approx(4.0, rel=0.15)  # from F1
    raw = P.spatial_frequency_tuning(10 + 10 * bump(1.0), sf)  # the raw F0 curve, baseline kept
    assert cols["sf_bandwidth_ratio"][0] == pytest.approx(raw["sf_bandwidth_ratio"])
    assert cols["responsive_spatial_frequency_f0"][0] == 1.0  # max F0 20 > baseline 1 + 5


def test_cli_silent_layer_is_explained_and_json_stays_valid(cli, tmp_path):
    """CORnet-RT's V2 gets no input at time step 0 (it is one area behind V1), so all its units are silent."""
    out = tmp_path / "rt"
    code, stdout, stderr = cli("v1-probe", "--model", "RT", "--random_init", "--layer", "V2.output", "--time_step",
                               "0", "--imsize", "64", "--quick", "--n_boot", "20", "--no_contrast", "--no_figures",
                               "--device", "cpu", "-o", out)
    assert code == 0, stderr
    assert "silent" in stdout and "--time_step" in stdout
    meta = json.loads((out / "run.json").read_text())  # strict JSON: NaN would not parse with this hook
    json.loads((out / "run.json").read_text(), parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))
    assert meta["mean_score"] is None and "silent" in meta["note"]
    assert meta["weights"]["weights"] == "random"


def test_probe_records_checkpoint_metadata(cli, tmp_path):
    """A ventralkit checkpoint supplies the class count (no --num_classes) and run.json names the file."""
    import ventralkit as vk
    from ventralkit.engine.checkpoint import save_atomic

    model = vk.create_model("cornet_z", num_classes=10)
    ckpt = tmp_path / "run.pt"
    save_atomic({"format": "ventralkit", "model_name": "cornet_z", "num_classes": 10, "classes": list("0123456789"),
                 "config": {"image_size": 32, "model_kwargs": {}}, "model": model.state_dict()}, ckpt)
    out = tmp_path / "z"
    code, _, stderr = cli("v1-probe", "--ckpt_path", ckpt, "--quick", "--n_boot", "20", "--no_contrast",
                          "--no_figures", "--device", "cpu", "-o", out)
    assert code == 0, stderr
    meta = json.loads((out / "run.json").read_text())
    assert meta["weights"]["weights_file"] == str(ckpt) and meta["image_size"] == 32 and meta["model"] == "cornet_z"


# ---------------------------------------------------------------------------------------------
# issue 21: frequencies beyond the input's resolution, censored contrast fits


def _drawn_frequencies(monkeypatch) -> list:
    """Spy on the renderer: the spatial frequency of every grating (contrast > 0) the probe draws."""
    drawn: list = []
    real = S.render_gratings

    def spy(params, *args, **kwargs):
        contrast = np.asarray(params["contrast"], float)
        if "sf" in params:  # the grey screen has none
            drawn.extend(np.asarray(params["sf"], float)[contrast > 0].tolist())
        return real(params, *args, **kwargs)

    monkeypatch.setattr(S, "render_gratings", spy)
    return drawn


def test_a_32px_model_is_never_shown_gratings_at_or_above_its_nyquist_frequency(monkeypatch, tmp_path):
    """32 px over 8 deg = 4 px/deg resolves gratings below 2 cycles/deg; the full grid goes to 14.7, whose
    tuning curves would run on into grey images (or aliases) and measure the pixel grid, not the model."""
    drawn = _drawn_frequencies(monkeypatch)
    model = gabor_bank([0.0, 90.0], sf=0.77)  # info.input_size = 32
    cfg = StimulusConfig.quick(visual_degrees=8.0)
    with pytest.warns(UserWarning, match=r"4 px/deg.*only below 2 cycles/deg") as caught:
        r = probe_v1(model, stimuli=cfg, n_boot=20, output_dir=tmp_path / "run", figures=False)
    assert len([w for w in caught if "Nyquist" in str(w.message)]) == 1
    assert drawn and max(drawn) < 2.0
    below = [f for f in cfg.spatial_frequencies if f < 2.0]
    assert sorted(set(drawn) & set(cfg.spatial_frequencies)) == below  # everything below the limit is still drawn
    assert r.curves["sf_axis"].tolist() == below
    limit = json.loads((tmp_path / "run" / "run.json").read_text())["spatial_frequency_limit"]
    assert (limit["pixels_per_degree"], limit["nyquist_cpd"]) == (4.0, 2.0)
    dropped = limit["dropped_cpd"]
    assert dropped["spatial_frequencies"] == [round(f, 4) for f in cfg.spatial_frequencies if f >= 2.0]
    assert dropped["orientation_sfs"] == [3.0844, 6.1688] and dropped["size_sfs"] == [3.0844]
    assert "only below 2 cycles/deg" in (tmp_path / "run" / "summary.txt").read_text()


def test_the_peak_sf_histogram_shades_the_range_the_input_cannot_show(tmp_path, monkeypatch):
    import ventralkit.plots.v1 as pv

    figs = []
    real = pv.save_figure
    monkeypatch.setattr(pv, "save_figure", lambda fig, path, **kw: (figs.append(fig), real(fig, path, **kw))[1])
    columns = {"peak_sf": np.full(20, 0.5), "preferred_orientation": np.full(20, 10.0)}
    pv.plot_property_histograms(columns, REFERENCES, tmp_path / "h.png", properties=["peak_sf", "preferred_orientation"],
                                sf_limit=2.0)
    sf_ax, ori_ax = figs[-1].axes[:2]
    assert any("Nyquist, 2 cpd" in t.get_text() for t in sf_ax.texts)
    assert not any("Nyquist" in t.get_text() for t in ori_ax.texts)  # not a spatial frequency


def test_a_grating_exactly_at_nyquist_is_grey_at_every_phase():
    """At 0.5 cycles/pixel the pixel centres sample a sine at its zeros for one phase and at its peaks for
    another: the contrast would depend on the phase, so the limit is strict."""
    for phase in (0.0, 45.0, 90.0):
        img = grating(0, 2.0, phase=phase, image_size=32, visual_degrees=8)  # 4 px/deg: 2 cpd = 0.5 cycles/px
        assert np.allclose(img, 0.5), phase
    assert grating(0, 1.9, image_size=32, visual_degrees=8).std() > 0.1  # just below: drawn


def test_an_input_too_coarse_for_a_whole_set_is_refused_with_advice_that_works():
    cfg = StimulusConfig.quick(visual_degrees=8.0)  # the quick size set's lowest SF is 1.54 cpd
    with pytest.raises(ConfigError) as err:
        S.limit_to_resolution(cfg, 16)  # 2 px/deg: Nyquist 1 cpd
    msg = str(err.value)
    assert "\n" not in msg and "size set" in msg
    import re

    size = int(re.search(r"--imsize (\d+) or more", msg).group(1))
    degrees = float(re.search(r"--visual_degrees ([\d.]+) or less", msg).group(1))
    S.limit_to_resolution(cfg, size)  # following either piece of advice works
    S.limit_to_resolution(cfg.with_options(visual_degrees=degrees), 16)
    with pytest.raises(ConfigError):
        S.limit_to_resolution(cfg, size - 1)  # and it is the smallest size that does


def _contrast_units(curves: np.ndarray, contrasts) -> tuple[dict, dict]:
    """``compute_properties`` on contrast responses only: one condition per unit, responses equal over phase."""
    cfg = StimulusConfig(contrasts=tuple(contrasts), contrast_phases=(0.0, 180.0))
    n = len(curves)
    cset = S.contrast_set([{"orientation": 0.0, "sf": 1.0, "radius": 1.0}] * n, cfg)
    rates = np.repeat(np.asarray(curves, float)[:, None, :, None], n, axis=1).repeat(2, axis=-1)
    baseline = np.asarray(curves, float)[:, 0] * 0 + 1.0
    cols, curves_out = P.compute_properties({"contrast": rates}, {"contrast": cset, "contrast_index": np.arange(n)},
                                            baseline)
    cols["responsive_orientation"] = np.ones(n)
    return cols, curves_out


def test_a_unit_that_does_not_saturate_has_no_c50_and_stays_out_of_the_median():
    """The Naka-Rushton fit of a response that never bends over runs to the end of its c50 grid (2.0); that code
    is not a semi-saturation contrast, so it must be absent, counted, and left out of the median."""
    c = np.array(S.CONTRASTS)  # 0.02 ... 1
    saturating = [1 + 40 * c ** 2 / (c ** 2 + c50 ** 2) for c50 in (0.1, 0.2, 0.3)]
    not_saturating = [1 + 30 * c, 1 + 30 * c ** 2]  # linear and expansive up to full contrast
    cols, _ = _contrast_units(np.array(saturating + not_saturating), c)
    fitted = cols["c50"][:3]
    assert fitted == pytest.approx([0.1, 0.2, 0.3], rel=0.1)
    assert np.isnan(cols["c50"][3:]).all() and cols["c50_above_range"].tolist() == [0, 0, 0, 1, 1]
    assert np.isnan(cols["contrast_exponent"][3:]).all() and np.isnan(cols["contrast_rmax"][3:]).all()
    rows, _ = cmp.summarize(cols, n_boot=10)
    row = {r["property"]: r for r in rows}
    by_hand = sorted(fitted)[1]  # the median of the three saturating units' c50
    assert row["c50"]["median"] == pytest.approx(by_hand)
    assert (row["c50"]["n_units"], row["c50"]["n_defined"], row["c50"]["n_censored"]) == (5, 3, 2)
    assert row["c50_above_range"]["median"] == pytest.approx(2 / 5)  # the fraction of censored units
    text = cmp.summary_table(rows)
    assert "c50 2 of 5" in text and "censored" in text
    from ventralkit.plots.v1 import c50_title

    assert c50_title(cols, 3, c) == "c50 > 1 (no saturation)" and c50_title(cols, 1, c).startswith("c50 0.2")


def test_a_unit_past_half_saturation_at_the_lowest_contrast_has_no_c50():
    c = np.array([0.1, 0.2, 0.4, 1.0])
    cols, _ = _contrast_units(np.array([1 + 40 * c ** 2 / (c ** 2 + 0.02 ** 2)]), c)
    assert np.isnan(cols["c50"][0]) and cols["c50_below_range"][0] == 1 and cols["c50_above_range"][0] == 0
    from ventralkit.plots.v1 import c50_title

    assert c50_title(cols, 0, c) == "c50 < 0.1"
