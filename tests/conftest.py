"""Shared fixtures: small generated datasets (no downloads), CLI runner, quiet progress bars; a time limit per test;
the ``stress`` tests only when asked for (``make stress``, ``pytest -m stress``)."""

from __future__ import annotations

import faulthandler
import os
import sys

import pytest

os.environ.setdefault("VENTRALKIT_NO_PROGRESS", "1")
# no test downloads weights by accident (--pretrained downloads a missing file); tests/test_weights_download.py
# lifts it for its local server
os.environ.setdefault("VENTRALKIT_OFFLINE", "1")

#: seconds one test may run before the whole run stops with the stack of every thread (faulthandler, which also
#: reports a hang inside C code): a hang fails in minutes instead of holding CI until its own limit. The slowest
#: tests take a few minutes on 2 loaded cores; VENTRALKIT_TEST_TIME_LIMIT changes it (0 = no limit, e.g. under a
#: debugger).
TEST_TIME_LIMIT_S = float(os.environ.get("VENTRALKIT_TEST_TIME_LIMIT", "600"))
_STACKS_FD: list[int] = []


def pytest_configure(config):
    # the terminal's stderr, kept now: while a test runs, pytest captures fd 2, and what faulthandler writes
    # there would be lost when it ends the process
    _STACKS_FD.append(os.dup(sys.stderr.fileno()))


def pytest_unconfigure(config):
    while _STACKS_FD:
        os.close(_STACKS_FD.pop())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    marker = item.get_closest_marker("time_limit")  # @pytest.mark.time_limit(seconds): a longer test's own
    limit = float(marker.args[0]) if marker and TEST_TIME_LIMIT_S > 0 else TEST_TIME_LIMIT_S
    if limit > 0 and _STACKS_FD:
        faulthandler.dump_traceback_later(limit, exit=True, file=_STACKS_FD[0])
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def pytest_collection_modifyitems(config, items):
    """Stress tests run only when ``-m`` names them: plain ``pytest`` and ``make test`` leave them out."""
    if "stress" in (config.getoption("markexpr", "") or ""):
        return
    skip = pytest.mark.skip(reason="a stress test: run with `make stress` (pytest -m stress)")
    for item in items:
        if item.get_closest_marker("stress"):
            item.add_marker(skip)


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


def records_through(run_dir, global_step):
    """The lines of ``run_dir/metrics.jsonl`` up to ``global_step``, as written (a cut-off line is left out):
    what an exact resume from that step must keep byte for byte."""
    import json

    keep = []
    for ln in (run_dir / "metrics.jsonl").read_text().splitlines():
        try:
            if json.loads(ln)["step"] <= global_step:
                keep.append(ln)
        except json.JSONDecodeError:
            continue
    return keep


@pytest.fixture
def steps_run(monkeypatch):
    """Every optimizer step the engine takes in this test, as (global step, epoch, step in epoch), in order.

    A resumed run that silently started over from its seed ends with the same weights and records as an
    exact resume (training is deterministic on the CPU); only the steps it ran tell the two apart."""
    from ventralkit.engine.guard import NonFiniteGuard

    seen = []
    original = NonFiniteGuard.step_ok

    def counting(self, loss, global_step, epoch, step, lr):
        seen.append((global_step, epoch, step))
        return original(self, loss, global_step, epoch, step, lr)

    monkeypatch.setattr(NonFiniteGuard, "step_ok", counting)
    return seen
