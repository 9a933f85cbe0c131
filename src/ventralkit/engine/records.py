"""Run records: ``metrics.jsonl`` (one JSON object per train log / validation), ``metrics.csv``
(one row per epoch), optional TensorBoard, and the printed end-of-run summary.

Record keys follow CORnet-100's logs: train ``{loss, top1, top5, learning_rate, dur, data_load_dur}``,
val ``{loss, top1, top5, dur}``; every record also has ``phase``, ``epoch`` and ``step``.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from ..files import write_records, write_text

CSV_COLUMNS = ["epoch", "train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5",
               "learning_rate", "epoch_seconds"]


def _clean(v):
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    return v


class RunRecords:
    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = False):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.jsonl = self.run_dir / "metrics.jsonl"
        self.csv = self.run_dir / "metrics.csv"
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                from ..errors import ConfigError

                raise ConfigError("--tensorboard needs the tensorboard package: pip install 'ventralkit[tensorboard]'") from None
            self.tb = SummaryWriter(str(self.run_dir / "tensorboard"))

    def truncate_after(self, global_step: int) -> None:
        """On resume, drop records written after the checkpoint (the interrupted tail)."""
        if not self.enabled or not self.jsonl.exists():
            return
        lines, _ = metrics_lines(self.jsonl)  # a line cut short by the interruption is left out
        keep = [ln for ln, rec in lines if rec.get("step", 0) <= global_step]
        write_text(self.jsonl, "".join(ln + "\n" for ln in keep))
        if self.csv.exists():
            rows = list(csv.DictReader(self.csv.open()))
            last_epoch = max((json.loads(ln)["epoch"] for ln in keep), default=0)
            rows = [r for r in rows if float(r["epoch"]) <= last_epoch]
            self._write_csv(rows)

    def log(self, phase: str, epoch: float, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        row = {"phase": phase, "epoch": round(epoch, 6), "step": step, **{k: _clean(v) for k, v in metrics.items()}}
        with self.jsonl.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and _clean(v) is not None:
                    self.tb.add_scalar(f"{phase}/{k}", v, step)

    def epoch_row(self, row: dict) -> None:
        if not self.enabled:
            return
        rows = list(csv.DictReader(self.csv.open())) if self.csv.exists() else []
        rows = [r for r in rows if int(float(r["epoch"])) != row["epoch"]] + [row]
        self._write_csv(rows)

    def _write_csv(self, rows: list[dict]) -> None:
        write_records(self.csv, list(CSV_COLUMNS), rows)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def is_run_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "metrics.jsonl").is_file()


def run_folders(path: str | Path) -> list[Path]:
    """The run folders under ``path``: itself if it is one, plus its stage sub-folders in run order.

    A staged recipe writes one run folder per stage (``<run>/<stage>/``); `plot` and `compare` both
    accept the staged run's root through this one function."""
    from ..errors import DataError

    path = Path(path)
    if not path.is_dir():
        raise DataError(f"run folder {path} does not exist")
    runs = [path] if is_run_folder(path) else []
    stages = [d for d in path.iterdir() if d.is_dir() and is_run_folder(d)]
    runs += sorted(stages, key=lambda d: ((d / "metrics.jsonl").stat().st_mtime, d.name))
    if not runs:
        raise DataError(f"{path} is not a run folder: it has no config.json and metrics.jsonl (nor stage folders "
                        "with them)")
    return runs


def metrics_lines(path: Path) -> tuple[list[tuple[str, dict]], int]:
    """The records of a ``metrics.jsonl`` as (line, record) pairs, and how many lines were left out.

    The one reader of the file, for resume and for `plot`/`compare` alike: a job killed while writing
    leaves its last line cut short, and a line that is not a JSON object cannot be a record, so such
    lines are skipped (counted) rather than stopping the reader."""
    lines, skipped = [], 0
    for ln in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        if not ln.strip():
            continue
        try:
            rec = json.loads(ln)
        except json.JSONDecodeError:
            rec = None
        if isinstance(rec, dict):
            lines.append((ln, rec))
        else:
            skipped += 1
    return lines, skipped


def read_metrics(run_dir: str | Path) -> list[dict]:
    """All records of a run folder's ``metrics.jsonl``; lines that are not records (the last one of a
    killed job, cut short) are left out with a warning naming the file."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        from ..errors import DataError

        raise DataError(f"{run_dir} is not a run folder (no metrics.jsonl)")
    lines, skipped = metrics_lines(path)
    if skipped:
        import warnings

        warnings.warn(f"{path}: {skipped} line{'s' if skipped > 1 else ''} that {'are' if skipped > 1 else 'is'} "
                      "not a complete record (cut short when the run was stopped?) left out", stacklevel=2)
    return [rec for _, rec in lines]


def read_config(run_dir: str | Path) -> dict:
    """A run folder's ``config.json`` as the flat dict the engine writes (the options, with
    ``model_kwargs`` a dict), or a one-line ``DataError`` naming the file when it is not one."""
    from ..errors import DataError

    path = Path(run_dir) / "config.json"
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
        problem = None if isinstance(doc, dict) else f"it holds a JSON {type(doc).__name__}, not an object"
    except OSError as err:
        doc, problem = None, err.strerror or type(err).__name__
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        doc, problem = None, f"not valid JSON: {getattr(err, 'msg', None) or err.reason}"
    if problem is None:  # the parts a reader takes apart must have their shape
        inner = doc.get("config") if isinstance(doc.get("config"), dict) else {}
        parts = {"config": doc.get("config"), "model_kwargs": doc.get("model_kwargs"),
                 "config.model_kwargs": inner.get("model_kwargs")}
        bad = [name for name, value in parts.items() if value is not None and not isinstance(value, dict)]
        problem = f"its '{bad[0]}' is not a JSON object" if bad else None
    if problem:
        raise DataError(f"{path} is not the run config `ventralkit train` writes ({problem}); restore it from a "
                        "copy, or leave this run out")
    return doc
