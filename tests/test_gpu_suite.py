"""``benchmarks/gpu_suite.py --device cpu --quick`` runs end to end, so the GPU suite cannot rot between
GPU runs (issue 15); it writes only to ``--results``, never to benchmarks/RESULTS.md."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_suite_quick_on_cpu(tmp_path):
    results = ROOT / "benchmarks" / "RESULTS.md"
    before = results.read_bytes()
    out = tmp_path / "suite.md"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), "--device", "cpu", "--quick",
                           "--results", str(out)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert results.read_bytes() == before
    text = out.read_text()
    assert text.startswith("\n## GPU suite (gpu_suite.py --quick), CPU, ")
    assert "failed" not in text, text
    # without CUDA the CUDA tests are collected and skipped as a whole, cleanly
    assert re.search(r"CUDA tests .*: exit [05], 1 skipped", text), text  # 5: nothing left to run
    for model in ("cornet_z", "phinet"):  # a row of numbers and two ratios for each quick model
        assert re.search(rf"\| {model} \| 32 \| 4 \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+x \| \*\*[\d.]+x\*\* \|", text)
    assert re.search(r"\| cornet_z \| [\d.]+ \| [\d.]+ \| \*\*[\d.]+x\*\* \| \d\.\de-\d\d \|", text)  # features
    assert "--data_backend gpu" in text and len(re.findall(r"\*\*\d+%\*\* of the device-memory-fed", text)) == 2


def test_peak_table_matches_device_names():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_suite
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    names = {"NVIDIA H200": 989.5, "NVIDIA H200 NVL": 835.5, "NVIDIA H100 80GB HBM3": 989.5, "NVIDIA H100 PCIe": 756.0,
             "NVIDIA A100-SXM4-80GB": 312.0, "NVIDIA GeForce RTX 4090": None}
    for name, want in names.items():
        got = next((t for k, t in gpu_suite.PEAK_BF16_TFLOPS if k.lower() in name.lower()), None)
        assert got == want, name
