"""The worked example of docs/behaviour.md: synthetic subjects with a known confusion structure on the embedded
digits, and models trained to share it, or not (about 20 minutes on 2 CPU cores: three 6-epoch trainings).

    python docs/behaviour/make_example.py [--work DIR] [--epochs 6]

1. Every digit gets a background texture (coloured stripes, one orientation and colour per class) of a random
   class, so texture tells nothing about the digit, except in the texture model's training set (step 3).
2. Synthetic subjects: on each validation digit they answer its class, or with probability e_i its partner
   class (HUMAN_PARTNER: 0-6, 1-7, 2-5, 3-8, 4-9), where e_i grows as the image looks more like the partner's
   average digit (pixel distances); 3 % of answers are random. 8 subjects see every digit twice (10-way).
   On cue-conflict images (one class's digit on another class's texture) they answer the shape class 80 % of
   the time and the texture class 14 %.
3. Three CORnet-Z models are trained on the training digits (each image three times, each time with a label
   drawn like the subjects' answers): "same" with the subjects' partners, "other" with other partners
   (OTHER_PARTNER) and the same error rates, "texture" with the texture's class as the label and a random digit.
4. ``ventralkit behaviour`` scores "same" and "other" on the subjects' trials and "same" and "texture" on the
   cue-conflict trials; the figures are shrunk into this folder and the numbers written to example_scores.csv.
"""

from __future__ import annotations

import argparse
import csv
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
HUMAN_PARTNER = {0: 6, 6: 0, 1: 7, 7: 1, 2: 5, 5: 2, 3: 8, 8: 3, 4: 9, 9: 4}
OTHER_PARTNER = {0: 8, 8: 0, 1: 4, 4: 1, 3: 5, 5: 3, 7: 9, 9: 7, 2: 6, 6: 2}
LAPSE, SIZE, SUBJECTS, REPEATS = 0.03, 32, 8, 2
PALETTE = [(230, 60, 60), (60, 170, 70), (60, 90, 230), (230, 180, 40), (170, 70, 200), (40, 190, 200),
           (240, 130, 40), (140, 140, 140), (200, 90, 140), (120, 160, 40)]
WORK = Path(".")


def vk(*args) -> None:
    """One ``ventralkit`` command, printed as a user would type it, run in WORK."""
    args = [str(a) for a in args]
    print("$ ventralkit " + " ".join(args), flush=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ventralkit", *args], check=True, cwd=WORK)
    print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)


def texture(k: int) -> np.ndarray:
    """SIZE x SIZE x 3 stripes of class ``k``: orientation k * 18 degrees, period 6 px, the class's colour."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    angle = math.radians(18 * k)
    wave = 0.5 + 0.5 * np.sin(2 * math.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / 6.0)
    return (wave[..., None] * np.array(PALETTE[k]) * 0.55).astype(np.float32)


def compose(digit8: np.ndarray, k: int):
    """The digit (white strokes) over the texture of class ``k``, as a PIL image."""
    from PIL import Image

    from ventralkit.data.embedded import render_digit

    strokes = np.asarray(render_digit(digit8, SIZE), dtype=np.float32)
    return Image.fromarray(np.maximum(strokes, texture(k)).clip(0, 255).astype(np.uint8))


def error_rates(images: np.ndarray, labels: np.ndarray, means: np.ndarray, partner: dict) -> np.ndarray:
    """Per image, how likely the partner class is answered: larger when the image is nearer the partner's mean."""
    flat = images.reshape(len(images), -1).astype(float)
    d_true = np.linalg.norm(flat - means[labels], axis=1)
    d_partner = np.linalg.norm(flat - means[[partner[int(y)] for y in labels]], axis=1)
    d = d_true - d_partner
    z = (d - d.mean()) / d.std()
    return 0.02 + 0.8 / (1 + np.exp(-2.5 * (z - 1.2)))  # mean 0.15 on the validation digits, 10 % above 0.5


def choice_probs(labels: np.ndarray, error: np.ndarray, partner: dict) -> np.ndarray:
    probs = np.full((len(labels), 10), LAPSE / 10)
    rows = np.arange(len(labels))
    probs[rows, labels] += (1 - LAPSE) * (1 - error)
    probs[rows, [partner[int(y)] for y in labels]] += (1 - LAPSE) * error
    return probs


def write_training_set(root: Path, images, labels, probs, textures, rng, copies: int = 3) -> Path:
    """root/train/<label>/ with each image ``copies`` times under a label drawn from ``probs``, and root/val/
    with the clean labels (the training command's validation split)."""
    for copy in range(copies):
        drawn = (rng.random(len(labels))[:, None] > probs.cumsum(1)).sum(1).clip(0, 9)
        for i, (y, k) in enumerate(zip(drawn, textures[copy])):
            (root / "train" / str(y)).mkdir(parents=True, exist_ok=True)
            compose(images[i], int(k)).save(root / "train" / str(y) / f"{i:04d}_{copy}.png")
    for i in range(0, len(labels), 7):  # a small clean validation set
        (root / "val" / str(labels[i])).mkdir(parents=True, exist_ok=True)
        compose(images[i], int(textures[0][i])).save(root / "val" / str(labels[i]) / f"{i:04d}.png")
    return root


def train(name: str, data: Path, epochs: int) -> Path:
    run = WORK / "runs" / name
    if not (run / "checkpoints" / "last.pt").is_file():
        vk("train", "--model", "cornet_z", "--data_path", data, "--imsize", SIZE, "--augment", "none",
           "--eval_transform", "none", "--epochs", epochs, "--batch_size", 64, "--lr", 0.02, "--optimizer", "sgd",
           "--momentum", 0.9, "--scheduler", "cosine", "--seed", 0, "-j", 1, "--no_progress", "-o", run)
    return run / "checkpoints" / "last.pt"


def write_trials(path: Path, names, labels, probs, rng, cues=None) -> Path:
    """SUBJECTS synthetic subjects x REPEATS answers per stimulus, drawn from ``probs`` (10-way)."""
    from ventralkit.analysis.behaviour import simulate_trials

    trials = simulate_trials(probs, labels, names, [str(k) for k in range(10)], subjects=SUBJECTS, repeats=REPEATS,
                             cues=cues, seed=int(rng.integers(1 << 30)))
    columns = ["stimulus", "subject", "truth", "choice"] + (["cue_shape", "cue_texture"] if cues else [])
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(zip(*(getattr(trials, c) for c in columns)))
    return path


def make_data(rng) -> dict:
    """The training sets, stimuli and trials in WORK; returns the paths."""
    from ventralkit.data.embedded import _load_digits, digits_split

    images, labels = _load_digits()
    train_idx, val_idx = digits_split(0)
    tr_img, tr_lab, va_img, va_lab = images[train_idx], labels[train_idx], images[val_idx], labels[val_idx]
    means = np.stack([tr_img[tr_lab == k].reshape(-1, 64).mean(0) for k in range(10)])
    textures = rng.integers(0, 10, (3, len(tr_lab)))
    sets = {}
    for name, partner in (("same", HUMAN_PARTNER), ("other", OTHER_PARTNER)):
        probs = choice_probs(tr_lab, error_rates(tr_img, tr_lab, means, partner), partner)
        sets[name] = write_training_set(WORK / f"train_{name}", tr_img, tr_lab, probs, textures, rng)
    # the texture model: the texture is the label, the digit a random other image
    texture_probs = np.eye(10)[tr_lab] * (1 - LAPSE) + LAPSE / 10
    sets["texture"] = write_training_set(WORK / "train_texture", tr_img[rng.permutation(len(tr_lab))], tr_lab,
                                         texture_probs, np.stack([tr_lab] * 3), rng)
    stimuli = WORK / "stimuli"
    stimuli.mkdir(exist_ok=True)
    names = [f"digit{i:04d}.png" for i in val_idx]
    for name, img in zip(names, va_img):
        compose(img, int(rng.integers(10))).save(stimuli / name)
    human = choice_probs(va_lab, error_rates(va_img, va_lab, means, HUMAN_PARTNER), HUMAN_PARTNER)
    trials = write_trials(WORK / "trials.csv", names, va_lab, human, rng)
    cue = WORK / "cue_stimuli"
    cue.mkdir(exist_ok=True)
    tex = (va_lab + rng.integers(1, 10, len(va_lab))) % 10  # another class's texture
    cue_names = [f"cue{i:04d}.png" for i in val_idx]
    for name, img, k in zip(cue_names, va_img, tex):
        compose(img, int(k)).save(cue / name)
    cue_probs = np.full((len(va_lab), 10), 0.06 / 8)
    cue_probs[np.arange(len(va_lab)), va_lab] = 0.80
    cue_probs[np.arange(len(va_lab)), tex] = 0.14
    cue_trials = write_trials(WORK / "cue_trials.csv", cue_names, va_lab, cue_probs, rng, cues=(va_lab, tex))
    return {"sets": sets, "stimuli": stimuli, "trials": trials, "cue": cue, "cue_trials": cue_trials}


def shrink(src: Path, name: str) -> Path:
    """``src`` at 80 dpi with a 256-colour palette, into this folder."""
    from PIL import Image

    with Image.open(src) as img:
        dpi = float(img.info.get("dpi", (100, 100))[0]) or 100.0
        img = img.convert("RGB")
        scale = min(1.0, 80 / dpi)
        if scale < 1.0:
            img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
        out = HERE / f"{name}.png"
        img.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(out, optimize=True)
    return out


def main() -> None:
    global WORK
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=None, help="keep the data, runs and results here (default: a temporary folder)")
    p.add_argument("--epochs", type=int, default=6)
    args = p.parse_args()
    WORK = Path(args.work or tempfile.mkdtemp(prefix="vk-behaviour-")).resolve()
    WORK.mkdir(parents=True, exist_ok=True)
    data = make_data(np.random.default_rng(0)) if not (WORK / "cue_trials.csv").is_file() else {
        "sets": {n: WORK / f"train_{n}" for n in ("same", "other", "texture")}, "stimuli": WORK / "stimuli",
        "trials": WORK / "trials.csv", "cue": WORK / "cue_stimuli", "cue_trials": WORK / "cue_trials.csv"}
    ckpt = {name: train(name, folder, args.epochs).relative_to(WORK) for name, folder in data["sets"].items()}
    data = {k: (v.relative_to(WORK) if isinstance(v, Path) else v) for k, v in data.items()}  # as a user types them
    rows = []
    for name in ("same", "other"):
        vk("behaviour", "--ckpt_path", ckpt[name], "--data_path", data["stimuli"], "--trials", data["trials"],
           "--metrics", "i1n", "i2n", "error_consistency", "confusion", "-j", 0, "--no_progress",
           "-o", Path("results") / name)
        rows += _scores(name, WORK / "results" / name)
    for name in ("same", "texture"):
        vk("behaviour", "--ckpt_path", ckpt[name], "--data_path", data["cue"], "--trials", data["cue_trials"],
           "--metrics", "shape_bias", "-j", 0, "--no_progress", "-o", Path("results") / f"cue_{name}")
        rows += _scores(name, WORK / "results" / f"cue_{name}")
    with open(HERE / "example_scores.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["model", "metric", "score", "ci_low", "ci_high", "ceiling", "ceiled"])
        writer.writerows(rows)
    for src, name in ((("same", "image_scatter"), "same_image_scatter"), (("other", "image_scatter"), "other_image_scatter"),
                      (("same", "error_consistency"), "same_error_consistency"),
                      (("other", "error_consistency"), "other_error_consistency"),
                      (("cue_same", "shape_bias"), "same_shape_bias"), (("cue_texture", "shape_bias"), "texture_shape_bias")):
        print(f"  {shrink(WORK / 'results' / src[0] / 'plots' / f'{src[1]}.png', name).relative_to(HERE.parent.parent)}")
    if args.work is None:
        shutil.rmtree(WORK, ignore_errors=True)


def _scores(model: str, folder: Path) -> list[list]:
    with open(folder / "scores.csv", encoding="utf-8") as fh:
        return [[model, *r.values()] for r in csv.DictReader(fh)]


if __name__ == "__main__":
    main()
