"""Regenerate the figures of docs/gallery.md from the embedded digits (about 5 minutes on 2 CPU cores).

    python docs/gallery/make_gallery.py [--work DIR] [--only SECTION ...]

Every figure is made by the ``ventralkit`` command a user would run (the commands are printed as
they run); the PNGs are then shrunk to about 80 dpi and 256 colours and written next to this script.
``--work`` keeps the runs, datasets and full-size figures in DIR (default: a temporary folder).
``--only`` remakes the figures of some sections (curves, heads, test, robustness, v1, neural) and
runs only the commands they need, e.g. ``--only v1`` after a change to ``v1-probe``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GALLERY_DPI = 80


WORK = Path(".")  # the working folder; every command runs there with relative paths, as a user's would


def vk(*args, done: Path | None = None) -> None:
    """Run one ``ventralkit`` command in WORK as a user would, stopping at the first failure; skipped
    when ``done`` exists (a re-run with the same ``--work`` picks up where the last one stopped)."""
    args = [str(a) for a in args]
    print("$ ventralkit " + " ".join(args), flush=True)
    if done is not None and (WORK / done).exists():
        print("  (done before)")
        return
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ventralkit", *args], check=True, stdout=subprocess.DEVNULL, cwd=WORK)
    print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)


def shrink(src: Path, name: str) -> Path:
    """Copy ``src`` to the gallery at GALLERY_DPI with a 256-colour palette (figures have few colours)."""
    from PIL import Image

    with Image.open(WORK / src) as img:
        dpi = float(img.info.get("dpi", (100, 100))[0]) or 100.0
        img = img.convert("RGB")
        scale = min(1.0, GALLERY_DPI / dpi)
        if scale < 1.0:
            img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
        out = HERE / f"{name}.png"
        # octree keeps the few saturated colours (group labels, legends) that median cut merges into grey
        img.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(out, optimize=True)
    print(f"  {out.relative_to(HERE.parent.parent)}: {out.stat().st_size // 1024} KB")
    return out


def small_val(src: Path, dst: Path, per_class: int) -> Path:
    """The first ``per_class`` images of each class folder: a -C copy of them takes seconds, not minutes."""
    for cls in sorted(p for p in (WORK / src).iterdir() if p.is_dir()):
        (WORK / dst / cls.name).mkdir(parents=True, exist_ok=True)
        for img in sorted(cls.iterdir())[:per_class]:
            shutil.copy2(img, WORK / dst / cls.name / img.name)
    return dst


def population(feats: Path, out: Path) -> None:
    """60 synthetic "neuroids": random read-outs of V4, 4 noisy repetitions (docs/neural.md's example)."""
    import numpy as np

    feats, out = WORK / feats, WORK / out
    rng = np.random.default_rng(0)
    x = np.load(feats / "V4.output-t0.npy")
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    signal = x @ (rng.normal(size=(x.shape[1], 60)) / np.sqrt(x.shape[1]))
    noise = rng.normal(size=(4, *signal.shape)) * signal.std()
    np.save(out / "responses.npy", (signal[None] + noise).astype(np.float32))
    images = (feats / "images.txt").read_text().split()
    (out / "groups.txt").write_text("".join(Path(p).parent.name + "\n" for p in images))


SECTIONS = ("curves", "heads", "test", "robustness", "v1", "neural")


def main(work: Path, only: tuple[str, ...] = SECTIONS) -> None:
    global WORK
    WORK = work
    runs, data, work = Path("runs"), Path("data"), Path(".")
    common = ["--dataset", "digits", "--imsize", "32", "--epochs", "3", "--batch_size", "64", "--workers", "0",
              "--no_progress"]
    # training curves: one model, two learning rates (the first one's checkpoint serves every later section)
    for lr in ("0.01", "0.05") if "curves" in only else ("0.01",):
        vk("train", "--model", "Z", "--lr", lr, *common, "-o", runs / f"z-lr{lr}", done=runs / f"z-lr{lr}" / "plots")
    if "curves" in only:
        vk("plot", runs / "z-lr0.01", runs / "z-lr0.05", "-o", work / "curves.png")
        shrink(work / "curves.png", "curves")
    # heads compared: PhiNet with its linear head and with the low-rank (adaptive) head
    if {"heads", "robustness"} & set(only):
        vk("train", "--model", "phinet", "--lr", "0.05", *common, "-o", runs / "phinet-linear",
           done=runs / "phinet-linear" / "plots")
    if "heads" in only:
        vk("train", "--model", "phinet_adaptive", "--model_kwargs", '{"rank": 4}', "--lr", "0.05", *common,
           "-o", runs / "phinet-adaptive-r4", done=runs / "phinet-adaptive-r4" / "plots")
        vk("compare", runs / "phinet-linear", runs / "phinet-adaptive-r4", runs / "z-lr0.01", "-o", work / "compare")
        shrink(work / "compare" / "comparison.png", "heads_comparison")
    # evaluation: per-class accuracy and the confusion matrix
    best = runs / "z-lr0.01" / "checkpoints" / "best.pt"
    if "test" in only:
        vk("test", "--model", "Z", "--ckpt_path", best, "--dataset", "digits", "--imsize", "32", "--no_progress",
           "-o", work / "test")
        shrink(work / "test" / "confusion.png", "confusion")
    if {"robustness", "neural"} & set(only):
        vk("prepare", "digits", data / "digits", done=data / "digits" / "val")
        val = small_val(data / "digits" / "val", data / "val-small", per_class=10)
    if "robustness" in only:  # 15 corruptions x 5 severities of 10 images per digit
        vk("corrupt", val, data / "val-small-C", "--corruptions", "benchmark", "--quiet")  # resumes by itself
        vk("robustness", "--model", "Z", "--ckpt_path", best, "--data_path", data / "val-small-C", "--clean_path",
           val, "--baseline", "alexnet", "--quiet", "-o", work / "robust-z-lr0.01",
           done=work / "robust-z-lr0.01" / "heatmap.png")
        shrink(work / "robust-z-lr0.01" / "heatmap.png", "robustness_heatmap")
        shrink(work / "robust-z-lr0.01" / "errors_by_corruption.png", "robustness_bars")
        # PhiNet against CORnet-Z on the same images: CORnet-Z's run is the baseline, so the mCE is a real ratio
        vk("robustness", "--model", "phinet", "--ckpt_path", runs / "phinet-linear" / "checkpoints" / "best.pt",
           "--data_path", data / "val-small-C", "--clean_path", val, "--baseline", work / "robust-z-lr0.01",
           "--compare", work / "robust-z-lr0.01", "--quiet", "-o", work / "robust-phinet",
           done=work / "robust-phinet" / "heatmap.png")
        shrink(next((WORK / "robust-phinet").rglob("comparison.png")), "robustness_comparison")
    if "v1" in only:
        v1_section(best, work)
    if "neural" in only:
        neural_section(best, val, work)


def v1_section(best: Path, work: Path) -> None:
    """V1 probe: the trained model's V1 against monkey V1, and against the untrained one (both 32 px over
    8 deg, so gratings from 2 cycles/deg up are left out: their Nyquist limit)."""
    vk("v1-probe", "--model", "Z", "--ckpt_path", best, "--num_classes", "10", "--quick", "--positions", "2",
       "--n_boot", "200", "--label", "CORnet-Z digits", "-o", work / "v1-trained",
       done=work / "v1-trained" / "run.json")
    vk("v1-probe", "--model", "Z", "--random_init", "--imsize", "32", "--quick", "--positions", "2",
       "--n_boot", "200", "--label", "CORnet-Z untrained", "-o", work / "v1-untrained",
       done=work / "v1-untrained" / "run.json")
    vk("v1-probe", "--compare", work / "v1-untrained", work / "v1-trained", "-o", work / "v1-compare")
    shrink(work / "v1-trained" / "figures" / "tuning_curves.png", "v1_tuning_curves")
    shrink(work / "v1-trained" / "figures" / "property_histograms.png", "v1_histograms")
    shrink(work / "v1-trained" / "figures" / "property_histograms_no_reference.png", "v1_histograms_no_reference")
    shrink(next((WORK / "v1-compare").rglob("comparison.png")), "v1_comparison")


def neural_section(best: Path, val: Path, work: Path) -> None:
    """Neural predictivity: a synthetic population read out from V4 (docs/neural.md's worked example)."""
    vk("features", "--model", "Z", "--ckpt_path", best, "--num_classes", "10", "--data_path", val, "--imsize", "32",
       "--no_progress", "-o", work / "feats", done=work / "feats" / "images.txt")
    population(work / "feats", work)
    vk("neural", "--features", work / "feats", "--responses", work / "responses.npy", "--groups",
       work / "groups.txt", "--metrics", "pls", "cka", "-o", work / "neural")
    shrink(work / "neural" / "scores.png", "neural_scores")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=None, help="keep the runs and data here")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=SECTIONS,
                        help="remake only these sections' figures (default: all)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        main(args.work.resolve(), tuple(args.only))
    else:
        with tempfile.TemporaryDirectory(prefix="ventralkit-gallery-") as tmp:
            main(Path(tmp), tuple(args.only))
    total = sum(p.stat().st_size for p in HERE.glob("*.png"))
    print(f"gallery: {len(list(HERE.glob('*.png')))} figures, {total // 1024} KB, {time.perf_counter() - t0:.0f} s")
