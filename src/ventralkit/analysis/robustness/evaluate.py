"""Evaluate a model on every corruption and severity of a -C dataset, summarise, compare runs.

``evaluate_robustness`` checks every ``<root>/<corruption>/<severity>/`` image folder (and the clean
folder when given) first, then streams the whole grid through the model in one pass: one loader, one
progress bar with ETA, hits and losses summed per folder, so the 75+ folders cost no start-up each.
On the CPU images are decoded to uint8 in a background thread (PIL releases the GIL) while the model
runs, and normalised per batch straight into channels_last layout.
It then writes the original Tiny-ImageNet-C script's CSV, a details CSV, the summary (error per
corruption, CE, mCE, relative mCE) and two figures. ``compare_robustness`` puts several runs in one
table and figure.
"""

from __future__ import annotations

import bisect
import difflib
import json
import os
import queue
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ...data.imagenet_c import ALL, resolve_corruptions, resolve_severities
from ...errors import ConfigError, DataError
from ...files import ensure_writable_dir, write_csv, write_json, write_text
from .metrics import (
    DETAILS_CSV,
    RESULTS_CSV,
    SUMMARY_JSON,
    Baseline,
    Errors,
    format_summary,
    load_baseline,
    read_results_csv,
    summarize,
    write_results_csv,
    write_summary_csv,
)

SUMMARY_CSV = "summary.csv"
SUMMARY_TXT = "summary.txt"
HEATMAP_PNG = "heatmap.png"
BARS_PNG = "errors_by_corruption.png"
COMPARISON_CSV = "comparison.csv"
COMPARISON_TXT = "comparison.txt"
COMPARISON_PNG = "comparison.png"
PREPROCESS = ("auto", "eval", "direct")
#: ResNet-50 (200 outputs) at 64 px on 2 shared CPU cores, images/s, interleaved best of 3: channels_last
#: 17.1 / 9.1 / 6.2 at 128 / 32 / 16 images per forward pass, NCHW 15.0 / 7.7 at 128 / 32 (the machine was
#: loaded, where each pass's thread synchronisation costs most). So the whole loader batch per pass unless
#: ``forward_batch`` says otherwise; the layout follows ``engine.inference``'s one channels_last rule (on).


@dataclass
class RobustnessReport:
    """Accuracies per corruption and severity, the clean accuracy, the summary and the files written."""

    name: str
    accuracies: dict[str, dict[int, float]]
    clean_accuracy: float | None
    details: list[dict]
    summary: dict
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def errors(self) -> Errors:
        return {c: {s: 1.0 - a for s, a in sev.items()} for c, sev in self.accuracies.items()}

    @property
    def clean_error(self) -> float | None:
        return None if self.clean_accuracy is None else 1.0 - self.clean_accuracy

    @property
    def mce(self) -> float | None:
        return self.summary["mce"]

    @property
    def relative_mce(self) -> float | None:
        return self.summary["relative_mce"]

    @property
    def mean_error(self) -> float | None:
        return self.summary["mean_error"]

    def table(self) -> str:
        return format_summary(self.summary, title=self.name)


# ---------------------------------------------------------------------------------------------
# finding the folders


def scan_corruption_root(root: str | os.PathLike, corruptions=None, severities=None) -> list[tuple[str, int, Path]]:
    """``(corruption, severity, folder)`` for every ``root/<corruption>/<severity>/``, canonical order.

    Folder names must be corruption names and severities 1..5; anything else is a one-line DataError.
    ``corruptions``/``severities`` restrict the selection (a requested one that is absent is an error).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"--data_path {root} does not exist; give the root of a corrupted dataset, "
                        "<root>/<corruption>/<severity>/<class>/<image> (make one with `ventralkit corrupt`)")
    subdirs = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not subdirs:
        raise DataError(f"--data_path {root} has no corruption folders; expected "
                        f"{root}/<corruption>/<severity 1..5>/<class>/<image> (make one with `ventralkit corrupt`)")
    known = [d for d in subdirs if d in ALL]
    unknown = [d for d in subdirs if d not in ALL]
    for name in unknown:
        close = difflib.get_close_matches(name, ALL, n=1, cutoff=0.75)
        if close:
            raise DataError(f"{root / name} is not a corruption name (did you mean {close[0]}?); folders under "
                            "--data_path must be named after corruptions, e.g. gaussian_noise")
    if unknown and not known:
        if set(subdirs) & {"train", "val", "val_in_folders"}:
            hint = "it looks like a clean dataset root; pass it as --clean_path and the corrupted copy as --data_path"
        else:
            hint = f"expected {root}/<corruption>/<severity>/<class>/<image>, e.g. gaussian_noise/1/"
        found = ", ".join(d + "/" for d in subdirs[:3])
        raise DataError(f"--data_path {root} has no corruption folders (found {found}); {hint}")
    if unknown:
        raise DataError(f"{root / unknown[0]} is not a corruption name (rename or move it); folders under "
                        "--data_path must be named after corruptions, e.g. gaussian_noise")
    wanted_c = resolve_corruptions(corruptions) if corruptions is not None else None
    wanted_s = resolve_severities(severities) if severities is not None else None
    found: list[tuple[str, int, Path]] = []
    for corruption in [c for c in ALL if c in known]:
        if wanted_c is not None and corruption not in wanted_c:
            continue
        cdir = root / corruption
        names = sorted(e.name for e in os.scandir(cdir) if e.is_dir() and not e.name.startswith("."))
        bad = [n for n in names if n not in ("1", "2", "3", "4", "5")]
        if bad:
            raise DataError(f"{cdir / bad[0]} is not a severity folder; severity folders are named 1, 2, 3, 4, 5")
        if not names:
            raise DataError(f"{cdir} has no severity folders; expected {cdir}/<1..5>/<class>/<image>")
        for name in names:
            if wanted_s is None or int(name) in wanted_s:
                found.append((corruption, int(name), cdir / name))
    if wanted_c is not None:
        missing = [c for c in wanted_c if c not in known]
        if missing:
            raise DataError(f"--data_path {root} has no {missing[0]}/ folder")
    if not found:
        raise DataError(f"--data_path {root} has none of the requested corruptions and severities")
    return found


def _clean_folder(clean_path) -> Path | None:
    if clean_path is None:
        return None
    path = Path(clean_path)
    if not path.is_dir():
        raise DataError(f"--clean_path {path} does not exist; give the clean validation folder (class sub-folders)")
    subdirs = {e.name for e in os.scandir(path) if e.is_dir()}
    if "train" in subdirs:
        from ...data.folders import split_dir

        return split_dir(path, "val")
    return path


# ---------------------------------------------------------------------------------------------
# evaluation


def _kind(pre) -> str:
    """This module's name for a resolved preprocessing: 'direct' = Resize(s) + CenterCrop(s) (crop
    fraction 1), the identity on images already s x s (the released ImageNet-C / Tiny-ImageNet-C, whose
    reference evaluators only crop and normalise); 'eval' = the model's eval transform, Resize(s*256/224)
    + CenterCrop(s)."""
    return "direct" if pre.crop_fraction == 1.0 else "eval"


def _first_image_size(dataset) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(dataset.samples[0][0]) as img:
            return img.size
    except (OSError, IndexError):
        return None


@dataclass
class _FolderScore:
    """Sums over one folder's images."""

    n: int
    top1: float
    top5: float
    loss: float


class _Grid:
    """Every folder's images as one dataset of (image, label, folder index) (a plain sequence: DataLoader
    needs no torch base class, and this module stays importable without torch)."""

    def __init__(self, datasets: list):
        self.datasets = datasets
        self.ends = []
        total = 0
        for d in datasets:
            total += len(d)
            self.ends.append(total)

    def __len__(self) -> int:
        return self.ends[-1] if self.ends else 0

    def __getitem__(self, index: int):
        group = bisect.bisect_right(self.ends, index)
        start = self.ends[group - 1] if group else 0
        image, label = self.datasets[group][index - start]
        return image, label, group


def _in_background(iterable, depth: int = 3):
    """The items of ``iterable``, produced ahead by a thread: decoding and resizing (PIL releases the GIL)
    overlap the forward pass without the start-up and the core that a worker process takes."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def produce():
        try:
            for item in iterable:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(end)
        except BaseException as err:  # handed to the consumer, raised there
            items.put(err)

    thread = threading.Thread(target=produce, name="robustness-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                items.get(timeout=0.1)
            except queue.Empty:
                pass
        thread.join()


class _GridScores:
    """Top-1 / top-5 hits, summed loss and image count per folder, accumulated on the device."""

    def __init__(self, n_groups: int, device):
        import torch

        self.hits = torch.zeros(2, n_groups, dtype=torch.float64, device=device)
        self.loss = torch.zeros(n_groups, dtype=torch.float64, device=device)
        self.count = torch.zeros(n_groups, dtype=torch.float64, device=device)

    def add(self, logits, target, group) -> None:
        import torch
        import torch.nn.functional as F

        k = min(5, logits.shape[1])
        hit = logits.topk(k, dim=1).indices.eq(target[:, None])
        self.hits[0].index_add_(0, group, hit[:, 0].double())
        self.hits[1].index_add_(0, group, hit.any(dim=1).double())
        self.loss.index_add_(0, group, F.cross_entropy(logits, target, reduction="none").double())
        self.count.index_add_(0, group, torch.ones_like(target, dtype=torch.float64))

    def folders(self) -> list[_FolderScore]:
        n, (top1, top5), loss = self.count.tolist(), self.hits.tolist(), self.loss.tolist()
        return [_FolderScore(n=int(n[i]), top1=top1[i] / n[i], top5=top5[i] / n[i], loss=loss[i] / n[i])
                for i in range(len(n))]


def _score_grid(runner, grid: _Grid, batch_size: int, workers: int, forward_batch: int | None,
                progress: bool) -> list[_FolderScore]:
    """Top-1 / top-5 hits and the summed loss of every folder, in one pass over the grid through ``runner``
    (decoding in ``workers`` processes, or in a thread that reads ahead when there are none)."""
    from ...engine.evaluate import logits_of
    from ...engine.inference import inference_loader
    from ...engine.progress import progress_bar

    loader = inference_loader(grid, batch_size, workers, runner.device)
    batches = loader if workers > 0 else _in_background(loader)
    scores = _GridScores(len(grid.datasets), runner.device)
    bar = progress_bar(None, desc="robustness", enabled=progress, total=len(grid), unit="img")
    try:
        with runner:
            for step in runner.run(batches, forward_batch=forward_batch, progress=bar):
                scores.add(logits_of(step.output).float(), step.take(1), step.take(2))
    finally:
        bar.close()
        getattr(batches, "close", lambda: None)()  # the read-ahead thread ends here, whatever happened
    return scores.folders()


def checkpoint_preprocess(pre) -> str:
    """The preprocessing a model was validated with, in this module's terms ('auto' if unknown).

    A ventralkit checkpoint's preprocessing (``pre.from_training``) in mode ``resize_crop`` is the model's
    eval transform ('eval'); ``none`` (native-size images) is 'direct', which leaves images already at
    the input size unchanged. Any other model: 'auto'."""
    if pre is None or not pre.from_training:
        return "auto"
    return "direct" if pre.mode == "none" else "eval"


def evaluate_robustness(
    model,
    data_path: str | os.PathLike,
    clean_path: str | os.PathLike | None = None,
    batch_size: int = 128,
    workers: int | None = None,
    device=None,
    baseline=None,
    output_dir: str | os.PathLike | None = None,
    image_size: int | None = None,
    amp: str = "none",
    preprocess: str | None = None,
    corruptions=None,
    severities=None,
    baseline_clean_error: float | None = None,
    name: str | None = None,
    transform=None,
    progress: bool = True,
    classes: list[str] | None = None,
    channels_last: bool | None = None,
    forward_batch: int | None = None,
    dist_info=None,
) -> RobustnessReport:
    """Top-1 accuracy of ``model`` on every ``data_path/<corruption>/<severity>/`` folder.

    model: a model from ``ventralkit.load_model`` / ``create_model`` (its preprocessing: ``model.preprocessing``,
        set by the loader, else its ``info``); ``image_size`` replaces its size.
    clean_path: the clean validation folder; its error enables relative mCE.
    baseline: None, ``'alexnet'`` (ImageNet-C table), or an earlier run's folder / results CSV.
    preprocess: ``'eval'`` = the model's eval transform (Resize(s*256/224) + CenterCrop(s));
        ``'direct'`` = Resize(s) + CenterCrop(s), the reference evaluators' protocol for released -C
        images that already are s x s; ``'auto'`` = 'direct' for a folder whose images are s x s,
        'eval' otherwise; None (default) = what the model was validated with when it came from a
        ventralkit checkpoint (as ``test`` evaluates it: 'eval', or 'direct' for native-size training),
        else 'auto'.
    output_dir: when given, the CSVs, summary and figures are written there (checked before any work).
    classes: the model's training classes in label order (a ventralkit checkpoint stores them); each
        class folder is then labelled by its position in this list, so a folder with a subset of the
        classes is scored correctly and an unknown folder name is an error.
    workers: decoding processes; None = as ``features`` (none on a CPU with up to 4 cores, where a
        thread decodes ahead instead).
    channels_last: NHWC activations and weights; None = the runner's one rule (``engine.inference``).
    forward_batch: images per forward pass (the loader's ``batch_size`` is split); None = ``batch_size``.
    dist_info: under torchrun (``engine.distributed.DistInfo`` of a group joined with ``engine.ranks.join``): the
        checks run on every rank (a mistake is one line, from rank 0), the folders are shared out among the ranks
        (``ranks.py``) and their scores gathered; every rank returns the report, rank 0 writes the files.
    """
    ranked = dist_info is not None and dist_info.enabled

    def plan() -> _Plan:
        return _plan(model, data_path, clean_path, batch_size, workers, device, baseline, output_dir, image_size,
                     amp, preprocess, corruptions, severities, baseline_clean_error, transform, classes,
                     channels_last, forward_batch, write=not ranked or dist_info.is_main)

    if ranked:
        from ...engine.ranks import agree
        from .ranks import score_by_rank

        p = agree(plan, dist_info, "checking the corrupted dataset")
        scores = score_by_rank(lambda mine: _score_grid(p.runner, _Grid([p.datasets[i] for i in mine]),
                                                        int(batch_size), p.workers, forward_batch,
                                                        progress and dist_info.is_main),
                               [len(d) for d in p.datasets], dist_info)
    else:
        p = plan()
        scores = _score_grid(p.runner, _Grid(p.datasets), int(batch_size), p.workers, forward_batch, progress)
    info = getattr(model, "info", None)
    meta = {"name": name or (info.name if info is not None else type(model).__name__), "data_path": str(data_path),
            "clean_path": None if p.clean_dir is None else str(p.clean_dir), "image_size": p.pre.image_size,
            "preprocess": p.preprocess if transform is None else "custom", "preprocess_used": sorted(p.sets.used),
            # library, weights name, file and sha256 (models.loading.LoadedModel.provenance) when the loader built it
            "model_source": (getattr(info, "extra", None) or {}).get("source")}
    report = _report(p.grid_folders, scores, p.base, list(classes) if classes is not None else p.sets.reference,
                     meta)
    if output_dir is not None and (not ranked or dist_info.is_main):
        write_report(report, output_dir, baseline=p.base)
    return report


@dataclass
class _Plan:
    """What ``evaluate_robustness`` settles before the pass: every folder checked, the datasets, the runner."""

    preprocess: str
    clean_dir: Path | None
    base: Baseline | None
    pre: object
    workers: int
    grid_folders: list
    sets: "_GridDatasets"
    datasets: list
    runner: object


def _plan(model, data_path, clean_path, batch_size, workers, device, baseline, output_dir, image_size, amp,
          preprocess, corruptions, severities, baseline_clean_error, transform, classes, channels_last, forward_batch,
          write: bool) -> _Plan:
    """Every check before the long part, in the order the user's mistakes are most likely; nothing is run."""
    import torch

    from ...engine.evaluate import default_device
    from ...engine.inference import InferenceRunner, loader_workers
    from ...models.preprocessing import Preprocessing, preprocessing_of, resolve

    if preprocess is None:
        preprocess = checkpoint_preprocess(preprocessing_of(model))
    _check_options(preprocess, batch_size, forward_batch, workers)
    folders = scan_corruption_root(data_path, corruptions, severities)
    clean_dir = _clean_folder(clean_path)
    base = load_baseline(baseline, baseline_clean_error)  # bad --baseline fails before the long part
    if output_dir is not None and write:  # (under torchrun rank 0 alone: two ranks' write probes would collide)
        ensure_writable_dir(output_dir)
    info = getattr(model, "info", None)
    if transform is None and info is None:
        raise ConfigError("the model has no .info (preprocessing metadata); build it with ventralkit.create_model "
                          "or pass transform=")
    # the model's preprocessing (the size it was trained at, from the loader), with the flags applied
    pre = resolve(preprocessing_of(model) or Preprocessing(image_size=224), image_size=image_size, mode=preprocess)
    device = torch.device(device) if device is not None else default_device()
    workers, threads = loader_workers(workers, device)
    grid_folders = ([("clean", 0, clean_dir)] if clean_dir is not None else []) + list(folders)
    sets = _GridDatasets(classes, getattr(info, "num_classes", None), pre, transform, clean_dir or folders[0][2])
    datasets = list(map(sets.dataset, [folder for _, _, folder in grid_folders]))  # stacklevel: map adds no frame
    runner = InferenceRunner(model, device, amp=amp, channels_last=channels_last, threads=threads,
                             normalize=(info.mean, info.std) if transform is None else None)
    return _Plan(preprocess, clean_dir, base, pre, workers, grid_folders, sets, datasets, runner)


def _check_options(preprocess: str, batch_size, forward_batch, workers) -> None:
    if preprocess not in PREPROCESS:
        raise ConfigError(f"--preprocess must be one of {', '.join(PREPROCESS)}, got {preprocess!r}")
    if batch_size is None or int(batch_size) <= 0:
        raise ConfigError(f"--batch_size must be a positive integer, got {batch_size}")
    if forward_batch is not None and (isinstance(forward_batch, bool) or int(forward_batch) <= 0):
        raise ConfigError(f"forward_batch must be a positive integer, got {forward_batch}")
    if workers is not None and int(workers) < 0:
        raise ConfigError(f"--workers must be 0 or more, got {workers}")


class _GridDatasets:
    """Each folder of the grid as a labelled dataset with its preprocessing, every check done before any work.

    Labels: a folder's position in ``classes`` (the model's training classes) when given, else the sorted
    class folders, which must then be the same in every folder (the first one met is the reference)."""

    def __init__(self, classes, n_outputs: int | None, pre, transform, reference_dir: Path):
        self.classes, self.n_outputs, self.pre, self.transform = classes, n_outputs, pre, transform
        self.reference: list[str] = []
        self.reference_dir = reference_dir
        self.used: set[str] = set()  # the preprocessing each folder actually got (auto picks per folder)
        self.pipelines: dict = {}  # one pipeline per resolved preprocessing ('auto' gives at most two)

    def dataset(self, folder: Path):
        from ...data.folders import ImageFolderDataset

        dataset = ImageFolderDataset(folder, transform=None, on_bad_image="error")
        if self.classes is not None:
            self._label_by_classes(dataset, folder)
        self._check_classes(dataset, folder)
        self._set_transform(dataset)
        return dataset

    def _label_by_classes(self, dataset, folder: Path) -> None:
        classes = self.classes
        unknown = [c for c in dataset.classes if c not in classes]
        if unknown:
            raise DataError(f"{folder} has class folder {unknown[0]!r}, which is not one of the model's "
                            f"{len(classes)} training classes (e.g. {', '.join(list(classes)[:3])}); "
                            "the folders must be named as the training classes")
        index = [list(classes).index(c) for c in dataset.classes]
        dataset.samples = [(p, index[label]) for p, label in dataset.samples]
        dataset.targets = [label for _, label in dataset.samples]

    def _check_classes(self, dataset, folder: Path) -> None:
        reference, classes, n_outputs = self.reference, self.classes, self.n_outputs
        if not reference:
            reference.extend(dataset.classes)
            if classes is None and n_outputs is not None and len(reference) > n_outputs:
                raise DataError(f"{folder} has {len(reference)} classes but the model has {n_outputs} outputs; "
                                "pass --num_classes or a matching checkpoint")
            if classes is None and n_outputs is not None and len(reference) < n_outputs:
                warnings.warn(f"{folder} has {len(reference)} classes and the model {n_outputs} outputs; labels are "
                              "the sorted class folders, so they must be the model's first classes",
                              stacklevel=6)  # the caller of evaluate_robustness (via _plan, its plan())
        elif dataset.classes != reference:
            odd = sorted(set(dataset.classes) ^ set(reference))
            raise DataError(f"{folder} has other class folders than {self.reference_dir} "
                            f"({odd[0] if odd else 'different order'}); every folder needs the same classes")

    def _set_transform(self, dataset) -> None:
        from ...data.transforms import resolve_auto, uint8_pipeline

        if self.transform is not None:
            dataset.transform = self.transform
            self.used.add("custom")
            return
        chosen = resolve_auto(self.pre, _first_image_size(dataset) if self.pre.mode == "auto" else None)
        if chosen not in self.pipelines:
            self.pipelines[chosen] = uint8_pipeline(chosen)
        dataset.transform = self.pipelines[chosen]
        self.used.add(_kind(chosen))


def _report(grid_folders, scores: list[_FolderScore], base, classes: list[str], meta: dict) -> RobustnessReport:
    """Accuracies per corruption and severity, the clean accuracy and the summary (plus ``meta``)."""
    details: list[dict] = []
    clean_acc = None
    accuracies: dict[str, dict[int, float]] = {}
    for (corruption, severity, _), score in zip(grid_folders, scores):
        details.append(_detail(corruption, severity, score))
        if corruption == "clean":
            clean_acc = score.top1
        else:
            accuracies.setdefault(corruption, {})[severity] = score.top1
    errors = {c: {s: 1.0 - a for s, a in sev.items()} for c, sev in accuracies.items()}
    summary = summarize(errors, None if clean_acc is None else 1.0 - clean_acc, base, classes=classes)
    summary.update({**meta, "n_images": sum(d["n"] for d in details if d["corruption_type"] != "clean")})
    return RobustnessReport(name=meta["name"], accuracies=accuracies, clean_accuracy=clean_acc, details=details,
                            summary=summary)


def _detail(corruption: str, severity: int, result) -> dict:
    return {"corruption_type": corruption, "difficulty": severity, "valid_acc": result.top1,
            "top1_error": 1.0 - result.top1, "top5_acc": result.top5, "loss": result.loss, "n": result.n}


def write_report(report: RobustnessReport, output_dir, baseline: Baseline | None = None) -> dict[str, Path]:
    """Write the CSVs, the summary (JSON, CSV, text) and the two figures of one run."""
    from ...plots.robustness import plot_corruption_bars, plot_error_heatmap

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"results_csv": write_results_csv(out / RESULTS_CSV, report.accuracies)}
    cols = ["corruption_type", "difficulty", "valid_acc", "top1_error", "top5_acc", "loss", "n"]
    order = {c: i for i, c in enumerate(("clean",) + ALL)}
    details = sorted(report.details, key=lambda d: (order[d["corruption_type"]], d["difficulty"]))
    files["details_csv"] = write_csv(out / DETAILS_CSV, [cols] + [[d.get(c, "") for c in cols] for d in details])
    files["summary_json"] = write_json(out / SUMMARY_JSON, report.summary)
    files["summary_csv"] = write_summary_csv(out / SUMMARY_CSV, report.summary)
    files["summary_txt"] = write_text(out / SUMMARY_TXT, report.table() + "\n")
    caveat = report.summary.get("baseline_caveat")
    files["heatmap"] = plot_error_heatmap(report.errors, out / HEATMAP_PNG, title=report.name,
                                          clean_error=report.clean_error, mce=report.mce,
                                          baseline_name=baseline.name if baseline else None, caveat=caveat)
    means = {r["corruption"]: r["mean_error"] for r in report.summary["corruptions"]}
    base_means = None
    if baseline is not None:
        base_means = dict(baseline.mean_errors or {})
        for c, sev in (baseline.errors or {}).items():
            if sev:
                base_means[c] = sum(sev.values()) / len(sev)
    files["bars"] = plot_corruption_bars(means, out / BARS_PNG, title=report.name, clean_error=report.clean_error,
                                         baseline=base_means, baseline_name=baseline.name if baseline else "baseline",
                                         mce=report.mce, caveat=caveat)
    report.files = files
    return files


# ---------------------------------------------------------------------------------------------
# comparing runs


def _load_run(run) -> tuple[str, Errors, float | None]:
    if isinstance(run, RobustnessReport):
        return run.name, run.errors, run.clean_error
    if isinstance(run, dict) and "corruptions" in run:  # a summary dict
        errors = {r["corruption"]: {int(s): e for s, e in r["errors"].items()} for r in run["corruptions"]}
        return run.get("name") or "run", errors, run.get("clean_error")
    path = Path(run)
    if path.is_dir():
        csv_path = next((path / n for n in (DETAILS_CSV, RESULTS_CSV) if (path / n).is_file()), None)
        if csv_path is None:
            raise DataError(f"{path} has no {RESULTS_CSV}; give folders written by `ventralkit robustness` or CSVs")
    elif path.is_file():
        csv_path = path
    else:
        raise DataError(f"{path} does not exist; give a robustness run folder or its {RESULTS_CSV}")
    errors, clean = read_results_csv(csv_path)
    name = path.name if path.is_dir() else path.stem
    summary_path = csv_path.parent / SUMMARY_JSON
    if summary_path.is_file():
        try:
            saved = json.loads(summary_path.read_text())
        except (OSError, ValueError):
            saved = {}
        name = saved.get("name") or name
        if clean is None:
            clean = saved.get("clean_error")
    return name, errors, clean


def compare_robustness(runs, names=None, baseline=None, output_dir=None, baseline_clean_error=None) -> list[dict]:
    """One row per run: clean error, mean error, mCE, relative mCE and mean error per corruption.

    runs: ``RobustnessReport`` objects, summary dicts, run folders or results CSVs.
    baseline: as in ``evaluate_robustness``; every run is normalised by the same one.
    output_dir: writes comparison.csv, comparison.txt and comparison.png there.
    """
    runs = list(runs)
    if not runs:
        raise ConfigError("nothing to compare; give run folders or results CSVs")
    if names is not None and len(names) != len(runs):
        raise ConfigError(f"{len(names)} names for {len(runs)} runs; give one name per run")
    base = load_baseline(baseline, baseline_clean_error)
    rows, seen = [], {}
    for i, run in enumerate(runs):
        label, errors, clean = _load_run(run)
        label = names[i] if names is not None else label
        if label in seen:
            seen[label] += 1
            label = f"{label} ({seen[label]})"
        else:
            seen[label] = 1
        s = summarize(errors, clean, base)
        row = {"name": label, "clean_error": clean, "mean_error": s["mean_error"], "mce": s["mce"],
               "relative_mce": s["relative_mce"], "mce_corruptions": s["mce_corruptions"],
               "extra_mean_error": s["extra_mean_error"], "severities": s["severities"]}
        row.update({c["corruption"]: c["mean_error"] for c in s["corruptions"]})
        rows.append(row)
    if output_dir is not None:
        write_comparison(rows, output_dir, base)
    return rows


def format_comparison(rows: list[dict], baseline: Baseline | None = None) -> str:
    def pct(x):
        return f"{100 * x:6.1f}" if x is not None else "     -"

    width = max(10, *(len(r["name"]) for r in rows))
    head = f"{'model':<{width}} {'clean':>6} {'mean':>6} {'mCE':>6} {'relmCE':>6} {'of 15':>5}"
    lines = ["top-1 error (%)" + (f", mCE vs {baseline.name}" if baseline else ""), head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['name']:<{width}} {pct(r['clean_error'])} {pct(r['mean_error'])} {pct(r['mce'])} "
                     f"{pct(r['relative_mce'])} {r['mce_corruptions'] if baseline else '':>5}")
    return "\n".join(lines)


def write_comparison(rows: list[dict], output_dir, baseline: Baseline | None = None) -> dict[str, Path]:
    from ...plots.robustness import plot_robustness_comparison

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    present = [c for c in ALL if any(c in r for r in rows)]
    cols = ["name", "clean_error", "mean_error", "mce", "relative_mce", "mce_corruptions", "extra_mean_error",
            *present]
    write_csv(out / COMPARISON_CSV,
              [cols] + [[r["name"]] + ["" if r.get(c) is None else repr(r[c]) for c in cols[1:]] for r in rows])
    write_text(out / COMPARISON_TXT, format_comparison(rows, baseline) + "\n")
    table = {r["name"]: {c: r[c] for c in present if r.get(c) is not None} for r in rows}
    has_mce = any(r["mce"] is not None for r in rows)
    scores = {r["name"]: (r["mce"] if has_mce else r["mean_error"]) for r in rows}
    clean = {r["name"]: r["clean_error"] for r in rows}
    png = plot_robustness_comparison(table, out / COMPARISON_PNG, clean_errors=clean, scores=scores,
                                     score_name="mCE" if has_mce else "mean error",
                                     severities={r["name"]: r["severities"] for r in rows})
    return {"comparison_csv": out / COMPARISON_CSV, "comparison_txt": out / COMPARISON_TXT, "comparison_png": png}


__all__ = ["RobustnessReport", "compare_robustness", "evaluate_robustness", "scan_corruption_root",
           "write_report"]
