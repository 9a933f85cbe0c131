"""Shared fixtures: small generated datasets (no downloads), CLI runner, quiet progress bars."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("VENTRALKIT_NO_PROGRESS", "1")


def make_image_folder(root, classes=3, train_per_class=8, val_per_class=3, size=32, seed=0):
    """root/train/<class>/*.jpg and root/val/<class>/*.jpg: a coloured disc per class on grey noise."""
    import random

    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    colours = [(230, 40, 40), (40, 200, 40), (40, 40, 230), (220, 220, 40), (200, 40, 200)]
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for c in range(classes):
            d = root / split / f"class_{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                im = Image.new("RGB", (size, size), tuple(rng.randint(40, 90) for _ in range(3)))
                r = size // 3
                x, y = rng.randint(0, size - r - 1), rng.randint(0, size - r - 1)
                ImageDraw.Draw(im).ellipse([x, y, x + r, y + r], fill=colours[c % len(colours)])
                im.save(d / f"img_{i:03d}.jpg", quality=90)
    return root


@pytest.fixture
def image_folder(tmp_path):
    return make_image_folder(tmp_path / "data")


@pytest.fixture
def cli(capsys):
    """Run ``ventralkit ...`` in-process; returns (exit code, stdout, stderr)."""
    from ventralkit.cli import main

    def run(*argv):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse's own errors (a bad flag value) exit from inside parse_args
            code = exc.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
