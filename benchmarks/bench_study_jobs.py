"""A 4-run feedback study: one process, one run after another, against ``--executor local --jobs 2`` (submitit).

Both are the ``ventralkit study feedback`` command as a fresh process on the same two cores (the processes are
pinned to them), every run on one torch thread: the sequential study with ``--threads 1``, the jobs with the
cores split between them (2 cores // 2 jobs = 1 thread each, what the executor chooses by itself). The grid is
``--outer_times 1 2 --designs gated --seeds 0 1`` (two feed-forward and two gated CORnet-S100 runs) at 16 px,
batch 32, ``--max_steps_per_epoch`` steps and one validation per run. The wall time includes everything the
command does (start-up, each job's own interpreter and imports, checkpoints, the table); the two tables must be
identical (same numbers, whichever way the runs were trained). Other work on the machine shares these cores: each
timing reports the load average before and after and the share of the two cores' time that other processes used
meanwhile (the cores' busy time from /proc/stat less the CPU time of the study's own processes). A study of 2 jobs
suffers from a foreign process on one core more than one of 1 thread does, so only timings with a small share
are comparable.

    python benchmarks/bench_study_jobs.py                    # 30 steps per run
    python benchmarks/bench_study_jobs.py --steps 60 --write # append the table to benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GRID = ["--outer_times", "1", "2", "--designs", "gated", "--seeds", "0", "1", "--epochs", "1", "--imsize", "16",
        "--batch_size", "32", "--no_inside"]


def busy_seconds(cores: set[int]) -> float:
    """CPU-seconds the ``cores`` have been busy since boot (/proc/stat: all but idle and iowait)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    with open("/proc/stat") as fh:
        for line in fh:
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu" and int(name[3:]) in cores:
                values = [int(v) for v in fields[:8]]
                total += sum(values) - values[3] - values[4]
    return total / tick


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_study(out: Path, steps: int, extra: list[str], cores: set[int]) -> tuple[float, float]:
    """Seconds the command took, start to exit (it must succeed), and the share of the cores' time other
    processes used meanwhile."""
    cmd = [sys.executable, "-m", "ventralkit.cli", "study", "feedback", "-o", str(out), *GRID,
           "--max_steps_per_epoch", str(steps), *extra]
    env = {**os.environ, "VENTRALKIT_NO_PROGRESS": "1"}
    env.pop("OMP_NUM_THREADS", None)  # the command and the executor choose the threads
    busy0, own0, t0 = busy_seconds(cores), children_cpu(), time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env,
                          preexec_fn=lambda: os.sched_setaffinity(0, cores))
    seconds = time.perf_counter() - t0
    others = max(0.0, (busy_seconds(cores) - busy0) - (children_cpu() - own0)) / (seconds * len(cores))
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds, others


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30, help="training steps per run (default 30)")
    ap.add_argument("--repeats", type=int, default=1, help="interleaved pairs; the best of each is kept")
    ap.add_argument("--write", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = ap.parse_args()
    cores = set(sorted(os.sched_getaffinity(0))[:2])
    if len(cores) < 2:
        sys.exit("needs 2 cores")
    times: dict[str, list[float]] = {"sequential": [], "jobs": []}
    foreign: dict[str, list[float]] = {"sequential": [], "jobs": []}
    loads, tables = [], {}
    root = Path(tempfile.mkdtemp(prefix="bench_study_jobs_"))
    try:
        for rep in range(args.repeats):
            for name, extra in (("sequential", ["--threads", "1"]), ("jobs", ["--executor", "local", "--jobs", "2"])):
                out = root / f"{name}{rep}"
                before = os.getloadavg()[0]
                seconds, others = run_study(out, args.steps, extra, cores)
                times[name].append(seconds)
                foreign[name].append(others)
                loads.append((name, before, os.getloadavg()[0]))
                tables[name] = (out / "feedback_study.csv").read_bytes()
                print(f"{name}: {seconds:.1f} s (load average {before:.2f} -> {loads[-1][2]:.2f}; other processes "
                      f"used {others:.0%} of the 2 cores)", flush=True)
                shutil.rmtree(out)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    same = tables["sequential"] == tables["jobs"]
    seq, par = min(times["sequential"]), min(times["jobs"])
    text = report(args, seq, par, same, loads, times, foreign)
    print(text)
    if args.write:
        with (HERE / "RESULTS.md").open("a") as fh:
            fh.write("\n" + text.rstrip() + "\n")


def report(args, seq: float, par: float, same: bool, loads, times, foreign) -> str:
    import torch

    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    load_text = "; ".join(f"{n} {a:.2f} -> {b:.2f}" for n, a, b in loads)
    return "\n".join([
        f"## Study as jobs: 4-run feedback study, one process vs --executor local --jobs 2 (bench_study_jobs.py), "
        f"{stamp}",
        "",
        f"CORnet-S100, 16 px, batch 32, {args.steps} steps + one validation (359 images) per run, one torch thread "
        f"per run, 2 cores (pinned); torch {torch.__version__}; best of {args.repeats}.",
        "",
        "| study | wall s (each repeat) | other processes' share of the 2 cores | best s | speed-up |",
        "|---|---|---|---|---|",
        f"| one process, one run after another (--threads 1) | {', '.join(f'{t:.1f}' for t in times['sequential'])} "
        f"| {', '.join(f'{f:.0%}' for f in foreign['sequential'])} | {seq:.1f} | 1.00x |",
        f"| --executor local --jobs 2 (1 thread per job) | {', '.join(f'{t:.1f}' for t in times['jobs'])} "
        f"| {', '.join(f'{f:.0%}' for f in foreign['jobs'])} | {par:.1f} | {seq / par:.2f}x |",
        "",
        f"Tables identical: {'yes' if same else 'NO'}. Load average (1 min) before -> after each timing: {load_text}.",
    ])


if __name__ == "__main__":
    main()
