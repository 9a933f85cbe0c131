"""Compare finished runs: head, backbone, parameters (backbone / head), best val top-1, top-5, superclass top-1.

A run folder holds the engine's ``config.json`` (``model``, ``model_kwargs``, ``num_classes``,
``classes``, ``dataset``, optionally ``num_params``/``num_trainable``) and ``metrics.jsonl`` (one JSON object per line with
``phase``, ``epoch``, ``step`` and ``loss``, ``top1``, ``top5``, optionally ``super_top1``). A
staged run keeps one such folder per stage (``<run>/<stage>/``); each stage becomes a row.
Accuracies are the best value of each metric over the ``val`` records (as the study reported),
with the epoch of the best top-1. Parameter counts are those of the model the run trained: its class
count comes from the run (``num_classes``, else its class list, else its checkpoint), never from the
registry's default, so a 100-class PhiNet head counts 34,500 parameters, not the 1000-class 345,000.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..engine.records import read_config, read_metrics
from ..errors import DataError
from ..files import RunPaths, ensure_writable_dir, write_records, write_text

COLUMNS = [
    ("run", "run"),
    ("head", "head"),
    ("backbone", "backbone"),
    ("params_backbone", "params backbone"),
    ("params_head", "params head"),
    ("trainable", "trainable"),
    ("epoch", "best epoch"),
    ("top1", "val top-1"),
    ("top5", "val top-5"),
    ("super_top1", "superclass top-1"),
    ("dataset", "dataset"),
    ("num_classes", "classes"),
]

#: builder keywords that load weights; the report builds models only to count parameters
_WEIGHT_KWARGS = ("backbone_checkpoint", "backbone_pretrained", "pretrained", "checkpoint")


@dataclass
class RunRow:
    run: str
    head: str
    backbone: str
    params_backbone: int | None = None
    params_head: int | None = None
    trainable: int | None = None
    epoch: float | None = None  # fractional when validation ran mid-epoch
    top1: float | None = None
    top5: float | None = None
    super_top1: float | None = None
    dataset: str | None = None
    num_classes: int | None = None
    path: str = field(default="", repr=False)

    def cells(self) -> list[str]:
        return [f"{self.epoch:g}" if key == "epoch" and self.epoch is not None else _cell(getattr(self, key))
                for key, _ in COLUMNS]


@dataclass
class Comparison:
    rows: list[RunRow]
    table: str
    files: dict[str, Path] = field(default_factory=dict)


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def run_num_classes(folder: Path, config: dict) -> int | None:
    """The class count a run trained with: ``num_classes`` in its config, else the length of its class
    list (the engine saves ``num_classes: null`` when the dataset decides), else its checkpoint's."""
    if config.get("num_classes"):
        return int(config["num_classes"])
    if isinstance(config.get("classes"), list) and config["classes"]:
        return len(config["classes"])
    for path in (RunPaths(folder).last, RunPaths(folder).best):
        if path.is_file():
            import torch

            try:  # mmap: the weights are not read, only the small metadata entries
                ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception:
                continue
            if isinstance(ckpt, dict) and ckpt.get("num_classes"):
                return int(ckpt["num_classes"])
    return None


def run_dataset(config: dict) -> str | None:
    """The dataset's name: the built-in one (``digits``, ``cifar100``), or the image folder's name."""
    dataset = config.get("dataset")
    if dataset in (None, "folder"):
        data_path = config.get("data_path")
        return Path(str(data_path)).name if data_path else None
    return str(dataset)


def parameter_split(config: dict, num_classes: int | None = None) -> tuple[int | None, int | None]:
    """(backbone, head) parameter counts of the run's model with ``num_classes`` outputs (default: the
    config's ``num_classes``), built on the meta device (no memory)."""
    import torch

    from ..models import create_model

    kwargs = {k: v for k, v in (config.get("model_kwargs") or {}).items() if k not in _WEIGHT_KWARGS}
    num_classes = num_classes if num_classes is not None else config.get("num_classes")
    model = None
    for device in () if _runs_code(config.get("model")) else ("meta", "cpu"):  # meta: no memory, no init cost
        try:
            with torch.device(device):
                model = create_model(config["model"], num_classes=num_classes, **kwargs)
            break
        except Exception:
            continue
    if model is None:  # a model this install does not know: fall back on the engine's count
        total = config.get("num_params")
        return (int(total), None) if total is not None else (None, None)
    if hasattr(model, "backbone") and hasattr(model, "head"):
        return _count(model.backbone), _count(model.head)
    head = _count(model.get_classifier()) if hasattr(model, "get_classifier") else 0
    return _count(model) - head, head


def _runs_code(model) -> bool:
    """A run of a ``file.py:factory`` model: building it would run a Python file the user did not name here."""
    from ..models.model_spec import is_source_spec, parse_spec

    try:
        return is_source_spec(str(model)) and parse_spec(str(model)).runs_code
    except Exception:  # noqa: BLE001 - a malformed name: not a file spec
        return False


def _names(config: dict) -> tuple[str, str]:
    """(head, backbone) of a run: from ``model_kwargs["head"]``, the registry's metadata, or the model name."""
    model = str(config.get("model", "?"))
    kwargs = config.get("model_kwargs") or {}
    if kwargs.get("head"):
        return str(kwargs["head"]), model
    try:
        from ..models import model_info

        extra = model_info(model).extra
        return str(extra.get("head", "linear")), str(extra.get("backbone", model))
    except Exception:
        return "linear", model


def _best(records: list[dict], key: str):
    values = [(r[key], r) for r in records if isinstance(r.get(key), (int, float)) and not math.isnan(r[key])]
    return max(values, key=lambda v: v[0]) if values else (None, None)


def summarize_folder(folder: Path, name: str) -> RunRow:
    """One row from a folder holding ``config.json`` and ``metrics.jsonl``."""
    config = read_config(folder)  # the same reader as `plot`: a damaged file is one line naming it
    if "model" not in config:
        raise DataError(f"{folder / 'config.json'} has no 'model' entry")
    val = [r for r in read_metrics(folder) if r.get("phase") == "val"]
    head, backbone = _names(config)
    num_classes = run_num_classes(folder, config)
    params_backbone, params_head = parameter_split(config, num_classes)
    top1, best = _best(val, "top1")
    return RunRow(
        run=name,
        head=head,
        backbone=backbone,
        params_backbone=params_backbone,
        params_head=params_head,
        trainable=config.get("num_trainable"),
        epoch=best.get("epoch") if best else None,
        top1=top1,
        top5=_best(val, "top5")[0],
        super_top1=_best(val, "super_top1")[0],
        dataset=run_dataset(config),
        num_classes=num_classes,
        path=str(folder),
    )


def summarize_run(run_dir: str | os.PathLike) -> list[RunRow]:
    """The rows of one run folder: itself if it is a run, plus one per stage sub-folder (in run order)."""
    from ..engine.records import run_folders

    run_dir = Path(run_dir)
    return [summarize_folder(d, run_dir.name if d == run_dir else f"{run_dir.name}/{d.name}")
            for d in run_folders(run_dir)]


def format_table(rows: list[RunRow]) -> str:
    """An aligned text table."""
    header = [title for _, title in COLUMNS]
    cells = [r.cells() for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def markdown_table(rows: list[RunRow]) -> str:
    header = [title for _, title in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_csv(rows: list[RunRow], path: Path) -> Path:
    keys = [key for key, _ in COLUMNS] + ["path"]
    return write_records(path, keys, (asdict(r) for r in rows))


def compare_runs(run_dirs, output: str | os.PathLike | None = None, plot: bool = True) -> Comparison:
    """Summarise run folders; with ``output``, write ``comparison.csv``, ``comparison.md`` and a bar chart PNG."""
    rows = [row for d in run_dirs for row in summarize_run(d)]
    result = Comparison(rows=rows, table=format_table(rows))
    if output is not None:
        out = Path(output)
        ensure_writable_dir(out, flag="-o/--output")  # a file in the way is one line, after the runs were read
        result.files["csv"] = write_csv(rows, out / "comparison.csv")
        result.files["markdown"] = write_text(out / "comparison.md", markdown_table(rows))
        if plot:
            from ..plots.compare import plot_comparison

            result.files["png"] = plot_comparison(rows, out / "comparison.png")
    return result
