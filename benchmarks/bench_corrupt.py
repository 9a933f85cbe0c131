"""``ventralkit corrupt`` against a one-process loop that calls ``imagecorruptions.corrupt`` and PIL directly.

Both run as fresh processes on the same JPEG folder (15 ImageNet-C corruptions x 5 severities per image,
JPEG quality 85 with optimize=True as the released sets): the loop reads each image once, creates each
output folder once and writes every corrupted copy with ``Image.save``, nothing else (no seeding, no
temporary names, no resume). Each is timed on a small and a large folder; the throughput "net of fixed
cost" is (outputs_large - outputs_small) / (time_large - time_small), which cancels start-up, imports and
numba's compilation of glass_blur. Runs are interleaved (loop, 1 worker, 2 workers, ...) and the best of
``--repeats`` is kept, since other jobs share the machine.

    python benchmarks/bench_corrupt.py                 # 64 and 224 px
    python benchmarks/bench_corrupt.py --write         # append the table to benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent

LOOP = r'''
import os, sys
from pathlib import Path
import numpy as np
from PIL import Image
from imagecorruptions import corrupt, get_corruption_names
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
names = get_corruption_names("common")
images = sorted(p for p in src.rglob("*") if p.is_file())
made = set()
for path in images:
    rel = path.relative_to(src)
    arr = np.asarray(Image.open(path).convert("RGB"))
    for name in names:
        for severity in range(1, 6):
            out = dst / name / str(severity) / rel
            if out.parent not in made:
                out.parent.mkdir(parents=True, exist_ok=True)
                made.add(out.parent)
            Image.fromarray(np.uint8(corrupt(arr, severity, name))).save(out, quality=85, optimize=True)
'''


def make_folder(root: Path, n: int, size: int, classes: int = 4, seed: int = 0) -> Path:
    """``n`` size x size JPEGs (smooth colour fields with noise, like photos) in ``classes`` class folders."""
    rng = np.random.RandomState(seed)
    for k in range(n):
        low = rng.randint(0, 256, size=(6, 6, 3)).astype(np.uint8)
        img = Image.fromarray(low).resize((size, size), Image.BICUBIC)
        noise = rng.randint(-25, 26, size=(size, size, 3))
        img = Image.fromarray(np.clip(np.asarray(img, dtype=int) + noise, 0, 255).astype(np.uint8))
        folder = root / f"n{k % classes:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        img.save(folder / f"img_{k:05d}.JPEG", quality=90)
    return root


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and the children it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_once(kind: str, src: Path, work: Path, env: dict) -> tuple[float, float]:
    dst = work / f"out_{kind}"
    shutil.rmtree(dst, ignore_errors=True)
    if kind == "loop":
        cmd = [sys.executable, "-c", LOOP, str(src), str(dst)]
    else:
        cmd = [sys.executable, "-m", "ventralkit", "corrupt", str(src), str(dst), "--corruptions", "benchmark",
               "--quiet", "-j", kind]
    result = timed(cmd, env)
    shutil.rmtree(dst, ignore_errors=True)
    return result


def measure(size: int, small: int, large: int, workers: list[int], repeats: int) -> list[dict]:
    env = dict(os.environ, VENTRALKIT_NO_PROGRESS="1", OMP_NUM_THREADS="1")
    kinds = ["loop"] + [str(w) for w in workers]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folders = {n: make_folder(tmp / f"src{n}", n, size) for n in (small, large)}
        best = {(k, n): (float("inf"), float("inf")) for k in kinds for n in folders}
        for _ in range(repeats):
            for n, src in folders.items():
                for kind in kinds:
                    best[kind, n] = min(best[kind, n], run_once(kind, src, tmp, env))
    outputs = (large - small) * 15 * 5
    rows = []
    for kind in kinds:
        (small_s, small_cpu), (large_s, large_cpu) = best[kind, small], best[kind, large]
        # CPU time is only seen for work done in the timed process (the loop, -j 1): pool workers are the
        # forkserver's children, not ours
        cpu_ms = 1000 * (large_cpu - small_cpu) / outputs if kind in ("loop", "1") else None
        rows.append({"kind": kind, "small_s": small_s, "large_s": large_s, "net": outputs / (large_s - small_s),
                     "cpu_ms": cpu_ms})
    base = rows[0]["net"]
    for row in rows:
        row["ratio"] = row["net"] / base
    return rows


def table(size: int, small: int, large: int, rows: list[dict]) -> str:
    lines = [f"{size} px: {small} and {large} source images x 15 corruptions x 5 severities "
             f"({small * 75} and {large * 75} outputs)", "",
             "| run | small (s) | large (s) | outputs/s net of fixed cost | vs loop | CPU ms per output |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        name = "one-process loop (imagecorruptions + PIL)" if r["kind"] == "loop" else f"ventralkit corrupt -j {r['kind']}"
        cpu = "" if r["cpu_ms"] is None else f"{r['cpu_ms']:.2f}"
        lines.append(f"| {name} | {r['small_s']:.2f} | {r['large_s']:.2f} | {r['net']:.1f} | **{r['ratio']:.2f}x** "
                     f"| {cpu} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    p.add_argument("--workers", type=int, nargs="+", default=sorted({1, 2, os.cpu_count() or 1}))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--write", action="store_true", help="append the result to benchmarks/RESULTS.md")
    p.add_argument("--device", default="cpu", help="ignored (CPU only); accepted for run_all.py")
    args = p.parse_args()
    # the large folders are big enough that the noise of a shared machine (a few tenths of a second per run, seen
    # as 0.97-1.41x for the same code with 40 images at 64 px) stays small against the work they add
    counts = {64: (4, 120), 224: (1, 16)}
    parts = []
    for size in args.sizes:
        small, large = counts.get(size, (1, 5))
        rows = measure(size, small, large, args.workers, args.repeats)
        parts.append(table(size, small, large, rows))
        print(parts[-1], flush=True)
    load = os.getloadavg()[0]
    head = (f"## corrupt vs a one-process loop (bench_corrupt.py), {_dt.datetime.now():%Y-%m-%d %H:%M}\n\n"
            f"Machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, Python "
            f"{platform.python_version()}, load average {load:.1f} at the end (shared machine); "
            f"fresh processes, OMP_NUM_THREADS=1, best of {args.repeats} interleaved runs.\n")
    text = head + "\n" + "\n\n".join(parts)
    if args.write:
        with (HERE / "RESULTS.md").open("a") as fh:
            fh.write("\n" + text.rstrip() + "\n")


if __name__ == "__main__":
    main()
