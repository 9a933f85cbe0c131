"""Evaluate a model on every corruption and severity of a -C dataset, summarise, compare runs.

``evaluate_robustness`` runs the engine's batched ``evaluate`` once per
``<root>/<corruption>/<severity>/`` image folder (and on the clean folder when given), then writes
the original Tiny-ImageNet-C script's CSV, a details CSV, the summary (error per corruption, CE,
mCE, relative mCE) and two figures. ``compare_robustness`` puts several runs in one table and figure.
"""

from __future__ import annotations

import difflib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

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
from .names import ALL, resolve_corruptions, resolve_severities

SUMMARY_CSV = "summary.csv"
SUMMARY_TXT = "summary.txt"
HEATMAP_PNG = "heatmap.png"
BARS_PNG = "errors_by_corruption.png"
COMPARISON_CSV = "comparison.csv"
COMPARISON_TXT = "comparison.txt"
COMPARISON_PNG = "comparison.png"
PREPROCESS = ("auto", "eval", "direct")


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


def _direct_transform(info, size: int):
    """Resize(size) + CenterCrop(size) + normalise: the identity on images already size x size
    (the released ImageNet-C / Tiny-ImageNet-C, whose reference evaluators only crop and normalise)."""
    from torchvision import transforms as T

    from ...data.transforms import normalize, to_rgb

    return T.Compose([T.Lambda(to_rgb), T.Resize(size), T.CenterCrop(size), T.ToTensor(), normalize(info)])


def _first_image_size(dataset) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(dataset.samples[0][0]) as img:
            return img.size
    except (OSError, IndexError):
        return None


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
    preprocess: str = "auto",
    corruptions=None,
    severities=None,
    baseline_clean_error: float | None = None,
    name: str | None = None,
    transform=None,
    progress: bool = True,
    classes: list[str] | None = None,
) -> RobustnessReport:
    """Top-1 accuracy of ``model`` on every ``data_path/<corruption>/<severity>/`` folder.

    model: a model from ``ventralkit.create_model`` (its ``info`` gives the preprocessing).
    clean_path: the clean validation folder; its error enables relative mCE.
    baseline: None, ``'alexnet'`` (ImageNet-C table), or an earlier run's folder / results CSV.
    preprocess: ``'eval'`` = the model's eval transform (Resize(s*256/224) + CenterCrop(s));
        ``'direct'`` = Resize(s) + CenterCrop(s), the reference evaluators' protocol for released -C
        images that already are s x s; ``'auto'`` = 'direct' for a folder whose images are s x s,
        'eval' otherwise.
    output_dir: when given, the CSVs, summary and figures are written there (checked before any work).
    classes: the model's training classes in label order (a ventralkit checkpoint stores them); each
        class folder is then labelled by its position in this list, so a folder with a subset of the
        classes is scored correctly and an unknown folder name is an error.
    """
    import torch
    from torch.utils.data import DataLoader

    from ...data.folders import ImageFolderDataset
    from ...data.transforms import eval_transform
    from ...engine.evaluate import default_device, evaluate
    from ...engine.progress import progress_bar

    if preprocess not in PREPROCESS:
        raise ConfigError(f"--preprocess must be one of {', '.join(PREPROCESS)}, got {preprocess!r}")
    if batch_size is None or int(batch_size) <= 0:
        raise ConfigError(f"--batch_size must be a positive integer, got {batch_size}")
    folders = scan_corruption_root(data_path, corruptions, severities)
    clean_dir = _clean_folder(clean_path)
    base = load_baseline(baseline, baseline_clean_error)  # bad --baseline fails before the long part
    if output_dir is not None:
        ensure_writable_dir(output_dir)
    info = getattr(model, "info", None)
    if transform is None and info is None:
        raise ConfigError("the model has no .info (preprocessing metadata); build it with ventralkit.create_model "
                          "or pass transform=")
    size = int(image_size or (info.input_size if info is not None else 224))
    n_outputs = getattr(info, "num_classes", None)
    device = torch.device(device) if device is not None else default_device()
    model.to(device)
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    name = name or (info.name if info is not None else type(model).__name__)

    reference: list[str] = []
    reference_dir = clean_dir or folders[0][2]
    used: set[str] = set()  # the preprocessing each folder actually got (auto picks per folder)

    def run(folder: Path, desc: str):
        dataset = ImageFolderDataset(folder, transform=None, on_bad_image="error")
        if classes is not None:
            unknown = [c for c in dataset.classes if c not in classes]
            if unknown:
                raise DataError(f"{folder} has class folder {unknown[0]!r}, which is not one of the model's "
                                f"{len(classes)} training classes (e.g. {', '.join(list(classes)[:3])}); "
                                "the folders must be named as the training classes")
            index = [list(classes).index(c) for c in dataset.classes]
            dataset.samples = [(p, index[label]) for p, label in dataset.samples]
            dataset.targets = [label for _, label in dataset.samples]
        if not reference:
            reference.extend(dataset.classes)
            if classes is None and n_outputs is not None and len(reference) > n_outputs:
                raise DataError(f"{folder} has {len(reference)} classes but the model has {n_outputs} outputs; "
                                "pass --num_classes or a matching checkpoint")
            if classes is None and n_outputs is not None and len(reference) < n_outputs:
                warnings.warn(f"{folder} has {len(reference)} classes and the model {n_outputs} outputs; labels are "
                              "the sorted class folders, so they must be the model's first classes", stacklevel=3)
        elif dataset.classes != reference:
            odd = sorted(set(dataset.classes) ^ set(reference))
            raise DataError(f"{folder} has other class folders than {reference_dir} "
                            f"({odd[0] if odd else 'different order'}); every folder needs the same classes")
        if transform is not None:
            dataset.transform = transform
            used.add("custom")
        elif preprocess == "direct" or (preprocess == "auto" and _first_image_size(dataset) == (size, size)):
            dataset.transform = _direct_transform(info, size)
            used.add("direct")
        else:
            dataset.transform = eval_transform(info, size)
            used.add("eval")
        loader = DataLoader(dataset, batch_size=int(batch_size), shuffle=False, num_workers=int(workers),
                            pin_memory=device.type == "cuda")
        return evaluate(model, loader, device=device, amp=amp, desc=desc, progress=progress, num_classes=n_outputs)

    details: list[dict] = []
    clean_acc = None
    if clean_dir is not None:
        result = run(clean_dir, "clean")
        clean_acc = result.top1
        details.append(_detail("clean", 0, result))
    accuracies: dict[str, dict[int, float]] = {}
    for corruption, severity, folder in progress_bar(folders, desc="robustness", enabled=progress):
        result = run(folder, f"{corruption}/{severity}")
        accuracies.setdefault(corruption, {})[severity] = result.top1
        details.append(_detail(corruption, severity, result))

    errors = {c: {s: 1.0 - a for s, a in sev.items()} for c, sev in accuracies.items()}
    summary = summarize(errors, None if clean_acc is None else 1.0 - clean_acc, base)
    summary.update({"name": name, "data_path": str(data_path),
                    "clean_path": None if clean_dir is None else str(clean_dir), "image_size": size,
                    "preprocess": preprocess if transform is None else "custom", "preprocess_used": sorted(used),
                    "n_images": sum(d["n"] for d in details if d["corruption_type"] != "clean")})
    report = RobustnessReport(name=name, accuracies=accuracies, clean_accuracy=clean_acc, details=details,
                              summary=summary)
    if output_dir is not None:
        write_report(report, output_dir, baseline=base)
    return report


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
    files["heatmap"] = plot_error_heatmap(report.errors, out / HEATMAP_PNG, title=report.name,
                                          clean_error=report.clean_error)
    means = {r["corruption"]: r["mean_error"] for r in report.summary["corruptions"]}
    base_means = None
    if baseline is not None:
        base_means = dict(baseline.mean_errors or {})
        for c, sev in (baseline.errors or {}).items():
            if sev:
                base_means[c] = sum(sev.values()) / len(sev)
    files["bars"] = plot_corruption_bars(means, out / BARS_PNG, title=report.name, clean_error=report.clean_error,
                                         baseline=base_means, baseline_name=baseline.name if baseline else "baseline")
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
               "extra_mean_error": s["extra_mean_error"]}
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
                                     score_name="mCE" if has_mce else "mean error")
    return {"comparison_csv": out / COMPARISON_CSV, "comparison_txt": out / COMPARISON_TXT, "comparison_png": png}


__all__ = ["RobustnessReport", "compare_robustness", "evaluate_robustness", "scan_corruption_root",
           "write_report"]
