"""In-silico V1 electrophysiology: grating experiments on any model layer.

``probe_v1(model_or_name, layer=None, ...)`` shows the Marques et al. (2021) grating sets
(orientation, spatial frequency, size; plus a contrast series) to a model, records the units at the
centre of the visual field of one layer (default: the module the model commits to V1), converts
activations to firing rates, computes each unit's tuning properties and scores their distributions
against monkey V1 data. With ``output_dir`` it writes ``units.csv``, ``summary.csv``,
``summary.txt``, ``run.json``, ``curves.npz`` and figures. See ``docs/v1_probe.md``.

Sub-modules: ``stimuli`` (gratings and stimulus sets), ``responses`` (recording, area commitments,
firing-rate map), ``properties`` (per-unit measures), ``compare`` (references, KS scores, run tables).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch.nn as nn

from ...engine.inference import InferenceRunner, model_device, placed
from ...errors import ConfigError
from ...files import write_csv, write_json, write_text
from ...models.commitments import AreaCommitment, area_commitments, brainscore_layers
from .compare import (
    REFERENCES,
    Reference,
    RunSummary,
    comparison_table,
    load_references,
    load_run,
    summarize,
    summary_table,
    write_comparison_csv,
    write_summary_csv,
)
from .properties import PROPERTY_INFO, RESPONSIVE_COLUMNS, compute_properties
from .responses import (
    FiringRateMap,
    prepare_layer,
    record_units,
    resolve_layer,
)
from .stimuli import (
    StimulusConfig,
    StimulusSet,
    benchmark_sets,
    contrast_set,
    grating,
    limit_to_resolution,
    render_gratings,
)

__all__ = [
    "AreaCommitment",
    "FiringRateMap",
    "REFERENCES",
    "Reference",
    "StimulusConfig",
    "V1ProbeResult",
    "area_commitments",
    "brainscore_layers",
    "compare_runs",
    "grating",
    "load_references",
    "probe_v1",
    "render_gratings",
]


@dataclass
class V1ProbeResult:
    """Everything one probe run produced. ``units`` holds one array per CSV column (one entry per unit)."""

    label: str
    model: str
    layer: str
    time_step: int
    n_time_steps: int
    image_size: int
    visual_degrees: float
    units: dict[str, np.ndarray]
    summary: list[dict]
    mean_score: float
    curves: dict
    firing_rate_map: FiringRateMap
    n_images: dict[str, int]
    seconds: float = 0.0
    rf_center: tuple[int, int] | None = None  # map position recorded (row, col); None for flat outputs
    rf_offset_deg: float = float("nan")  # its receptive field's distance from the stimulus centre
    weights: dict = field(default_factory=dict)  # where the weights came from (LoadedModel.describe())
    note: str | None = None  # why the table is empty, when every unit is silent
    sf_limit: dict = field(default_factory=dict)  # the input's Nyquist limit and the frequencies left out
    sf_note: str | None = None  # the one line saying which frequencies were left out (None: none)
    output_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)

    def table(self) -> str:
        """The printed summary table."""
        head = (f"{self.label}: layer {self.layer} (time step {self.time_step} of {self.n_time_steps}), "
                f"{len(self.units['channel'])} units, {sum(self.n_images.values())} images")
        table = summary_table(self.summary, self.mean_score, title=head)
        return f"{table}\nnote: {self.note}" if self.note else table

    def to_run_summary(self) -> RunSummary:
        return RunSummary(self.label, self.summary, self.mean_score, self.meta())

    def meta(self) -> dict:
        from ...version import __version__

        return {
            "label": self.label, "model": self.model, "layer": self.layer, "time_step": self.time_step,
            "n_time_steps": self.n_time_steps, "image_size": self.image_size,
            "visual_degrees": self.visual_degrees, "n_units": int(len(self.units["channel"])),
            "n_responsive": {k: int(np.nansum(self.units[k])) for k in RESPONSIVE_COLUMNS if k in self.units},
            "n_images": self.n_images,
            "mean_score": float(self.mean_score) if np.isfinite(self.mean_score) else None,
            "weights": self.weights, "note": self.note, "spatial_frequency_limit": self.sf_limit,
            "firing_rate_map": {"slope": self.firing_rate_map.slope, "offset": self.firing_rate_map.offset},
            "rf_center": list(self.rf_center) if self.rf_center is not None else None,
            "rf_offset_deg": round(float(self.rf_offset_deg), 4) if np.isfinite(self.rf_offset_deg) else None,
            "seconds": round(self.seconds, 2), "ventralkit": __version__,
        }

    def save(self, output_dir, figures: bool = True, references: dict | None = None, n_examples: int = 6) -> dict:
        """Write the CSVs, the summary text, ``run.json``, ``curves.npz`` and (optionally) figures."""
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        files = {"units": _write_units_csv(self.units, out / "units.csv"),
                 "summary": write_summary_csv(self.summary, out / "summary.csv")}
        limit = f"note: {self.sf_note}\n" if self.sf_note else ""
        files["summary_txt"] = write_text(out / "summary.txt", self.table() + "\n" + limit)
        files["run"] = write_json(out / "run.json", self.meta(), default=_json_default)
        arrays = {k: np.asarray(v) for k, v in self.curves.items() if k != "preferred_condition"}
        np.savez_compressed(out / "curves.npz", **arrays)
        files["curves"] = out / "curves.npz"
        if figures:
            from ...plots.v1 import example_units, plot_property_histograms, plot_tuning_curves

            title = f"{self.label} {self.layer}"
            files["tuning_curves"] = plot_tuning_curves(
                self.curves, self.units, out / "figures" / "tuning_curves.png",
                units=example_units(self.units, n_examples), title=title)
            refs = REFERENCES if references is None else references
            masks = _property_masks(self.units)
            with_data = [p for p in refs if p in self.units and refs[p].has_data]
            others = [p for p in refs if p in self.units and not refs[p].has_data]
            files["histograms"] = plot_property_histograms(
                self.units, refs, out / "figures" / "property_histograms.png", properties=with_data, masks=masks,
                title=f"{title}: model vs monkey V1", summary_rows=self.summary,
                sf_limit=self.sf_limit.get("nyquist_cpd"))
            if others:
                files["histograms_no_reference"] = plot_property_histograms(
                    self.units, refs, out / "figures" / "property_histograms_no_reference.png", properties=others,
                    masks=masks, title=f"{title}: properties without bundled reference data",
                    sf_limit=self.sf_limit.get("nyquist_cpd"))
        self.output_dir, self.files = out, files
        return files


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o))


def _property_masks(units: dict) -> dict:
    from .compare import responsive_flag

    masks = {}
    for prop, (stim_set, _d) in PROPERTY_INFO.items():
        flag = responsive_flag(prop, stim_set)
        if prop in units and flag in units:
            masks[prop] = np.asarray(units[flag]) > 0
    return masks


def _write_units_csv(units: dict, path: Path) -> Path:
    keys = ["unit", "channel", "row", "col", *RESPONSIVE_COLUMNS, *PROPERTY_INFO]
    keys = [k for k in keys if k in units]
    n = len(units["channel"])
    return write_csv(path, [keys, *([_cell(units[k][i]) for k in keys] for i in range(n))])


def _cell(x):
    if isinstance(x, (np.integer, int)):
        return int(x)
    x = float(x)
    return "" if not np.isfinite(x) else (int(x) if x.is_integer() and abs(x) < 1e15 else f"{x:.6g}")


def _build(model_or_name, checkpoint, pretrained, model_kwargs) -> tuple[nn.Module, dict]:
    """The model (through the one loader for a name) and a record of the weights it carries."""
    if isinstance(model_or_name, nn.Module):
        if checkpoint:
            from ...models.loading import model_state
            from ...models.weights import load_weights, read_checkpoint

            name = getattr(getattr(model_or_name, "info", None), "name", None)
            ckpt = read_checkpoint(checkpoint)
            load_weights(model_or_name, model_state(name, ckpt) if name else ckpt)
            return model_or_name, {"weights": "checkpoint", "weights_file": str(checkpoint)}
        return model_or_name, {"weights": "given module"}
    from ...models.loading import load_model

    loaded = load_model(model_or_name, checkpoint=checkpoint, pretrained=pretrained, model_kwargs=model_kwargs)
    return loaded.model, loaded.describe()


def probe_v1(
    model_or_name, layer: str | None = None, *,
    checkpoint: str | None = None, pretrained: bool = False, model_kwargs: dict | None = None,
    time_step: int = -1, positions: int = 1, quick: bool = False, stimuli: StimulusConfig | None = None,
    visual_degrees: float | None = None, image_size: int | None = None, mean=None, std=None,
    contrast: bool = True, batch_size: int | None = None, device=None,
    references: dict | str | Path | None = None, n_boot: int = 1000, seed: int = 0,
    output_dir=None, figures: bool = True, n_examples: int = 6, label: str | None = None,
    progress: bool = False, weights: dict | None = None,
) -> V1ProbeResult:
    """Run the in-silico V1 experiments on one layer of a model and score it against monkey V1.

    Args:
        model_or_name: a registered name (CORnet letters accepted) or an ``nn.Module``. A module
            without ``info`` is probed with ImageNet normalisation at 224 px unless ``image_size`` /
            ``mean`` / ``std`` are given.
        layer: module name (``"V1.output"``, ``"layer1"``) or brain-area name (``"V1"``); default the
            model's V1 commitment (``model.info.areas["V1"]``).
        checkpoint / pretrained / model_kwargs: passed to ``create_model`` (a name) or, for a module,
            ``checkpoint`` is loaded into it.
        time_step: which call of a recurrent module to record (0 first, -1 last, the default).
        positions: record the central ``positions x positions`` window of the map (1: the centre).
        quick: about 1/6 of the stimuli (``StimulusConfig.quick``); ``stimuli`` gives a custom grid.
        visual_degrees: the field of view of the input image (default 8, Brain-Score's).
        contrast: also measure contrast response functions (an extra, unit-specific set).
        batch_size: images per forward pass (default 16 on CPU, where large batches only add
            allocation overhead, 128 on a GPU).
        device: where to run (default: where the model's parameters are; a name's model is built on CPU
            and moved here; a given module is moved there for the probe and back after it).
        references: built-in monkey references, a dict of ``Reference``, or a JSON file that adds data
            (see ``compare.load_references``).
        n_boot / seed: bootstrap draws and seed of the KS scores.
        output_dir: if given, write CSVs, summary, ``run.json``, curves and (``figures``) PNGs there.
        progress: show a progress bar over the images.
        weights: what to record in ``run.json`` about the weights (``LoadedModel.describe()``); for a
            name it is filled in by the loader.

    Returns a ``V1ProbeResult``; ``result.table()`` is the printed summary.
    """
    t0 = time.perf_counter()
    model, built_weights = _build(model_or_name, checkpoint, pretrained, model_kwargs)
    for flag, value in (("image_size", image_size), ("batch_size", batch_size), ("visual_degrees", visual_degrees)):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise ConfigError(f"--{flag} must be a positive number, got {value}")
    image_size, mean, std = _input_of(model, image_size, mean, std)
    cfg, sf_limit = _stimulus_grid(stimuli, quick, visual_degrees, image_size)
    vd = cfg.visual_degrees
    refs = REFERENCES if references is None else (
        load_references(references) if isinstance(references, (str, Path)) else references)
    with placed(model, device):  # every pass of the probe on one device; the model goes back after
        if batch_size is None:  # on the CPU large batches only add allocation overhead
            batch_size = 16 if model_device(model).type == "cpu" else 128
        layer = resolve_layer(model, layer)
        lp = prepare_layer(model, layer, image_size, mean, std, time_step=time_step, positions=positions)
        rf_offset_deg = _warn_about_geometry(lp, vd, image_size, sf_limit.message())
        sets = benchmark_sets(cfg)
        rec = _record_rates(model, lp, sets, cfg, image_size, mean, std, batch_size, contrast, progress)
        columns, curves = compute_properties(rec.rates, rec.set_info, rec.baseline)
        units = {"unit": np.arange(len(rec.baseline)), **lp.unit_coords(), **columns}
        summary, mean_score = summarize(units, refs, n_boot=n_boot, seed=seed)
        note = None
        if not any(np.nansum(units[k]) for k in RESPONSIVE_COLUMNS if k in units):
            note = silent_layer_note(model, lp, layer, image_size, vd, mean, std, sets["orientation"])
            warnings.warn(note, stacklevel=2)
    name = getattr(getattr(model, "info", None), "name", None) or type(model).__name__
    result = V1ProbeResult(
        label=label or name, model=name, layer=layer, time_step=lp.call_index, n_time_steps=lp.n_calls,
        image_size=image_size, visual_degrees=vd, units=units, summary=summary, mean_score=mean_score,
        curves=curves, firing_rate_map=rec.fmap, n_images=rec.n_images, seconds=time.perf_counter() - t0,
        rf_center=lp.center, rf_offset_deg=rf_offset_deg, weights=dict(weights or built_weights), note=note,
        sf_limit=sf_limit.record(), sf_note=sf_limit.message())
    if output_dir is not None:
        result.save(output_dir, figures=figures, references=refs, n_examples=n_examples)
    return result


def _input_of(model: nn.Module, image_size, mean, std) -> tuple[int, tuple, tuple]:
    """Input size and normalisation: the flags, else the model's preprocessing (the loader's: the size it was
    trained at; else its metadata), else ImageNet's at 224 px."""
    from ...models.preprocessing import preprocessing_of
    from ...models.registry import IMAGENET_MEAN, IMAGENET_STD

    pre = preprocessing_of(model)
    return (int(image_size or (pre.image_size if pre is not None else 224)),
            tuple(mean or (pre.mean if pre is not None else IMAGENET_MEAN)),
            tuple(std or (pre.std if pre is not None else IMAGENET_STD)))


def _stimulus_grid(stimuli, quick: bool, visual_degrees, image_size: int):
    """The stimulus grid (``stimuli``, else the full or quick one) with its field of view, cut to what the
    input can show: gratings at or above its Nyquist frequency would measure the pixel grid, not the model."""
    cfg = stimuli or (StimulusConfig.quick() if quick else StimulusConfig())
    if visual_degrees is not None:
        cfg = cfg.with_options(visual_degrees=float(visual_degrees))
    return limit_to_resolution(cfg, image_size)


def _warn_about_geometry(lp, vd: float, image_size: int, sf_note: str | None) -> float:
    """Warn when the recorded units look away from the stimulus centre or gratings were removed; the offset (deg)."""
    rf_offset_deg = lp.rf_offset_px * vd / image_size
    cell_deg = vd / min(lp.out_shape[1:]) if len(lp.out_shape) == 3 else 0.0  # no position can do better
    if np.isfinite(rf_offset_deg) and rf_offset_deg > max(0.15, cell_deg):
        warnings.warn(f"the receptive field of the recorded {lp.layer} units is {rf_offset_deg:.2f} deg from the "
                      "stimulus centre (Brain-Score keeps units within 0.15 deg); small gratings may miss it",
                      stacklevel=3)
    if sf_note:
        warnings.warn(sf_note, stacklevel=3)
    return rf_offset_deg


@dataclass
class _Rates:
    """Firing rates of the probe's units to every stimulus set, with what they were measured on."""

    rates: dict  # set name -> rates (units, *set shape)
    baseline: np.ndarray  # rate to the blank (grey) screen, per unit
    fmap: FiringRateMap
    set_info: dict  # set name -> StimulusSet (plus "contrast_index": each unit's contrast series)
    n_images: dict


def _record_rates(model, lp, sets: dict, cfg, image_size: int, mean, std, batch_size: int, contrast: bool,
                  progress: bool) -> _Rates:
    """Responses to the blank and every set, the firing-rate map fitted on them (rectified orientation-set
    peaks and the blank), and the contrast series at each unit's preferred grating when asked for."""
    from ...engine.progress import progress_bar

    vd = cfg.visual_degrees
    total = 1 + sum(len(s) for s in sets.values())
    bar = progress_bar(total=total, desc=f"v1-probe {lp.layer}", enabled=progress, unit="img")
    try:
        blank = StimulusSet("blank", [], defaults={"orientation": 0.0, "sf": 1.0, "contrast": 0.0,
                                                   "radius": float("inf"), "phase": 0.0, "x": 0.0, "y": 0.0})
        raw_blank = record_units(model, lp, blank, image_size, vd, mean, std, batch_size, bar)[:, 0]
        raw = {name: record_units(model, lp, s, image_size, vd, mean, std, batch_size, bar).reshape(-1, *s.shape)
               for name, s in sets.items()}
        ori_f0 = np.maximum(raw["orientation"], 0).mean(axis=-1)
        fmap = FiringRateMap.fit(np.maximum(raw_blank, 0), ori_f0.reshape(ori_f0.shape[0], -1).max(axis=1))
        out = _Rates({k: fmap(v) for k, v in raw.items()}, fmap(raw_blank), fmap, dict(sets),
                     {**{name: len(s) for name, s in sets.items()}, "blank": 1})
        if contrast and len(cfg.contrasts) >= 2:
            cset, unit_idx = _contrast_series(out.rates, sets, cfg)
            bar.total = total + len(cset)
            bar.refresh()
            rc = record_units(model, lp, cset, image_size, vd, mean, std, batch_size, bar)
            out.rates["contrast"] = fmap(rc.reshape(-1, *cset.shape))
            out.set_info.update({"contrast": cset, "contrast_index": unit_idx.reshape(-1)})
            out.n_images["contrast"] = len(cset)
    finally:
        bar.close()
    return out


def _contrast_series(rates: dict, sets: dict, cfg) -> tuple[StimulusSet, np.ndarray]:
    """One contrast series per distinct preferred grating (orientation x condition of the orientation set, by
    mean response), and each unit's index into them."""
    dc = rates["orientation"].mean(axis=-1)  # (units, condition, orientation)
    flat = dc.reshape(dc.shape[0], -1).argmax(axis=1)
    pairs, unit_idx = np.unique(flat, return_inverse=True)
    conds = sets["orientation"].axes[0][1]
    ori = sets["orientation"].axis_values("orientation")
    n_ori = len(ori)
    conditions = [{"orientation": ori[p % n_ori], "sf": conds[p // n_ori]["sf"],
                   "radius": conds[p // n_ori]["radius"]} for p in pairs]
    return contrast_set(conditions, cfg), unit_idx


def silent_layer_note(model, lp, layer: str, image_size: int, vd: float, mean, std, stimuli) -> str:
    """Why every unit is silent, and the time steps of ``layer`` where the same units do respond."""
    with InferenceRunner(model, channels_last=lp.channels_last) as runner, runner.record([layer]) as store:
        runner.forward(runner.prepare(next(stimuli.render(image_size, vd, mean, std, batch_size=16,
                                                          device=runner.device))))
    live = [k for k, a in enumerate(store[layer]) if k != lp.call_index and float(a.abs().amax()) > 0]
    hint = (f"time step {', '.join(map(str, live))} of this layer responds: pass --time_step {live[0]}" if live
            else "no time step of this layer responds to gratings: try another layer or trained weights")
    return (f"every unit of {layer} at time step {lp.call_index} is silent (no response to any grating), so no "
            f"property can be measured; {hint}")


def compare_runs(runs, output_dir=None, figures: bool = True) -> str:
    """A side-by-side table of several probe runs (output folders or ``V1ProbeResult``s).

    With ``output_dir``, writes ``comparison.csv``, ``comparison.txt`` and ``figures/comparison.png``.
    Returns the printable table.
    """
    summaries = [r.to_run_summary() if isinstance(r, V1ProbeResult) else load_run(r) for r in runs]
    text = comparison_table(summaries)
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_comparison_csv(summaries, out / "comparison.csv")
        write_text(out / "comparison.txt", text + "\n")
        if figures:
            from ...plots.v1 import plot_comparison
            from .compare import comparison

            header, rows = comparison(summaries, "score")
            plot_comparison(header, rows, out / "figures" / "comparison.png")
    return text

