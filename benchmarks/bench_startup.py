"""Start-up time of ``ventralkit`` commands: this checkout against an earlier commit (default e027d32, before
the lazy command table), and ``import torch`` for scale.

Each command runs as a fresh ``python -m ventralkit ...`` process (what a user's shell does); the earlier
commit's ``src/`` is exported with ``git archive`` and put first on PYTHONPATH. Runs are interleaved and the
best of ``--repeats`` is kept (other jobs share the machine).

    python benchmarks/bench_startup.py
    python benchmarks/bench_startup.py --write       # append the table to benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
COMMANDS = [["--help"], ["models"], ["corrupt", "--help"], ["plot", "--help"], ["compare", "--help"],
            ["prepare", "--help"], ["train", "--help"]]


def timed(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def export(commit: str, dest: Path) -> Path:
    archive = dest / "src.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), commit, "src"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", default="e027d32", help="commit to compare with")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--write", action="store_true", help="append the result to benchmarks/RESULTS.md")
    p.add_argument("--device", default="cpu", help="ignored; accepted for run_all.py")
    args = p.parse_args()
    base_env = dict(os.environ, VENTRALKIT_NO_PROGRESS="1")
    with tempfile.TemporaryDirectory() as tmp:
        old_src = export(args.before, Path(tmp))
        envs = {"before": dict(base_env, PYTHONPATH=str(old_src)), "now": dict(base_env, PYTHONPATH=str(REPO / "src"))}
        best: dict[tuple, float] = {}
        torch_s = float("inf")
        for _ in range(args.repeats):
            torch_s = min(torch_s, timed([sys.executable, "-c", "import torch"], base_env))
            for command in COMMANDS:
                for which, env in envs.items():
                    key = (which, " ".join(command))
                    best[key] = min(best.get(key, float("inf")),
                                    timed([sys.executable, "-m", "ventralkit", *command], env))
    load = os.getloadavg()[0]
    lines = [f"## CLI start-up (bench_startup.py), {_dt.datetime.now():%Y-%m-%d %H:%M}", "",
             f"Machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, Python "
             f"{platform.python_version()}, load average {load:.1f} at the end (shared machine); fresh processes, "
             f"best of {args.repeats} interleaved runs; `python -c 'import torch'` alone: {torch_s:.2f} s.", "",
             f"| command | before ({args.before}) (s) | now (s) | speed-up |", "|---|---:|---:|---:|"]
    for command in COMMANDS:
        c = " ".join(command)
        lines.append(f"| ventralkit {c} | {best['before', c]:.2f} | {best['now', c]:.2f} | "
                     f"{best['before', c] / best['now', c]:.1f}x |")
    text = "\n".join(lines)
    print(text)
    if args.write:
        with (HERE / "RESULTS.md").open("a") as fh:
            fh.write("\n" + text.rstrip() + "\n")


if __name__ == "__main__":
    main()
