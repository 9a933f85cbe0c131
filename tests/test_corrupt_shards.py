"""Sharded corruption (issue 25 item 3): ``corrupt --shard I/N`` per task of an array job, ``corrupt --merge DST``.

Small generated folders (2 classes x 4 images, 32 px PNG), three corruptions at two severities; spatter at seed
226 redraws class_0/img_0 (its first draw is all NaN on this image, see test_robustness), so the merged manifest's
``redrawn`` comes from a shard's record.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from test_robustness import make_folder
from ventralkit.analysis.robustness import generate
from ventralkit.analysis.robustness.shards import SHARD_DIR, Shard, parse_shard
from ventralkit.errors import ConfigError

OPTIONS = ("--corruptions", "spatter", "contrast", "gaussian_noise", "--severities", "1", "3", "--seed", "226",
           "--quiet")


def tree(root: Path) -> dict[str, bytes]:
    """Every file below ``root``, hidden ones and the manifest included."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def src(tmp_path):
    return make_folder(tmp_path / "val", classes=2, per_class=4)


def run_shards(cli, src, dst, count=3, options=OPTIONS, workers=("0",) * 3):
    for index in range(count):
        code, out, err = cli("corrupt", src, dst, *options, "--shard", f"{index}/{count}", "-j", workers[index])
        assert (code, err) == (0, ""), err
        assert out.startswith(f"shard {index}/{count}: ") and f"corrupt --merge {dst}" in out


def test_three_shards_and_merge_equal_one_run_byte_for_byte(tmp_path, src, cli):
    code, _, err = cli("corrupt", src, tmp_path / "one", *OPTIONS, "-j", "0")
    assert (code, err) == (0, "")
    expected = tree(tmp_path / "one")
    manifest = json.loads(expected[generate.MANIFEST])
    assert manifest["redrawn"] == {"spatter/1/class_0/img_0.png": 1}  # the redraw the shards must carry over

    dst = tmp_path / "sharded"
    run_shards(cli, src, dst, workers=("2", "0", "0"))  # shard 0 (with the redraw) in the worker pool
    assert not (dst / generate.MANIFEST).exists()  # no shard writes the shared manifest
    records = sorted(p.name for p in (dst / SHARD_DIR).iterdir())
    assert records == ["0-of-3.json", "1-of-3.json", "2-of-3.json"]
    parts = [json.loads((dst / SHARD_DIR / r).read_text()) for r in records]
    assert [p["shard_images"] for p in parts] == [3, 3, 2] and all(p["finished"] for p in parts)
    assert parts[0]["redrawn"] == manifest["redrawn"] and parts[1]["redrawn"] == parts[2]["redrawn"] == {}

    code, out, err = cli("corrupt", "--merge", dst, "--quiet")
    assert (code, err) == (0, "") and out.startswith("merged 3 shards: 48 images")
    assert tree(dst) == expected  # outputs and manifest byte for byte; no shard record left

    code, out, err = cli("corrupt", "--merge", dst, "--quiet")  # a check run of the merged DST
    assert (code, err) == (0, "") and out.startswith(f"checked {dst}: 48 images")
    assert tree(dst) == expected


def test_shards_are_disjoint_and_cover_the_listing():
    items = [f"c/{i}.png" for i in range(10)]
    parts = [Shard(i, 4).select(items) for i in range(4)]
    assert sorted(sum(parts, [])) == sorted(items) and sum(map(len, parts)) == len(items)
    assert all(Shard(0, 4).owner(items.index(x)) == i for i, part in enumerate(parts) for x in part)


@pytest.mark.parametrize(("spec", "message"), [
    ("3/3", "--shard 3/3: the index must be in 0..2"),
    ("-1/3", "the index must be in 0..2"),
    ("1/0", "N must be 1 or more"),
    ("x", "is not I/N"),
])
def test_a_shard_out_of_range_is_one_line_and_writes_nothing(tmp_path, src, cli, spec, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse_shard(spec)
    dst = tmp_path / "c"
    code, out, err = cli("corrupt", src, dst, *OPTIONS, f"--shard={spec}")
    assert code == 2 and err.count("\n") == 1 and message in err
    assert not dst.exists()


def test_a_shard_with_other_options_is_refused_before_writing(tmp_path, src, cli):
    dst = tmp_path / "c"
    run_shards(cli, src, dst, count=3)
    before = tree(dst)
    other_seed = tuple("7" if a == "226" else a for a in OPTIONS)
    for options, spec, words in ((other_seed, "1/3", "seed=226 but this shard has seed=7"),
                                 (OPTIONS, "1/2", "3 shards but this shard has 2 shards")):
        code, _, err = cli("corrupt", src, dst, *options, "--shard", spec, "-j", "0")
        assert code == 2 and err.count("\n") == 1 and words in err, err
        assert tree(dst) == before
    code, _, err = cli("corrupt", src, dst, *OPTIONS, "-j", "0")  # unsharded into a sharded DST
    assert code == 2 and "--merge" in err and tree(dst) == before


def test_shards_made_with_different_options_are_not_merged(tmp_path, src, cli):
    """Two shards started at the same time do not see each other's record: the merge refuses the mix."""
    dst, other = tmp_path / "c", tmp_path / "other"
    for index in (0, 2):
        cli("corrupt", src, dst, *OPTIONS, "--shard", f"{index}/3", "-j", "0")
    other_seed = tuple("7" if a == "226" else a for a in OPTIONS)
    code, _, _ = cli("corrupt", src, other, *other_seed, "--shard", "1/3", "-j", "0")
    assert code == 0
    shutil.copytree(other, dst, dirs_exist_ok=True)  # as if shard 1 had run with --seed 7 beside the others
    before = tree(dst)
    code, out, err = cli("corrupt", "--merge", dst, "--quiet")
    assert code == 2 and err.count("\n") == 1 and "shards made with different options" in err
    assert "seed=226" in err and "seed=7" in err
    assert tree(dst) == before and not (dst / generate.MANIFEST).exists()


def test_merge_names_what_is_missing_and_resuming_the_shard_fixes_it(tmp_path, src, cli):
    dst = tmp_path / "c"
    for index in (0, 1):
        cli("corrupt", src, dst, *OPTIONS, "--shard", f"{index}/3", "-j", "0")
    code, _, err = cli("corrupt", "--merge", dst, "--quiet")
    assert code == 2 and err.count("\n") == 1 and "no record of shard 2/3" in err
    cli("corrupt", src, dst, *OPTIONS, "--shard", "2/3", "-j", "0")
    lost = dst / "contrast/3/class_1/img_0.png"  # position 4 of the listing: shard 1
    lost.unlink()
    # a temporary file of shard 1's image survives a rerun of shard 0 (shard 1 might be writing it)
    temp = dst / "contrast/3/class_1/.img_0.png.4242.tmp"
    temp.write_bytes(b"half")
    code, _, err = cli("corrupt", src, dst, *OPTIONS, "--shard", "0/3", "-j", "0")
    assert code == 0 and temp.exists()
    code, _, err = cli("corrupt", "--merge", dst, "--quiet")
    assert code == 2 and err.count("\n") == 1 and "1 outputs of" in err and "written by shard 1/3" in err
    assert not (dst / generate.MANIFEST).exists()
    code, out, _ = cli("corrupt", src, dst, *OPTIONS, "--shard", "1/3", "-j", "0")  # as advised
    assert code == 0 and "1 written" in out and lost.is_file() and not temp.exists()
    code, out, err = cli("corrupt", "--merge", src, dst, *OPTIONS)  # the shards' command line with --merge
    assert (code, err) == (0, ""), err
    code, _, err = cli("corrupt", "--merge", dst, "--seed", "1", "--quiet")
    assert code == 2 and f"{dst} was made with seed=226, not seed=1" in err  # merged: the manifest decides
    lost.unlink()
    code, _, err = cli("corrupt", "--merge", dst, "--quiet")
    assert code == 2 and err.count("\n") == 1 and "written by the run" in err


def test_merge_of_a_folder_without_shards_is_one_line(tmp_path, cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    for target in (empty, tmp_path / "absent"):
        code, _, err = cli("corrupt", "--merge", target)
        assert code == 2 and err.count("\n") == 1 and str(target) in err
