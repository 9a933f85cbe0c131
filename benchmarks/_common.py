"""Shared by the benchmark scripts: a one-line machine description and appending to RESULTS.md."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine_line(device: torch.device | str = "cpu") -> str:
    device = torch.device(device)
    if device.type == "cuda":
        hw = torch.cuda.get_device_name(device)
    else:
        hw = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} threads"
    return f"{hw}; torch {torch.__version__}; {datetime.date.today().isoformat()}"


def append_results(text: str) -> None:
    with RESULTS.open("a") as fh:
        fh.write("\n" + text.rstrip() + "\n")
