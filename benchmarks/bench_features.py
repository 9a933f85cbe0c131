"""Feature extraction images/s: ventralkit's ``extract_features`` against CORnet ``run.py test``'s loop.

The baseline is the original one-image-at-a-time loop (docs/reference/cornet.md section 3.4): open each file
with PIL (``convert('RGB')``), ``Resize((224, 224))``, ``ToTensor``, ``Normalize``, a forward pass on a
batch of one under ``torch.no_grad``, a forward hook that copies the layer's output to numpy, and
``np.concatenate`` at the end. ventralkit extracts the same layer and time step from the same JPEG
files (a DataLoader with decoding workers, batches, inference mode, hooks writing into a
pre-allocated array). Both run in this process on this machine, alternately, after a warm-up;
the best of ``--repeats`` runs of each is reported, and the two results are checked to agree.

    OMP_NUM_THREADS=2 python benchmarks/bench_features.py            # CPU, CORnet-Z and CORnet-S
    python benchmarks/bench_features.py --device cuda --images 512   # GPU
    python benchmarks/bench_features.py --write                      # append to benchmarks/RESULTS.md
    python benchmarks/bench_features.py --memory --before OLD/src     # peak RSS, 32 vs 320 images
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent


def make_jpegs(folder: Path, n: int, size: int = 256, seed: int = 0) -> list[Path]:
    """``n`` size x size JPEGs of smooth random colour fields with shapes (decode cost like photos)."""
    from ventralkit.data.embedded import draw_shape

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    paths = []
    for k in range(n):
        low = rng.randint(0, 256, size=(8, 8, 3)).astype(np.uint8)
        img = Image.fromarray(low).resize((size, size), Image.BICUBIC)
        noise = rng.randint(-20, 21, size=(size, size, 3))
        img = Image.fromarray(np.clip(np.asarray(img, dtype=int) + noise, 0, 255).astype(np.uint8))
        img.paste(draw_shape(k % 6, size // 2, rng), (size // 4, size // 4))
        path = folder / f"img_{k:04d}.jpg"
        img.save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def original_loop(model, folder: Path, layer: str, sublayer: str, time_step: int, imsize: int,
                  device: torch.device) -> np.ndarray:
    """CORnet run.py ``test``: one image at a time, hook on ``model.<layer>.<sublayer>``."""
    import glob

    from torchvision import transforms

    model.eval()
    normalize = transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    transform = transforms.Compose([transforms.Resize((imsize, imsize)), transforms.ToTensor(), normalize])
    per_image: list[np.ndarray] = []

    def hook(_module, _inp, output):
        out = output.cpu().numpy()
        per_image.append(np.reshape(out, (len(out), -1)))

    handle = getattr(getattr(model, layer), sublayer).register_forward_hook(hook)
    feats = []
    try:
        with torch.no_grad():
            for fname in sorted(glob.glob(os.path.join(str(folder), "*.*"))):
                im = Image.open(fname).convert("RGB")
                im = transform(im).unsqueeze(0).to(device)
                per_image.clear()
                model(im)
                feats.append(per_image[time_step])
    finally:
        handle.remove()
    return np.concatenate(feats)


def ventralkit_run(model, folder: Path, layer: str, time_step: int, imsize: int, device: torch.device,
                   batch_size: int, workers: int | None, channels_last: bool | None,
                   forward_batch: int | None = None) -> np.ndarray:
    from ventralkit.analysis.features import extract_features

    out = extract_features(model, folder, layers=[layer], time_steps=time_step, image_size=imsize,
                           batch_size=batch_size, workers=workers, device=device, progress=False,
                           channels_last=channels_last, forward_batch=forward_batch)
    return next(iter(out.values()))


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t, result


def machine() -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load average {os.getloadavg()[0]:.1f} at the end (the machine may be shared)"
    return (f"{platform.system()} {platform.machine()}, {cpu}, {cpus} CPUs available, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}"
            + load)


def memory_child(folder: str, n: int, imsize: int, layer: str, fmt: str) -> None:
    """One extraction in a fresh process; prints its peak RSS (``ru_maxrss``) in MB."""
    import resource

    from ventralkit import create_model
    from ventralkit.analysis.features import extract_features

    torch.manual_seed(0)
    model = create_model("cornet_z").eval()
    paths = sorted(Path(folder).glob("*.jpg"))[:n]
    with tempfile.TemporaryDirectory() as out:
        extract_features(model, paths, layers=[layer], image_size=imsize, output_dir=out, format=fmt,
                         progress=False)
    print(f"PEAK_RSS_MB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f}")


def memory(args) -> int:
    """Peak RSS of ``extract_features`` for two image counts, for this tree and optionally another (``--before``).

    Each run is a fresh process (``ru_maxrss`` is a high-water mark); the features go to ``--format``
    (hdf5 by default: written through h5py, so the output's pages do not count as the process's memory,
    as they would for a memory-mapped .npy).
    """
    import subprocess

    counts = args.memory_images
    tmp = tempfile.TemporaryDirectory(prefix="vk-bench-mem-")
    folder = Path(tmp.name) / "jpegs"
    make_jpegs(folder, max(counts), args.jpeg_size)
    trees = ([("before", args.before)] if args.before else []) + [("after", str(HERE.parent / "src"))]
    layer = f"{args.layer}.{args.sublayer}" if args.layer != "decoder" else "V1.output"
    rows = []
    for label, src in trees:
        peaks = []
        for n in counts:
            env = dict(os.environ, PYTHONPATH=src)
            code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import bench_features as b; "
                    f"b.memory_child({str(folder)!r}, {n}, {args.imsize}, {layer!r}, {args.memory_format!r})")
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
            if out.returncode:
                print(out.stderr[-2000:], file=sys.stderr)
                return 1
            peaks.append(float(out.stdout.split("PEAK_RSS_MB")[-1]))
            print(f"{label}: {n} images: peak RSS {peaks[-1]:.0f} MB", file=sys.stderr)
        per_image = (peaks[-1] - peaks[0]) / (counts[-1] - counts[0])
        rows.append(f"| {label} | " + " | ".join(f"{p:.0f}" for p in peaks) + f" | {per_image:+.2f} |")
    table = "\n".join([
        "| code | " + " | ".join(f"{n} images (MB)" for n in counts) + " | MB per extra image |",
        "|---|" + "---:|" * (len(counts) + 1),
        *rows,
    ])
    print(table)
    if args.write:
        when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        block = (f"\n## Feature extraction memory (bench_features.py --memory), {when}\n\n"
                 f"Machine: {machine()}.\nSettings: cornet_z (random weights) {layer}, {args.jpeg_size}-px JPEGs -> "
                 f"{args.imsize} px, --format {args.memory_format}, default batch sizes; peak RSS (ru_maxrss) of "
                 f"a fresh process per run. 'before': a ventralkit tree under --before; 'after': this one.\n\n{table}\n")
        with open(HERE / "RESULTS.md", "a") as fh:
            fh.write(block)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["cornet_z", "cornet_s"])
    p.add_argument("--images", type=int, default=96, help="number of JPEG files")
    p.add_argument("--jpeg_size", type=int, default=256)
    p.add_argument("--imsize", type=int, default=224)
    p.add_argument("--layer", default="decoder", help="original --layer (default: decoder)")
    p.add_argument("--sublayer", default="avgpool", help="original --sublayer (default: avgpool)")
    p.add_argument("--time_step", type=int, default=0)
    p.add_argument("--batch_size", type=int, default=64, help="ventralkit DataLoader batch (library default)")
    p.add_argument("--forward_batch", type=int, default=None, help="images per forward (default: auto)")
    p.add_argument("--workers", type=int, default=None, help="ventralkit DataLoader workers (default: auto)")
    p.add_argument("--channels_last", choices=["auto", "on", "off"], default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: as OMP_NUM_THREADS)")
    p.add_argument("--repeats", type=int, default=2, help="timed runs of each; the best is reported")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data", default=None, help="folder for the JPEGs (default: a temporary one)")
    p.add_argument("--write", action="store_true", help="append the table to benchmarks/RESULTS.md")
    p.add_argument("--memory", action="store_true",
                   help="instead of speed: peak RSS of extraction for --memory_images counts (V1.output)")
    p.add_argument("--memory_images", type=int, nargs="+", default=[32, 320])
    p.add_argument("--memory_format", choices=["hdf5", "npy"], default="hdf5")
    p.add_argument("--before", default=None, metavar="SRC",
                   help="--memory: also measure the ventralkit package under SRC (e.g. an older checkout's src/)")
    args = p.parse_args(argv)
    if args.memory:
        return memory(args)

    os.environ.setdefault("VENTRALKIT_NO_PROGRESS", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    from ventralkit import create_model

    device = torch.device(args.device)
    cl = {"auto": None, "on": True, "off": False}[args.channels_last]
    tmp = tempfile.TemporaryDirectory(prefix="vk-bench-")
    folder = Path(args.data) if args.data else Path(tmp.name) / "jpegs"
    make_jpegs(folder, args.images, args.jpeg_size)
    warm_folder = Path(tmp.name) / "warm"
    make_jpegs(warm_folder, min(8, args.images), args.jpeg_size, seed=1)

    rows = []
    for name in args.models:
        model = create_model(name).eval().to(device)
        layer = f"{args.layer}.{args.sublayer}"
        # warm-up both paths (allocator, oneDNN primitive caches, cuDNN autotune)
        original_loop(model, warm_folder, args.layer, args.sublayer, args.time_step, args.imsize, device)
        ventralkit_run(model, warm_folder, layer, args.time_step, args.imsize, device, args.batch_size,
                       args.workers, cl, args.forward_batch)
        t_orig, t_vk = [], []
        for _ in range(args.repeats):
            dt, ref = timed(lambda: original_loop(model, folder, args.layer, args.sublayer, args.time_step,
                                                  args.imsize, device))
            t_orig.append(dt)
            dt, ours = timed(lambda: ventralkit_run(model, folder, layer, args.time_step, args.imsize, device,
                                                    args.batch_size, args.workers, cl, args.forward_batch))
            t_vk.append(dt)
        err = float(np.max(np.abs(np.asarray(ours) - ref)) / (np.max(np.abs(ref)) + 1e-12))
        if err > 1e-3:
            print(f"warning: {name}: features differ from the original loop (relative error {err:.2e})",
                  file=sys.stderr)
        orig_ips, vk_ips = args.images / min(t_orig), args.images / min(t_vk)
        rows.append((name, orig_ips, vk_ips, vk_ips / orig_ips, err))
        print(f"{name}: original {orig_ips:.1f} img/s, ventralkit {vk_ips:.1f} img/s, "
              f"x{vk_ips / orig_ips:.2f} (runs: orig {[round(t, 2) for t in t_orig]} s, "
              f"vk {[round(t, 2) for t in t_vk]} s)", file=sys.stderr)
        del model

    settings = (f"{args.images} JPEGs {args.jpeg_size}x{args.jpeg_size} -> {args.imsize} px, layer {args.layer}."
                f"{args.sublayer} t{args.time_step}, device {device}, batch {args.batch_size}, forward batch "
                f"{args.forward_batch or 'auto'}, workers "
                f"{'auto' if args.workers is None else args.workers}, channels_last {args.channels_last}, "
                f"best of {args.repeats}")
    lines = [
        "| model | original loop (img/s) | ventralkit (img/s) | ratio | max rel. diff |",
        "|---|---:|---:|---:|---:|",
        *[f"| {n} | {o:.1f} | {v:.1f} | **{r:.2f}x** | {e:.1e} |" for n, o, v, r, e in rows],
    ]
    table = "\n".join(lines)
    print(table)
    if args.write:
        when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        block = (f"\n## Feature extraction (bench_features.py), {when}\n\n"
                 f"Machine: {machine()}; device {device}"
                 + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
                 + f".\nSettings: {settings}.\n\n{table}\n")
        results = HERE / "RESULTS.md"
        if not results.exists():
            results.write_text("# Benchmark results\n\nEach block: one run of a script in benchmarks/, both sides "
                               "measured in the same process on the same machine.\n")
        with open(results, "a") as fh:
            fh.write(block)
        print(f"appended to {results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
