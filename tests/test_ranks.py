"""features and robustness under torchrun (issue 25 item 4): two processes, gloo on the CPU, against one process.

``python -m torch.distributed.run --nproc_per_node 2`` runs the real command line (OMP_NUM_THREADS=1, a timeout on
each subprocess); tiny data: 11 generated 40-px images (one truncated where a test needs an unreadable image),
cornet_z from a saved state dict at 32 px, a 3-corruption x 2-severity copy of a 2-class folder.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ventralkit import create_model
from ventralkit.analysis.features_ranks import batch_blocks
from ventralkit.analysis.robustness.ranks import folder_shares
from ventralkit.cli import main
from ventralkit.data.embedded import draw_shape

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "VENTRALKIT_NO_PROGRESS": "1"}
SCRIPTS = Path(__file__).parent / "scripts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*argv, env=None, timeout=180) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(free_port()), *map(str, argv)]
    return subprocess.run(cmd, env={**ENV, **(env or {})}, capture_output=True, text=True, timeout=timeout)


def ventralkit_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("ventralkit ")]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ranks")
    rng = np.random.RandomState(0)
    for folder in ("imgs", "bad"):
        (root / folder).mkdir()
    for k in range(11):
        img = draw_shape(k % 10, 40, rng)
        img.save(root / "imgs" / f"img_{k:02d}.png")
        img.save(root / "bad" / f"img_{k:02d}.png")
    cut = root / "bad" / "img_09.png"  # row 9: in rank 1's share (batches of 4: rank 0 rows 0-3, rank 1 4-10)
    cut.write_bytes(cut.read_bytes()[:100])
    torch.manual_seed(0)
    torch.save(create_model("cornet_z").state_dict(), root / "z.pt")
    return root


def features_args(data: Path, images: str, out: Path, *extra) -> list[str]:
    return ["-m", "ventralkit.cli", "features", "--model", "Z", "--ckpt_path", data / "z.pt", "--imsize", "32",
            "--data_path", data / images, "-o", out, "--workers", "0", "--batch_size", "4", "--no_progress", *extra]


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def assert_same_features(one: Path, two: Path) -> None:
    assert files(one) == files(two)  # the same files, no staging folder left
    a, b = (json.loads((f / "features.json").read_text()) for f in (one, two))
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    assert (one / "images.txt").read_text() == (two / "images.txt").read_text()
    if a["format"] == "npy":
        for name in a["files"]:
            x, y = np.load(one / name), np.load(two / name)
            assert x.shape == y.shape and np.abs(x - y).max() <= 1e-6, name
    else:
        import h5py

        with h5py.File(one / "features.h5") as f, h5py.File(two / "features.h5") as g:
            assert sorted(f) == sorted(g) and dict(f.attrs) == dict(g.attrs)
            for name in f:
                assert np.abs(f[name][()] - g[name][()]).max() <= 1e-6, name


def test_shares_are_whole_batches_and_cover_every_row():
    assert batch_blocks(11, 4, 2) == [(0, 4), (4, 11)]
    assert batch_blocks(3, 4, 2) == [(0, 0), (0, 3)]  # one batch: one rank has nothing to do
    for n, batch, world in ((100, 8, 3), (64, 64, 4), (1, 1, 2)):
        blocks = batch_blocks(n, batch, world)
        assert blocks[0][0] == 0 and blocks[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
        assert all(start % batch == 0 for start, _ in blocks)
    assert folder_shares([10, 10, 10, 10, 30], 2) == [[3, 4], [0, 1, 2]]  # 30 + 10 against 3 x 10
    sizes = [5, 20, 20, 20, 20, 20, 20]  # the clean folder and six of a corrupted copy, say
    shares = folder_shares(sizes, 3)
    assert sorted(sum(shares, [])) == list(range(7))
    assert [sum(sizes[i] for i in share) for share in shares] == [45, 40, 40]


def test_features_under_torchrun_equal_one_process(data, tmp_path):
    """Must show (issue 25): same files, same numbers within 1e-6, an unreadable image skipped at its place."""
    one, two = tmp_path / "one", tmp_path / "two"
    args = features_args(data, "bad", one, "--on_bad_image", "skip")[2:]
    assert main([str(a) for a in args]) == 0
    proc = torchrun(*features_args(data, "bad", two, "--on_bad_image", "skip"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("cornet_z: 10 images, 5 arrays") == 1  # rank 0 alone reports
    assert_same_features(one, two)
    assert (two / "skipped.txt").read_text() == (one / "skipped.txt").read_text() != ""
    assert json.loads((two / "features.json").read_text())["skipped"][0]["input_index"] == 9


@pytest.mark.slow
def test_features_under_torchrun_hdf5_and_overwrite(data, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([str(a) for a in features_args(data, "imgs", one, "--format", "hdf5", "--layers", "V4.output")[2:]]) == 0
    (two).mkdir()
    assert main([str(a) for a in features_args(data, "bad", two, "--on_bad_image", "skip")[2:]]) == 0  # earlier run
    proc = torchrun(*features_args(data, "imgs", two, "--format", "hdf5", "--layers", "V4.output", "--overwrite"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_features(one, two)  # the earlier run's arrays and skipped.txt are gone


@pytest.mark.slow
def test_features_under_torchrun_bad_input_is_one_line_and_writes_nothing(data, tmp_path):
    """A folder holding features of other images: refused by rank 0 in one line (each rank exits 2; torchrun's own
    report follows), nothing changed. A rank failing during its share (an unreadable image in rank 1's rows):
    its one line, the other rank stopped, no feature file and no staging folder left."""
    earlier = tmp_path / "earlier"
    assert main([str(a) for a in features_args(data, "imgs", earlier)[2:]]) == 0
    before = {p.name: p.read_bytes() for p in earlier.iterdir()}
    proc = torchrun(*features_args(data, "bad", earlier))
    assert proc.returncode != 0
    lines = ventralkit_lines(proc.stderr)
    assert len(lines) == 1 and "already holds features of an earlier run" in lines[0], proc.stderr[-3000:]
    assert "exitcode  : 2" in proc.stderr  # the ventralkit processes (torchrun itself exits 1)
    assert {p.name: p.read_bytes() for p in earlier.iterdir()} == before

    out = tmp_path / "out"
    proc = torchrun(*features_args(data, "bad", out))
    assert proc.returncode != 0
    lines = ventralkit_lines(proc.stderr)
    assert len(lines) == 1 and "cannot read image" in lines[0] and "img_09.png" in lines[0], proc.stderr[-3000:]
    assert not out.exists()


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory):
    from test_robustness import make_folder

    from ventralkit.analysis.robustness import corrupt_dataset

    root = tmp_path_factory.mktemp("ranks_c")
    make_folder(root / "val", classes=2, per_class=3)
    corrupt_dataset(root / "val", root / "c", corruptions=["contrast", "gaussian_noise", "fog"], severities=[1, 3],
                    workers=0, progress=False)
    torch.manual_seed(1)
    torch.save(create_model("cornet_z", num_classes=2).state_dict(), root / "z2.pt")
    return root


def test_robustness_under_torchrun_gives_the_same_table(corrupted, tmp_path):
    """Must show (issue 25): the folders shared out over two ranks give the one table of one process."""
    args = ["robustness", "--model", "Z", "--num_classes", "2", "--ckpt_path", corrupted / "z2.pt", "--imsize", "32",
            "-j", "0", "--batch_size", "4", "--quiet", "--device", "cpu", "--data_path", corrupted / "c",
            "--clean_path", corrupted / "val"]
    assert main([str(a) for a in args + ["-o", tmp_path / "one"]]) == 0
    proc = torchrun("-m", "ventralkit.cli", *args, "-o", tmp_path / "two")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("clean error:") == 1  # rank 0 alone prints the table
    one, two = tmp_path / "one", tmp_path / "two"
    assert files(one) == files(two)
    assert (one / "summary.txt").read_text() == (two / "summary.txt").read_text()
    assert (one / "tinyimagenetc_results.csv").read_text() == (two / "tinyimagenetc_results.csv").read_text()
    import csv

    rows = [list(csv.DictReader((f / "robustness_details.csv").open())) for f in (one, two)]
    assert [(r["corruption_type"], r["difficulty"], r["n"]) for r in rows[0]] == \
           [(r["corruption_type"], r["difficulty"], r["n"]) for r in rows[1]]
    assert len(rows[0]) == 7 and {r["n"] for r in rows[0]} == {"6"}
    for a, b in zip(*rows):
        for key in ("valid_acc", "top5_acc", "loss"):
            assert abs(float(a[key]) - float(b[key])) <= 1e-6, (a, key)


@pytest.mark.slow
def test_a_rank_that_never_arrives_stops_the_wait_within_its_bound(tmp_path):
    """engine.ranks.wait_for_peers: rank 1 hangs; rank 0 gives up after VENTRALKIT_DIST_TIMEOUT_S (2 s here) in one
    line naming rank 1, instead of waiting forever."""
    proc = torchrun(SCRIPTS / "ranks_wait.py", env={"VENTRALKIT_DIST_TIMEOUT_S": "2"}, timeout=120)
    assert proc.returncode != 0
    assert "rank 1 did not finish its share within 2 s of rank 0" in proc.stderr, proc.stderr[-3000:]
