"""``evaluate_robustness`` against the V1-ResNet study's ``eval/tiny_imagenet_c_eval.py`` loop, on the CPU.

The baseline re-creates that script's loop (gpogoncheff/explaining_v1, commit 682f116; described in
docs/reference): for each of its 15 corruptions in its order and severities 1-5, a torchvision
``ImageFolder`` with ToTensor + Normalize(0.5, 0.5), a ``DataLoader`` (batch 128, its default; workers =
this machine's cores instead of its default 16), ``model.eval()``, ``torch.no_grad()``, the loss and the
top-1 accuracy per folder, then the CSV. ventralkit runs ``evaluate_robustness`` on the same tree with
the same model object (baseline ResNet-50, 200 outputs, 64 px, random weights) and writes its whole
report (CSVs, summary, figures). Both run in this process, interleaved, best of ``--repeats``; each on a
small and a large tree, so that the per-image throughput (difference of the two) and the fixed cost
(what the small run spends beyond its images) are separated. The accuracies must agree.

    python benchmarks/bench_robustness.py            # 75 folders x 6 and x 30 images
    python benchmarks/bench_robustness.py --write    # append the table to benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
#: eval/tiny_imagenet_c_eval.py's corruptions, in its order
STUDY_ORDER = ("brightness", "defocus_blur", "fog", "gaussian_noise", "impulse_noise", "motion_blur", "shot_noise",
               "zoom_blur", "contrast", "elastic_transform", "frost", "glass_blur", "jpeg_compression", "pixelate",
               "snow")


def make_tree(root: Path, per_folder: int, classes: int = 10, size: int = 64, seed: int = 0) -> Path:
    """root/<corruption>/<severity>/<class>/*.JPEG, 64-px JPEGs as Tiny-ImageNet-C (distinct noise images)."""
    rng = np.random.RandomState(seed)
    for corruption in STUDY_ORDER:
        for severity in range(1, 6):
            for k in range(per_folder):
                folder = root / corruption / str(severity) / f"n{k % classes:08d}"
                folder.mkdir(parents=True, exist_ok=True)
                low = rng.randint(0, 256, size=(8, 8, 3)).astype(np.uint8)
                img = Image.fromarray(low).resize((size, size), Image.BICUBIC)
                img.save(folder / f"img_{k:04d}.JPEG", quality=90)
    return root


def study_loop(model, root: Path, out: Path, batch_size: int = 128, workers: int = 2) -> dict:
    """The loop of eval/tiny_imagenet_c_eval.py (accuracy per folder; the loss computed as it does)."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    criterion = torch.nn.CrossEntropyLoss()
    model.eval()
    rows, accuracies = [], {}
    for corruption in STUDY_ORDER:
        for difficulty in range(1, 6):
            data = datasets.ImageFolder(os.path.join(root, corruption, str(difficulty)), transform=transform)
            loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=workers)
            correct = total = 0
            loss_sum = 0.0
            with torch.no_grad():
                for images, labels in loader:
                    output = model(images)
                    loss_sum += criterion(output, labels).item() * labels.size(0)
                    correct += (output.argmax(1) == labels).sum().item()
                    total += labels.size(0)
            accuracies[corruption, difficulty] = correct / total
            rows.append([corruption, str(difficulty), str(correct / total)])
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "tinyimagenetc_results.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["corruption_type", "difficulty", "valid_acc"]] + rows)
    return accuracies


def ventralkit_run(model, root: Path, out: Path) -> dict:
    from ventralkit.analysis.robustness import evaluate_robustness

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 10 class folders for 200 outputs
        report = evaluate_robustness(model, root, output_dir=out, progress=False, corruptions="benchmark")
    return {(c, s): a for c, sev in report.accuracies.items() for s, a in sev.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", type=int, default=6, help="images per folder, small tree")
    p.add_argument("--large", type=int, default=30, help="images per folder, large tree")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--study_workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--write", action="store_true", help="append the result to benchmarks/RESULTS.md")
    p.add_argument("--device", default="cpu", help="only cpu is measured; accepted for run_all.py")
    args = p.parse_args()
    from ventralkit.models import create_model

    torch.manual_seed(0)
    t = time.perf_counter()
    model = create_model("v1_resnet50", num_classes=200)
    load_s = time.perf_counter() - t
    runs = {"study": lambda root, out: study_loop(model, root, out, workers=args.study_workers),
            "ventralkit": lambda root, out: ventralkit_run(model, root, out)}
    best = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        trees = {n: make_tree(tmp / f"c{n}", n) for n in (args.small, args.large)}
        ventralkit_run(model, trees[args.small], tmp / "warm")  # imports, first oneDNN calls
        for r in range(args.repeats):
            for n, root in trees.items():
                for kind, fn in runs.items():
                    t = time.perf_counter()
                    acc = fn(root, tmp / f"out_{kind}_{n}_{r}")
                    seconds = time.perf_counter() - t
                    best[kind, n] = min(best.get((kind, n), float("inf")), seconds)
                    if kind == "study":
                        reference = acc
                    else:
                        diff = max(abs(acc[k] - reference[k]) for k in reference)
                        assert diff == 0, f"accuracies differ by {diff}"
                    print(f"{kind:10s} {n * 75:5d} images {seconds:6.2f} s", flush=True)
    small, large = args.small * 75, args.large * 75
    lines = []
    rates = {}
    for kind in runs:
        rate = (large - small) / (best[kind, args.large] - best[kind, args.small])
        fixed = best[kind, args.small] - small / rate
        rates[kind] = rate
        lines.append((kind, best[kind, args.small], best[kind, args.large], rate, fixed))
    load = os.getloadavg()[0]
    text = [f"## robustness vs the V1 study's tiny_imagenet_c_eval.py (bench_robustness.py), "
            f"{_dt.datetime.now():%Y-%m-%d %H:%M}", "",
            f"Machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}, load average {load:.1f} at the "
            f"end (shared machine). v1_resnet50 (200 outputs, random weights, built in {load_s:.1f} s, not counted), "
            f"15 corruptions x 5 severities of 64-px JPEGs, {small} and {large} images; the study's loop with "
            f"{args.study_workers} DataLoader workers; best of {args.repeats} interleaved runs; same accuracies.", "",
            f"| run | {small} images (s) | {large} images (s) | images/s net of fixed cost | fixed cost (s) | "
            "per image vs study |", "|---|---:|---:|---:|---:|---:|"]
    for kind, s_small, s_large, rate, fixed in lines:
        name = "study loop (re-created)" if kind == "study" else "ventralkit evaluate_robustness (with report)"
        text.append(f"| {name} | {s_small:.2f} | {s_large:.2f} | {rate:.1f} | {fixed:.2f} | "
                    f"**{rate / rates['study']:.2f}x** |")
    print("\n".join(text))
    if args.write:
        with (HERE / "RESULTS.md").open("a") as fh:
            fh.write("\n" + "\n".join(text).rstrip() + "\n")


if __name__ == "__main__":
    sys.exit(main())
