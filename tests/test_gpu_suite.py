"""GPU readiness checked on the CPU (issue 15): ``benchmarks/gpu_suite.py --device cpu --quick`` runs end
to end, so the suite cannot rot between GPU runs (it writes only to ``--results``, never to
benchmarks/RESULTS.md); the CUDA training defaults; restoring CUDA generators on fewer GPUs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ventralkit.studies.feedback import forward_macs
from ventralkit.models import create_model

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
    for model in ("cornet_z", "phinet"):  # images/s of the three loops, their ratios, the FLOPs of a step
        cells = _row(text, model, columns=11)
        assert cells[1:3] == ["32", "4"]
        plain, fp32, fast = map(float, cells[3:6])
        assert min(plain, fp32, fast) > 0
        assert _number(cells[6]) == pytest.approx(fp32 / plain, abs=0.006)
        assert _number(cells[7]) == pytest.approx(fast / plain, abs=0.006)
        # forward + backward: the backward computes input and weight gradients, each as costly as the forward
        # (the first layer needs no input gradient), so 2.5-3x the forward's FLOPs counted here with hooks
        forward = 2 * forward_macs(create_model(model), 32) / 1e9
        assert 2.5 * forward <= float(cells[8]) <= 3 * forward * 1.001, (cells[8], forward)
        assert cells[9:] == ["n/a / n/a / n/a"] * 2  # no MFU and no device memory on the CPU
    cells = _row(text, "cornet_z", columns=6, after="### Feature extraction")
    original, ours = float(cells[1]), float(cells[2])
    assert _number(cells[3]) == pytest.approx(ours / original, abs=0.006)
    assert float(cells[4]) < 1e-5  # the same float32 features, batched or one image at a time
    shares = re.findall(r"([\d.]+) img/s = \*\*(\d+)%\*\* of the device-memory-fed ([\d.]+) img/s", text)
    assert "--data_backend gpu" in text and len(shares) == 2
    for ips, percent, ceiling in shares:
        assert abs(int(percent) - 100 * float(ips) / float(ceiling)) <= 0.51


def _row(text: str, first: str, columns: int, after: str = "### Train step") -> list[str]:
    """The cells of the first table row that starts with ``first`` after the heading ``after``."""
    lines = text[text.index(after):].splitlines()
    cells = next([c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines if ln.startswith(f"| {first} |"))
    assert len(cells) == columns, cells
    return cells


def _number(cell: str) -> float:
    """``0.90x`` or ``**2.32x**`` -> 0.9, 2.32."""
    return float(cell.strip("*").rstrip("x"))


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


def test_cuda_defaults_fill_what_was_not_given_and_leave_the_cpu_alone(monkeypatch):
    from ventralkit.engine.config import TrainConfig
    from ventralkit.engine.device_defaults import fit_device

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    cfg = TrainConfig.build(dataset="digits", amp="bf16")
    assert fit_device(cfg, torch.device("cpu")) is cfg and not torch.backends.cudnn.benchmark
    on_gpu = fit_device(cfg, torch.device("cuda"))
    assert on_gpu.channels_last is True and isinstance(on_gpu.workers, int) and torch.backends.cudnn.benchmark
    assert on_gpu.sources["channels_last"] == on_gpu.sources["workers"] == "device"
    assert "(device)" in on_gpu.describe()
    given = TrainConfig.build(dataset="digits", amp="bf16", channels_last=False, workers=3)
    kept = fit_device(given, torch.device("cuda"))
    assert kept.channels_last is False and kept.workers == 3
    assert fit_device(TrainConfig.build(dataset="digits"), torch.device("cuda")).channels_last is False  # fp32


def test_resume_restores_the_cuda_generators_of_the_gpus_there_are(monkeypatch):
    """A checkpoint written with 4 GPUs visible resumes on a 1-GPU machine (no invalid device ordinal)."""
    from ventralkit.engine import checkpoint

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: calls.append((int(state[0]), device)))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [torch.tensor([k], dtype=torch.uint8) for k in range(4)])
    state = checkpoint.rng_state()
    checkpoint.set_rng_state(state)
    assert calls == [(0, 0)]
