"""The whole ``ventralkit train`` command against CORnet ``run.py``'s training loop, each as a process.

Both are timed from the start of the process to its exit (imports, data, model, training, the end of
epoch validation, checkpoints, records, and ventralkit's figure), on the same folder of 500x375 JPEGs,
with the same model, batch size, image size and DataLoader workers. The reference is
``cornet_train_loop.py`` (run.py's loop restated: per-step loss and accuracy on the host). The two are
run in turn ``--repeats`` times (interleaved, so a change in the machine's load hits both) and the
best run of each counts. Images/s = training images / process seconds.

    python benchmarks/bench_train_command.py --model Z --steps 12 [--repeats 3] [--write]
    python benchmarks/bench_train_command.py --model S --steps 3
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import append_results, machine_line

HERE = Path(__file__).resolve().parent
MODEL_NAMES = {"Z": "CORnet-Z", "S": "CORnet-S", "R": "CORnet-R", "RT": "CORnet-RT"}


def make_folder(root: Path, train_images: int, val_images: int, classes: int = 4, seed: int = 0) -> Path:
    """``train/`` and ``val/`` class folders of 500x375 JPEGs that compress like photographs (smooth shapes and a
    little noise, ~40-80 kB each), so decoding costs what it costs on real images."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:375, 0:500].astype(np.float32)
    for split, n in (("train", train_images), ("val", val_images)):
        for i in range(n):
            folder = root / split / f"class_{i % classes}"
            folder.mkdir(parents=True, exist_ok=True)
            fx, fy, phase = rng.uniform(0.005, 0.05, 3) * (1, 1, 600)
            base = np.stack([np.sin(xx * fx + phase + c) * np.cos(yy * fy + c) for c in range(3)], -1)
            img = (127 + 100 * base + rng.normal(0, 12, base.shape)).clip(0, 255).astype(np.uint8)
            Image.fromarray(img).save(folder / f"img_{i:04d}.jpg", quality=90)
    return root


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """Seconds from starting the process to its exit, and the CPU seconds it and its DataLoader workers
    used (user + system; less sensitive than the wall time to what else runs on a shared machine)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=1800)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def commands(args, data: Path, out: Path) -> dict[str, list[str]]:
    common = ["--data_path", str(data), "--model", args.model, "--workers", str(args.workers),
              "--batch_size", str(args.batch), "--lr", "0.01"]
    return {
        "CORnet run.py train loop (cornet_train_loop.py)":
            [sys.executable, str(HERE / "cornet_train_loop.py"), *common, "--steps", str(args.steps),
             "-o", str(out / "ref")],
        "ventralkit train":
            [sys.executable, "-m", "ventralkit.cli", "train", *common, "--imsize", "224", "--epochs", "1",
             "--max_steps_per_epoch", str(args.steps), "--device", "cpu", "--no_progress", "-o", str(out / "vk")],
    }


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min) / {five:.1f} (5 min)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="Z", choices=sorted(MODEL_NAMES))
    ap.add_argument("--steps", type=int, default=None, help="training steps (default 12 for Z, 3 otherwise)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs of each; the best counts")
    ap.add_argument("--data", default=None, help="reuse (or create) the JPEG folder here")
    ap.add_argument("--device", default="cpu", help="cpu only (accepted for run_all.py)")
    ap.add_argument("--write", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = ap.parse_args()
    if args.device != "cpu":
        print("bench_train_command: CPU only; skipped")
        return
    args.steps = args.steps or (12 if args.model == "Z" else 3)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else Path(tmp) / "data"
        n_train = args.steps * args.batch
        if not (data / "train").is_dir():
            make_folder(data, n_train, args.batch)
        env = {**os.environ, "VENTRALKIT_NO_PROGRESS": "1", "PYTHONUNBUFFERED": "1"}
        cmds = commands(args, data, Path(tmp))
        runs = {name: [] for name in cmds}
        loads = [load_note()]
        for _ in range(args.repeats):
            for name, cmd in cmds.items():
                for old in ("ref", "vk"):  # each run starts from an empty output folder
                    shutil.rmtree(Path(tmp) / old, ignore_errors=True)
                runs[name].append(timed(cmd, env))
                print(f"{name}: {runs[name][-1][0]:.2f} s, {runs[name][-1][1]:.2f} CPU s", flush=True)
        loads.append(load_note())
    best = {name: min(r[0] for r in rs) for name, rs in runs.items()}
    base = n_train / best[next(iter(cmds))]
    lines = [f"### train command vs CORnet run.py loop: {MODEL_NAMES[args.model]}, {args.steps} steps, batch "
             f"{args.batch}, 224 px, {args.workers} workers, 500x375 JPEGs, best of {args.repeats} interleaved "
             f"({machine_line('cpu')})", "",
             f"Load: at the start {loads[0]}, at the end {loads[1]}.", "",
             "| process | seconds (best) | all runs (s) | CPU s (least) | images/s | vs run.py loop |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, sec in best.items():
        every = ", ".join(f"{r[0]:.1f}" for r in runs[name])
        cpu = min(r[1] for r in runs[name])
        lines.append(f"| {name} | {sec:.2f} | {every} | {cpu:.1f} | {n_train / sec:.2f} | "
                     f"**{n_train / sec / base:.2f}x** |")
    ref, ours = (runs[name] for name in cmds)
    pairs = sorted(r[0] / o[0] for r, o in zip(ref, ours))  # each repeat runs the two back to back
    lines += ["", f"Per repeat (the two run back to back, so under about the same load), ventralkit's images/s "
                  f"over the loop's: median {statistics.median(pairs):.2f}x (range {pairs[0]:.2f}-{pairs[-1]:.2f}x)."]
    text = "\n".join(lines)
    print(text)
    if args.write:
        append_results(text)


if __name__ == "__main__":
    main()
