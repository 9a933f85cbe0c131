"""Does V4 -> V1 feedback help? CORnet-S100's ``outer_times`` x feedback designs, trained and compared.

``run_feedback_study(output, ...)`` trains every (design, outer_times, seed) with the ordinary engine
(``engine.train.train``), each in ``output/runs/<design>-o<k>-s<seed>``; ``outer_times = 1`` is the
feed-forward network (CORnet-S; every design computes the same function there) and is trained once per
seed as ``feedforward-o1-s<seed>``. A finished run is skipped and an interrupted one resumes from its
``checkpoints/last.pt``, so re-running the same command continues a study, and adding seeds or
designs trains only the new runs. The runs train here one after another, or as jobs
(``executor=ExecutorOptions(kind="local"|"slurm")``: ``studies.runner``); a finished run writes its record
(``study_run.json``: the per-pass analysis below) and then keeps only what ``keep`` says (``studies.disk``).
When every run has ended it writes

* ``feedback_study.csv`` / ``.md``: per design and ``outer_times``, the mean and sd over seeds of the
  final-epoch val top-1, and the forward compute per image (multiply-accumulates of every conv and
  linear layer, counted with hooks on one image);
* ``feedback_study.png``: val top-1 against epoch and against training compute;
* ``feedback_inside.csv`` / ``.png`` (``inside=True``): for every trained feedback model, how much
  each pass changes V1's and V4's representation (linear CKA, Kornblith et al. 2019, between
  consecutive passes and with the first) and the val top-1 read out after each pass through the
  model's own IT and decoder.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..errors import ConfigError
from ..files import RunPaths, write_json, write_records, write_text
from .disk import RunDisk, apply_keep, check_keep
from .executor import ExecutorOptions, require_submitit

MODEL = "cornet_s100"
DESIGNS = ("replace", "additive", "gated")
FEEDFORWARD = "feedforward"
#: settings that must not change between two invocations on the same study folder
_FIXED = ("dataset", "epochs", "image_size", "batch_size", "lr", "max_steps_per_epoch")
#: what a setting is when neither the call nor the folder's study.json gives it
STUDY_DEFAULTS = {"dataset": "digits-occluded", "outer_times": (1, 2, 3), "designs": ("gated", "additive", "replace"),
                  "seeds": (0, 1), "epochs": 6, "image_size": 32, "batch_size": 32, "lr": 0.01,
                  "max_steps_per_epoch": None}
#: val images used for the inside analysis (the Gram matrices are n x n)
INSIDE_MAX_IMAGES = 512
#: a finished run's record in its folder: written once the run is trained, before --keep deletes anything
RUN_RECORD = "study_run.json"


@dataclass(frozen=True)
class StudyRun:
    design: str  # "feedforward" for outer_times 1
    outer_times: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.design}-o{self.outer_times}-s{self.seed}"

    @property
    def label(self) -> str:
        return "feed-forward (outer_times 1)" if self.design == FEEDFORWARD else f"{self.design}, outer_times {self.outer_times}"

    def model_kwargs(self) -> dict:
        if self.design == FEEDFORWARD:
            return {"outer_times": 1}
        return {"outer_times": self.outer_times, "feedback": self.design}


def study_runs(outer_times, designs, seeds) -> list[StudyRun]:
    """The grid in training order: by outer_times, then design (as given), then seed."""
    runs = []
    for k in sorted(set(outer_times)):
        for d in ((FEEDFORWARD,) if k == 1 else tuple(dict.fromkeys(designs))):
            runs.extend(StudyRun(d, k, s) for s in dict.fromkeys(seeds))
    return runs


def validate_study(outer_times, designs, seeds, epochs: int, image_size: int, batch_size: int, lr: float,
                   dataset: str, max_steps_per_epoch: int | None = None) -> None:
    """Every option checked before anything is trained or written (one-line ConfigErrors)."""
    if not outer_times or any(int(k) < 1 for k in outer_times):
        raise ConfigError(f"--outer_times must be integers >= 1 (1 = no feedback), got {list(outer_times)}")
    bad = [d for d in designs if d not in DESIGNS]
    if bad or not designs:
        raise ConfigError(f"--designs must be among {', '.join(DESIGNS)}, got {bad[0] if bad else 'none'}")
    if not seeds:
        raise ConfigError("--seeds needs at least one seed")
    for flag, v in (("epochs", epochs), ("image_size", image_size), ("batch_size", batch_size)):
        if int(v) <= 0:
            raise ConfigError(f"--{flag} must be a positive integer, got {v}")
    if max_steps_per_epoch is not None and int(max_steps_per_epoch) <= 0:
        raise ConfigError(f"--max_steps_per_epoch must be a positive integer, got {max_steps_per_epoch}")
    if not lr > 0:
        raise ConfigError(f"--lr must be positive, got {lr}")
    if dataset.partition(":")[0] not in ("digits", "digits-occluded"):
        raise ConfigError(f"--dataset {dataset}: the study trains on the embedded sets, digits or "
                          "digits-occluded[:LEVEL]")


def run_config(run: StudyRun, run_dir: Path, dataset: str, epochs: int, image_size: int, batch_size: int,
               lr: float, workers: int, max_steps_per_epoch: int | None = None):
    from ..engine.config import TrainConfig

    return TrainConfig.build(
        model=MODEL, model_kwargs=run.model_kwargs(), dataset=dataset, image_size=image_size,
        batch_size=batch_size, lr=lr, epochs=epochs, seed=run.seed, workers=workers, output_path=str(run_dir),
        keep_epochs=0, progress=False, log_every=10 ** 9, max_steps_per_epoch=max_steps_per_epoch,
        # pinned, so dataset defaults never change a study: CORnet's schedule (lr / 10 every 10 epochs)
        scheduler="step", step_size=10, warmup_epochs=0.0, momentum=0.9, weight_decay=1e-4,
    ).validate()


def run_state(run_dir: Path) -> str:
    """``"finished"`` (its record, or a ``last.pt`` marked finished), ``"partial"`` (a ``last.pt`` to resume
    from) or ``"new"``."""
    from ..models.weights import read_checkpoint

    if (Path(run_dir) / RUN_RECORD).is_file():
        return "finished"
    last = RunPaths(run_dir).last
    if not last.is_file():
        return "new"
    return "finished" if read_checkpoint(last).get("finished") else "partial"


def read_study(output: Path) -> dict | None:
    """The settings in ``output/study.json`` (its dataset in the canonical spelling), or None without one."""
    from ..data.embedded import canonical_dataset

    path = Path(output) / "study.json"
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: not a readable study file ({err}); move it away to start the study "
                          "anew in this folder") from None
    grid_ok = isinstance(stored, dict) and all(isinstance(stored.get(k, []), list)
                                               for k in ("outer_times", "designs", "seeds"))
    if not grid_ok or not isinstance(stored.get("dataset"), str):
        raise ConfigError(f"{path}: not a study file (no dataset, or a grid that is not lists); move it away "
                          "to start the study anew in this folder")
    stored["dataset"] = canonical_dataset(stored["dataset"])  # written before spellings were made one
    return stored


def resolve_settings(given: dict, stored: dict | None) -> tuple[dict, list[str]]:
    """Each setting as given, else from the folder's study.json, else ``STUDY_DEFAULTS``.

    Returns the settings and the names taken from study.json, so that re-running a study, or
    reporting it, needs none of the flags it was started with.
    """
    settings, from_study = {}, []
    for key, default in STUDY_DEFAULTS.items():
        value = given.get(key)
        if value is None and stored is not None and key in stored:
            value = stored[key]
            from_study.append(key)
        settings[key] = default if value is None and key not in from_study else value
    return settings, from_study


def check_settings(output: Path, settings: dict, stored: dict | None = None) -> None:
    """Refuse to mix two studies with different training settings in one folder (datasets compared in their
    canonical spelling: ``digits-occluded`` is ``digits-occluded:0.5``)."""
    old = read_study(output) if stored is None else stored
    if old is None:
        return
    for key in _FIXED:
        if old.get(key) != settings[key]:
            raise ConfigError(f"--output {output} holds a study with --{key} {old.get(key)} (this one: "
                              f"{settings[key]}); use the same value (or leave the flag out) or another folder")


def forward_macs(model: nn.Module, image_size: int) -> int:
    """Multiply-accumulates of all conv and linear layers for one image (every call counted)."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            total += out[0].numel() * (mod.in_channels // mod.groups) * kh * kw
        else:
            total += mod.in_features * mod.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


def run_macs(run: StudyRun, image_size: int, num_classes: int) -> int:
    from ..models.loading import create_model

    return forward_macs(create_model(MODEL, num_classes=num_classes, **run.model_kwargs()), image_size)


def val_curve(run_dir: Path) -> list[float]:
    """Val top-1 at the end of each epoch, from the run's ``metrics.csv``."""
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    rows.sort(key=lambda r: float(r["epoch"]))
    return [float(r["val_top1"]) if r.get("val_top1") not in (None, "") else math.nan for r in rows]


@dataclass
class StudyResult:
    table: str
    rows: list[dict]
    files: dict
    #: where every run stands (studies.progress.RunProgress); failed or stopped runs are listed with their log
    progress: list = field(default_factory=list)
    #: False while runs are still running or queued: the table is not written yet
    complete: bool = True
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list:
        return [p for p in self.progress if p.state in ("failed", "stopped")]


@dataclass
class StudyPlan:
    """A study's settings and grid, every option checked, nothing written."""

    output: Path
    settings: dict
    runs: list[StudyRun]
    configs: dict
    grid: dict  # what study.json keeps (every run trained in the folder so far)
    from_study: list[str]
    chosen: dict


def plan_study(output: Path, given: dict, train_missing: bool = True, at_epoch: int | None = None,
               workers: int = 0) -> StudyPlan:
    """Each setting as given, else from ``output/study.json``, else the default; all checked (one-line errors)."""
    from ..data.embedded import canonical_dataset

    stored = read_study(output)
    if stored is None and not train_missing:
        raise ConfigError(f"--output {output}: no study here (no study.json) to report; start it with "
                          f"`ventralkit study feedback -o {output}` (without --report_only)")
    chosen, from_study = resolve_settings(given, stored)
    c = chosen
    validate_study(c["outer_times"], c["designs"], c["seeds"], c["epochs"], c["image_size"], c["batch_size"], c["lr"],
                   c["dataset"], c["max_steps_per_epoch"])
    if at_epoch is not None and not 0 < int(at_epoch) <= int(c["epochs"]):
        raise ConfigError(f"--at_epoch must be between 1 and --epochs ({c['epochs']}), got {at_epoch}")
    settings = {"dataset": canonical_dataset(c["dataset"]), "epochs": int(c["epochs"]),
                "image_size": int(c["image_size"]), "batch_size": int(c["batch_size"]), "lr": float(c["lr"]),
                "max_steps_per_epoch": c["max_steps_per_epoch"]}
    check_settings(output, settings, stored)
    runs = study_runs(c["outer_times"], c["designs"], c["seeds"])
    configs = {r: run_config(r, output / "runs" / r.name, settings["dataset"], settings["epochs"],
                             settings["image_size"], settings["batch_size"], settings["lr"], workers,
                             settings["max_steps_per_epoch"]) for r in runs}
    return StudyPlan(output, settings, runs, configs, study_grid(stored, c["outer_times"], c["designs"], c["seeds"]),
                     from_study, chosen)


def run_feedback_study(output: str | Path, dataset: str | None = None, outer_times=None, designs=None,
                       seeds=None, epochs: int | None = None, image_size: int | None = None,
                       batch_size: int | None = None, lr: float | None = None, workers: int = 0,
                       inside: bool = True, train_missing: bool = True, max_steps_per_epoch: int | None = None,
                       at_epoch: int | None = None, keep: str = "best",
                       executor: ExecutorOptions | None = None) -> StudyResult:
    """Train the missing runs of the grid (``train_missing``), then write the table and figures.

    A setting left as None is the one in ``output/study.json`` (the study being continued or
    reported), else ``STUDY_DEFAULTS``. With ``train_missing=False`` (``--report_only``) the folder
    must hold a study, and nothing but the tables and figures is written.

    ``at_epoch``: tabulate the val top-1 after that epoch, from every run that has reached it
    (finished or not; the data order and the lr of the first epochs do not depend on ``epochs``
    under the step schedule, so these are the numbers a run of ``at_epoch`` epochs gives).

    ``executor``: where the runs train (``studies.executor``; default here, one after another); ``keep``: what a
    finished run keeps of its checkpoints (``studies.disk``). With SLURM the call returns once the jobs are
    submitted (``complete`` False); the last job to end, or a later call, writes the table."""
    from .runner import train_runs

    output = Path(output)
    given = {"dataset": dataset, "outer_times": outer_times, "designs": designs, "seeds": seeds, "epochs": epochs,
             "image_size": image_size, "batch_size": batch_size, "lr": lr, "max_steps_per_epoch": max_steps_per_epoch}
    plan = plan_study(output, given, train_missing, at_epoch, workers)
    opts = (executor or ExecutorOptions()).validate()
    check_keep(keep)
    if opts.kind is not None and train_missing:
        require_submitit(opts.kind)  # before anything is written
    if plan.from_study:
        print(f"from {output / 'study.json'}: " + ", ".join(f"--{k} {_flag_value(plan.chosen[k])}"
                                                           for k in plan.from_study))
    if not train_missing:
        for i, r in enumerate(plan.runs, 1):
            if run_state(output / "runs" / r.name) == "finished":
                print(f"[{i}/{len(plan.runs)}] {r.name}: finished, skipped")
        return write_study_results(output, plan.runs, plan.settings, inside=inside, at_epoch=at_epoch)
    with _undone_if_refused(output):  # a refused start (disk, sbatch) leaves the folder as it was
        write_json(output / "study.json", {**plan.settings, **plan.grid})
        record_trained_runs(plan, inside, keep)
        outcome = train_runs(output, planned_runs(plan, inside, keep), opts, keep, is_done=has_record,
                             epochs=plan.settings["epochs"],
                             finalize=partial(finish_study_if_done, str(output), inside))
    if not outcome.complete:
        from .progress import progress_text

        head = (f"the study in {output} is being run by {outcome.busy_elsewhere}; " if outcome.busy_elsewhere
                else "")
        table = (head + "progress: " + progress_text(outcome.progress)
                 + "\nthe table is written when every run has ended")
        return StudyResult(table, [], {}, progress=outcome.progress, complete=False)
    result = write_study_results(output, plan.runs, plan.settings, inside=inside, at_epoch=at_epoch)
    result.progress = outcome.progress
    return result


@contextlib.contextmanager
def _undone_if_refused(output: Path):
    """When the study cannot start (not enough disk, options sbatch refuses; no run trained), put the folder back as
    it was: removed when this call made it, else its study.json restored and this call's job logs removed."""
    from .jobs import JOBS_DIR
    from .runner import StartRefused

    existed = output.exists()
    study_json = output / "study.json"
    old = study_json.read_bytes() if study_json.is_file() else None
    logs = output / JOBS_DIR / "logs"
    before = set(logs.iterdir()) if logs.is_dir() else set()
    try:
        yield
    except StartRefused:
        if not existed:
            shutil.rmtree(output, ignore_errors=True)
        else:
            write_bytes_back(study_json, old)
            for folder in (set(logs.iterdir()) if logs.is_dir() else set()) - before:
                shutil.rmtree(folder, ignore_errors=True)
        raise


def write_bytes_back(path: Path, data: bytes | None) -> None:
    """``path`` as it was: ``data`` written back atomically, or the file removed when it was not there."""
    from ..files import atomic_path

    if data is None:
        path.unlink(missing_ok=True)
        return
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


# ---- one run: trained here or in a job ---------------------------------------------------------------------
def has_record(run_dir: Path) -> bool:
    """A run is done for the study once its record is written (``finish_run``)."""
    return (Path(run_dir) / RUN_RECORD).is_file()


def train_study_run(cfg, run: StudyRun, settings: dict, inside: bool, keep: str) -> None:
    """One run of the study, here or as a job: train it (continuing its ``last.pt``), draw its curves, write its
    record, then keep what ``keep`` says. Module level, so a job pickles it by reference."""
    from ..engine.train import train
    from ..plots.curves import draw_run_curves

    draw_run_curves(train(cfg.replace(resume="auto")).trained)  # each run's plots/curves.png, as `train` draws it
    finish_run(Path(cfg.output_path), run, settings, inside, keep)


def finish_run(run_dir: Path, run: StudyRun, settings: dict, inside: bool, keep: str) -> None:
    """The run's record (its per-pass analysis, which needs the final weights in ``last.pt``), on disk before
    ``apply_keep`` may delete ``last.pt``."""
    rows = inside_analysis(run_dir, run, settings) if inside and run.outer_times > 1 else None
    record = write_json(run_dir / RUN_RECORD, {"run": run.name, "finished": True, "val_top1": val_curve(run_dir),
                                               "inside": rows, "keep": keep})
    with open(record, "rb") as fh:
        os.fsync(fh.fileno())  # on disk before last.pt goes
    note = apply_keep(run_dir, keep)
    if note:
        print(note, flush=True)


def record_trained_runs(plan: StudyPlan, inside: bool, keep: str) -> None:
    """Runs trained to the end without a record (by an earlier version, or stopped between the two): their
    record now, here, unless a job is still at it."""
    from .jobs import JobFiles, lock_held
    from ..engine.run_folder import LOCK_NAME

    for r in plan.runs:
        run_dir = plan.output / "runs" / r.name
        busy = lock_held(JobFiles(plan.output, r.name).lock) or lock_held(run_dir / LOCK_NAME)
        if not has_record(run_dir) and not busy and run_state(run_dir) == "finished":
            print(f"{r.name}: trained; writing its record", flush=True)
            finish_run(run_dir, r, plan.settings, inside, keep)


def planned_runs(plan: StudyPlan, inside: bool, keep: str) -> list:
    """The grid as the runner takes it: each run's function, its arguments and its checkpoint sizes."""
    from .runner import PlannedRun

    sizes: dict[str, RunDisk] = {}
    out = []
    for r in plan.runs:
        key = json.dumps(r.model_kwargs(), sort_keys=True)
        if key not in sizes:
            sizes[key] = run_disk(r, plan.configs[r])
        out.append(PlannedRun(r.name, plan.output / "runs" / r.name, train_study_run,
                              {"cfg": plan.configs[r], "run": r, "settings": plan.settings, "inside": inside,
                               "keep": keep}, sizes[key]))
    return out


def run_disk(run: StudyRun, cfg) -> RunDisk:
    """The run's checkpoint sizes, from its model built on the meta device (no memory, no weights)."""
    from ..data.embedded import DIGITS_CLASSES
    from ..engine.checkpoint import checkpoint_bytes
    from ..models.loading import create_model
    from .disk import FILE_MARGIN

    with torch.device("meta"):
        model = create_model(MODEL, num_classes=len(DIGITS_CLASSES), **run.model_kwargs())
    last, best = checkpoint_bytes(model, cfg.optimizer, cfg.momentum)
    return RunDisk(last + FILE_MARGIN, best + FILE_MARGIN)


def finish_study_if_done(output: str, inside: bool) -> None:
    """A SLURM job's last act: when no run of the study is new, queued or running any more, write the table."""
    from .progress import run_progress

    plan = plan_study(Path(output), {}, train_missing=False)
    states = {run_progress(plan.output, r.name, plan.output / "runs" / r.name, has_record(plan.output / "runs" /
                           r.name)).state for r in plan.runs}
    if states & {"new", "queued", "running"}:
        return
    result = write_study_results(plan.output, plan.runs, plan.settings, inside=inside)
    print(study_summary(result), flush=True)


def study_grid(stored: dict | None, outer_times, designs, seeds) -> dict:
    """The grid study.json keeps: every outer_times, design and seed trained in the folder so far.

    A call with a few more seeds or designs trains only those runs; the study, and a later
    ``--report_only`` or a rerun without grid flags, still covers all of them.
    """
    old = stored or {}
    return {"outer_times": sorted({*old.get("outer_times", ()), *outer_times}),
            "designs": list(dict.fromkeys([*old.get("designs", ()), *designs])),
            "seeds": list(dict.fromkeys([*old.get("seeds", ()), *seeds]))}


def _flag_value(value) -> str:
    """A setting as it would be typed after its flag (lists space-separated)."""
    return " ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


def _mean_sd(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample sd (None for one seed: no spread to report)."""
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else None


def write_study_results(output: Path, runs: list[StudyRun], settings: dict, inside: bool = True,
                        at_epoch: int | None = None) -> StudyResult:
    """Table and figures from the finished runs (unfinished ones are left out and named), or with
    ``at_epoch`` from every run that has reached that epoch, written as ``feedback_study_epoch{N}.*`` (the
    inside analysis: finished runs only)."""
    from ..data.embedded import DIGITS_CLASSES, digits_split

    num_classes = len(DIGITS_CLASSES)
    curves: dict[tuple[str, int], list[list[float]]] = {}
    done_runs: list[StudyRun] = []
    finished: dict[tuple[str, int], list[StudyRun]] = {}
    for r in runs:
        run_dir = output / "runs" / r.name
        done = run_state(run_dir) == "finished"
        if done:
            done_runs.append(r)
        curve = val_curve(run_dir) if (run_dir / "metrics.csv").is_file() else []
        if at_epoch is not None:
            if len(curve) < at_epoch:
                continue
            curve = curve[:at_epoch]
        elif not done:
            continue
        curves.setdefault((r.design, r.outer_times), []).append(curve)
        finished.setdefault((r.design, r.outer_times), []).append(r)
    rows = []
    for (design, k), cs in curves.items():
        macs = run_macs(finished[(design, k)][0], settings["image_size"], num_classes)
        mean, sd = _mean_sd([c[-1] for c in cs])
        rows.append({"design": design, "outer_times": k, "seeds": len(cs), "epochs": len(cs[0]),
                     "val_top1_mean": round(mean, 4), "val_top1_sd": None if sd is None else round(sd, 4),
                     "gmac_per_image": round(macs / 1e9, 4)})
    ff = next((r["gmac_per_image"] for r in rows if r["design"] == FEEDFORWARD), None)
    for r in rows:
        r["compute_vs_feedforward"] = round(r["gmac_per_image"] / ff, 2) if ff else None
    missing = [r.name for r in runs if r not in finished.get((r.design, r.outer_times), [])]
    columns = ["design", "outer_times", "seeds", "epochs", "val_top1_mean", "val_top1_sd", "gmac_per_image",
               "compute_vs_feedforward"]
    # an earlier epoch's table goes beside the final one, never over it
    stem = "feedback_study" if at_epoch is None else f"feedback_study_epoch{at_epoch}"
    files = {"csv": write_records(output / f"{stem}.csv", columns, rows)}
    table = markdown_table(rows, settings, missing, at_epoch)
    files["md"] = write_text(output / f"{stem}.md", table + "\n")
    if rows:
        from ..plots.feedback import plot_study

        files["figure"] = plot_study(curves, {(r["design"], r["outer_times"]): r["gmac_per_image"] for r in rows},
                                     len(digits_split()[0]), output / f"{stem}.png", settings)
    if inside:
        inside_rows, unavailable = inside_of(output, [r for r in done_runs if r.outer_times > 1], settings)
        if unavailable:
            note = (f"No per-pass analysis for {', '.join(unavailable)}: trained with --no_inside, and --keep "
                    "removed the last.pt it needs.")
            table += "\n\n" + note
            files["md"] = write_text(output / f"{stem}.md", table + "\n")
        if inside_rows:
            from ..plots.feedback import plot_inside

            cols = ["run", "design", "outer_times", "seed", "pass", "v1_cka_prev", "v4_cka_prev",
                    "v1_cka_first", "v4_cka_first", "readout_top1", "gain"]
            files["inside_csv"] = write_records(output / "feedback_inside.csv", cols, inside_rows)
            files["inside_figure"] = plot_inside(inside_rows, output / "feedback_inside.png")
    return StudyResult(table, rows, files)


def inside_of(output: Path, runs: list[StudyRun], settings: dict) -> tuple[list[dict], list[str]]:
    """The per-pass rows of the finished feedback runs: from each run's record, else computed from its
    ``last.pt``; and the runs that have neither (their analysis cannot be made any more)."""
    rows, unavailable = [], []
    for r in runs:
        run_dir = output / "runs" / r.name
        record = _read_record(run_dir)
        if record.get("inside") is not None:
            rows.extend(record["inside"])
        elif RunPaths(run_dir).last.is_file():
            rows.extend(inside_analysis(run_dir, r, settings))
        else:
            unavailable.append(r.name)
    return rows, unavailable


def _read_record(run_dir: Path) -> dict:
    try:
        data = json.loads((run_dir / RUN_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def markdown_table(rows: list[dict], settings: dict, missing: list[str], at_epoch: int | None = None) -> str:
    head = ("| design | outer_times | seeds | epochs | val top-1 (mean ± sd) | GMAC / image | compute vs feed-forward |\n"
            "|---|---|---|---|---|---|---|")
    order = {FEEDFORWARD: 0, **{d: i + 1 for i, d in enumerate(DESIGNS)}}
    body = [f"| {r['design']} | {r['outer_times']} | {r['seeds']} | {r['epochs']} | "
            f"{r['val_top1_mean']:.3f} ± {'–' if r['val_top1_sd'] is None else format(r['val_top1_sd'], '.3f')} | "
            f"{r['gmac_per_image']:.3f} | "
            f"{'–' if r['compute_vs_feedforward'] is None else str(r['compute_vs_feedforward']) + 'x'} |"
            for r in sorted(rows, key=lambda r: (r["outer_times"], order.get(r["design"], 9)))]
    note = (f"\n\n{settings['dataset']}, {settings['image_size']} px, batch {settings['batch_size']}, "
            f"lr {settings['lr']}, {settings['epochs']} epochs; val top-1 after "
            + (f"epoch {at_epoch}." if at_epoch else "the last epoch."))
    if missing:
        note += f" Left out ({'not at epoch ' + str(at_epoch) if at_epoch else 'not finished'}): {', '.join(missing)}."
    return "\n".join([head, *body]) + note


# --------------------------------------------------------------------------- inside the loop


def inside_analysis(run_dir: Path, run: StudyRun, settings: dict) -> list[dict]:
    """Per pass p: CKA of V1 / V4 with the previous and the first pass, and top-1 read out after pass p.

    V4's representation of a pass is its last inner step (call ``4p + 3``). The read-out sends pass
    p's V4 output through the model's own IT and decoder, so the last pass gives the model's accuracy.
    """
    from torch.utils.data import DataLoader, Subset

    from ..analysis.neural.metrics import cka_from_grams
    from ..data import load_datasets
    from ..engine.inference import InferenceRunner
    from ..models.loading import create_model
    from ..models.registry import model_info
    from ..models.weights import load_weights, read_checkpoint

    ckpt = read_checkpoint(RunPaths(run_dir).last)
    model = create_model(MODEL, num_classes=ckpt["num_classes"], **run.model_kwargs())
    load_weights(model, ckpt["model"])
    val = load_datasets(settings["dataset"], None, model_info(MODEL), settings["image_size"]).val
    val = Subset(val, range(min(len(val), INSIDE_MAX_IMAGES)))
    k = run.outer_times
    grams = {(a, p): 0 for a in ("V1", "V4") for p in range(k)}
    feats: dict[tuple[str, int], list[torch.Tensor]] = {key: [] for key in grams}
    correct = np.zeros(k)
    targets = []
    with InferenceRunner(model) as runner, runner.record(["V1.output", "V4.output"]) as store:
        for step in runner.run(DataLoader(val, batch_size=64)):
            target = step.take(1)
            for p in range(k):
                v1, v4 = store["V1.output"][p], store["V4.output"][4 * p + 3]
                feats[("V1", p)].append(v1.flatten(1).float())
                feats[("V4", p)].append(v4.flatten(1).float())
                pred = model.forward_head(model.IT(v4.clone())).argmax(1)
                correct[p] += pred.eq(target).sum().item()
            targets.append(target)
    n = sum(len(t) for t in targets)
    for key, chunks in feats.items():
        x = torch.cat(chunks).double()
        grams[key] = (x @ x.T).numpy()
    gain = getattr(model, "V4_to_V1_gain", None)  # gated: how far training opened the loop (R, G, B)
    gain = " ".join(f"{v:.4g}" for v in gain.flatten().tolist()) if gain is not None else None
    rows = []
    for p in range(k):
        row = {"run": run.name, "design": run.design, "outer_times": k, "seed": run.seed, "pass": p,
               "readout_top1": round(correct[p] / n, 4), "gain": gain}
        for a in ("V1", "V4"):
            row[f"{a.lower()}_cka_prev"] = round(cka_from_grams(grams[(a, p - 1)], grams[(a, p)]), 4) if p else None
            row[f"{a.lower()}_cka_first"] = round(cka_from_grams(grams[(a, 0)], grams[(a, p)]), 4) if p else 1.0
        rows.append(row)
    return rows


def study_summary(result: StudyResult) -> str:
    """The table and the files written; then every failed or stopped run with its log."""
    lines = [result.table]
    if result.files:
        lines.append("saved " + ", ".join(str(p) for p in result.files.values()))
    if result.complete and result.failed:
        lines.append(f"{len(result.failed)} run{'s' if len(result.failed) != 1 else ''} did not finish (rerun the "
                     "command to resume them from their last.pt):")
        lines.extend(p.line() for p in result.failed)
    return "\n".join(lines)


__all__ = ["DESIGNS", "StudyRun", "StudyResult", "forward_macs", "run_feedback_study", "study_runs"]
