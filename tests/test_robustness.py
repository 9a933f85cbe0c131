"""Robustness suite: corrupted-dataset generation, evaluation, CE / mCE, CLI (issue 6).

Small generated folders only (2 classes x 2 images, 32 or 64 px); cornet_z at --imsize 32.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from ventralkit.analysis import robustness as rb
from ventralkit.analysis.robustness import generate
from ventralkit.errors import ConfigError, DataError

COLOURS = [(200, 80, 60), (60, 160, 90), (70, 90, 200), (180, 170, 60)]


def make_folder(root: Path, classes: int = 2, per_class: int = 2, size: int = 32, ext: str = ".png") -> Path:
    """root/class_<k>/img_<i><ext>: a shape of moderate colour on a smooth gradient (not saturated, so that
    every corruption, saturate included, changes it more at severity 5 than at 1)."""
    from PIL import Image, ImageDraw

    y, x = np.mgrid[0:size, 0:size]
    background = np.stack([100 + 80 * x / size, 90 + 60 * y / size, 120 + 40 * (x + y) / (2 * size)], -1)
    for c in range(classes):
        d = root / f"class_{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = Image.fromarray(background.astype(np.uint8))
            box = [size * (0.2 + 0.05 * i), size * 0.25, size * 0.8, size * (0.75 - 0.05 * i)]
            draw = ImageDraw.Draw(img)
            colour = COLOURS[(2 * c + i) % len(COLOURS)]
            (draw.ellipse if c % 2 == 0 else draw.rectangle)(box, fill=colour)
            img.save(d / f"img_{i}{ext}", **({"quality": 95} if ext == ".jpg" else {}))
    return root


def output_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != generate.MANIFEST}


def expected_tree(corruptions, severities, classes=2, per_class=2, ext=".png") -> set[str]:
    return {f"{c}/{s}/class_{k}/img_{i}{ext}" for c in corruptions for s in severities
            for k in range(classes) for i in range(per_class)}


# ---------------------------------------------------------------------------------------------
# generation


def test_corrupt_tree_complete_and_deterministic(tmp_path):
    src = make_folder(tmp_path / "val", ext=".jpg")
    names = ["gaussian_noise", "impulse_noise", "glass_blur", "frost"]  # the last three need more than np.random.seed
    first = rb.corrupt_dataset(src, tmp_path / "a", corruptions=names, severities=[1, 3], seed=0, workers=0)
    files = output_files(tmp_path / "a")
    assert set(files) == expected_tree(names, [1, 3], ext=".jpg")
    assert first.written == len(files) == 32 and first.skipped == 0 and first.images == 4
    manifest = json.loads((tmp_path / "a" / generate.MANIFEST).read_text())
    assert manifest["seed"] == 0 and manifest["jpeg_quality"] == 85 and manifest["corruptions"] == names
    # JPEG in, JPEG out, at the source size
    from PIL import Image

    with Image.open(tmp_path / "a/frost/3/class_0/img_0.jpg") as im:
        assert (im.format, im.size, im.mode) == ("JPEG", (32, 32), "RGB")
    # same seed -> identical bytes, whatever the number of processes
    rb.corrupt_dataset(src, tmp_path / "b", corruptions=names, severities=[1, 3], seed=0, workers=2)
    assert output_files(tmp_path / "b") == files
    # another seed changes the random corruptions
    rb.corrupt_dataset(src, tmp_path / "c", corruptions=names, severities=[1, 3], seed=1, workers=0)
    other = output_files(tmp_path / "c")
    for name in names:
        key = f"{name}/3/class_0/img_0.jpg"
        assert other[key] != files[key], name


def test_corrupt_resumes_after_interruption(tmp_path, monkeypatch):
    src = make_folder(tmp_path / "val")
    dst = tmp_path / "c"
    names, sevs = ["gaussian_noise", "contrast"], [1, 2, 5]
    reference = tmp_path / "ref"
    rb.corrupt_dataset(src, reference, corruptions=names, severities=sevs, seed=3, workers=0)
    expected = output_files(reference)

    real_save = generate.save_image_atomic
    calls = {"n": 0}

    def interrupted_save(arr, path, quality=85):  # dies while writing the 6th image
        calls["n"] += 1
        if calls["n"] == 6:
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(b"half an image")
            raise KeyboardInterrupt
        real_save(arr, path, quality)

    monkeypatch.setattr(generate, "save_image_atomic", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        rb.corrupt_dataset(src, dst, corruptions=names, severities=sevs, seed=3, workers=0)
    monkeypatch.setattr(generate, "save_image_atomic", real_save)
    partial = output_files(dst)
    assert len(partial) == 5 + 1  # five finished images and the stale temporary file
    assert all(expected[k] == v for k, v in partial.items() if not k.endswith(".tmp"))

    # delete one finished image as well; the re-run does only what is missing
    deleted = sorted(k for k in partial if not k.endswith(".tmp"))[0]
    (dst / deleted).unlink()
    stamps = {k: (dst / k).stat().st_mtime_ns for k in partial if not k.endswith(".tmp") and k != deleted}
    result = rb.corrupt_dataset(src, dst, corruptions=names, severities=sevs, seed=3, workers=0)
    assert result.skipped == 4 and result.written == len(expected) - 4
    assert output_files(dst) == expected  # complete, identical, no temporary file left
    assert all((dst / k).stat().st_mtime_ns == t for k, t in stamps.items())
    again = rb.corrupt_dataset(src, dst, corruptions=names, severities=sevs, seed=3, workers=0)
    assert again.written == 0 and again.skipped == len(expected)
    with pytest.raises(ConfigError, match="seed=3"):  # resuming with another seed would mix two datasets
        rb.corrupt_dataset(src, dst, corruptions=names, severities=sevs, seed=4, workers=0)


def test_every_corruption_changes_the_image_more_at_severity_5(tmp_path):
    """All 19 corruptions at severities 1 and 5 (catches a breaking imagecorruptions upgrade)."""
    from PIL import Image
    from skimage.metrics import structural_similarity

    src = make_folder(tmp_path / "val", size=64)
    dst = tmp_path / "c"
    result = rb.corrupt_dataset(src, dst, corruptions="all", severities=[1, 5], seed=0, workers=0)
    assert result.written == 19 * 2 * 4
    clean = {p.relative_to(src).as_posix(): np.asarray(Image.open(p)) for p in sorted(src.rglob("*.png"))}
    for name in rb.ALL:
        change, damage = {}, {}
        for sev in (1, 5):
            mae, dssim = [], []
            for rel, x in clean.items():
                y = np.asarray(Image.open(dst / name / str(sev) / rel))
                assert y.shape == x.shape and y.dtype == np.uint8, name
                mae.append(np.abs(y.astype(float) - x).mean())
                dssim.append(1 - structural_similarity(x, y, channel_axis=-1, data_range=255))
            change[sev], damage[sev] = np.mean(mae), np.mean(dssim)
        assert change[1] > 0, f"{name} severity 1 leaves the images unchanged"
        # 1 - SSIM rather than the mean absolute difference: frost at severity 5 darkens the image under a
        # brighter overlay, so its pixel change can be smaller than at severity 1 although it hides more
        assert damage[5] > damage[1], f"{name}: severity 5 does not damage the images more than severity 1"


def test_corrupt_image_matches_imagecorruptions():
    import imagecorruptions

    image = (np.random.default_rng(1).random((40, 48, 3)) * 200 + 20).astype(np.uint8)
    for name in rb.ALL:
        np.random.seed(7)
        kwargs = {"seed": 7} if name in ("glass_blur", "impulse_noise") else {}
        expected = imagecorruptions.corrupt(image, 3, name, **kwargs)
        state = np.random.get_state()[1].copy()
        assert np.array_equal(rb.corrupt_image(image, name, 3, seed=7), expected), name
        assert np.array_equal(np.random.get_state()[1], state)  # the global RNG is left as it was


def test_corrupt_image_redraws_non_finite_draws(monkeypatch):
    import imagecorruptions

    image = np.full((32, 32, 3), 100, np.uint8)
    seeds = []

    def nan_first(x, severity=1):
        seeds.append(np.random.get_state()[1][0])
        out = np.asarray(x, dtype=np.float64) + 10
        if len(seeds) == 1:
            out[:4, :4] = np.nan  # spatter's 0/0 when no drop survives its threshold
        return out

    monkeypatch.setitem(imagecorruptions.corruption_dict, "spatter", nan_first)
    out = rb.corrupt_image(image, "spatter", 1, seed=7)
    assert out.dtype == np.uint8 and (out == 110).all()  # the second draw, not the clean pixels
    np.random.seed(7)
    first = np.random.get_state()[1][0]
    np.random.seed(8)
    assert seeds == [first, np.random.get_state()[1][0]]  # drawn again with the next seed

    monkeypatch.setitem(imagecorruptions.corruption_dict, "spatter", lambda x, severity=1: np.full((32, 32, 3), np.nan))
    with pytest.raises(RuntimeError, match="non-finite pixels for 21 seeds"):
        rb.corrupt_image(image, "spatter", 1, seed=7)


def test_corrupt_never_writes_the_clean_image_for_spatter(tmp_path):
    """Seed 226 makes spatter's liquid mask all zero on this 32-px image (0/0: every pixel NaN); the
    output is drawn again with the next seed and the manifest says so (before: the clean image, silently)."""
    from PIL import Image

    src = make_folder(tmp_path / "val", classes=1, per_class=1, size=32)
    rel = "class_0/img_0.png"
    result = rb.corrupt_dataset(src, tmp_path / "c", corruptions=["spatter"], severities=[1], seed=226, workers=0)
    clean = np.asarray(Image.open(src / rel))
    out = np.asarray(Image.open(tmp_path / "c/spatter/1" / rel))
    assert not np.array_equal(out, clean)
    seed = rb.job_seed(226, "spatter", 1, rel)
    assert np.array_equal(out, rb.corrupt_image(clean, "spatter", 1, seed=seed + 1))
    assert result.redrawn == {f"spatter/1/{rel}": 1}
    manifest = json.loads((tmp_path / "c" / generate.MANIFEST).read_text())
    assert manifest["redrawn"] == {f"spatter/1/{rel}": 1}
    assert not (tmp_path / "c" / generate.REDRAW_LOG).exists()  # folded into the manifest

    # a killed run leaves the workers' log behind; the next run (even with nothing to do) folds it in
    (tmp_path / "c" / generate.REDRAW_LOG).write_text('{"spatter/1/class_0/other.png": 2}\n{"spatter/1/cl')
    again = rb.corrupt_dataset(src, tmp_path / "c", corruptions=["spatter"], severities=[1], seed=226, workers=0)
    assert again.written == 0
    manifest = json.loads((tmp_path / "c" / generate.MANIFEST).read_text())
    assert manifest["redrawn"] == {"spatter/1/class_0/other.png": 2, f"spatter/1/{rel}": 1}


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"corruptions": ["gausian_noise"]}, ConfigError,
         "unknown corruption 'gausian_noise': did you mean gaussian_noise"),
        ({"severities": [0]}, ConfigError, "severity 0 is outside 1..5"),
        ({"severities": [1, 6]}, ConfigError, "severity 6 is outside 1..5"),
        ({"size": 16}, ConfigError, "below 32"),
    ],
)
def test_corrupt_bad_options(tmp_path, kwargs, error, message):
    src = make_folder(tmp_path / "val", per_class=1)
    with pytest.raises(error) as info:
        rb.corrupt_dataset(src, tmp_path / "c", workers=0, **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "c").exists()


def _empty(root):
    root.mkdir()
    return root


def _flat(root):
    make_folder(root.parent / "tmp", per_class=1)
    root.mkdir()
    (root.parent / "tmp/class_0/img_0.png").rename(root / "img_0.png")
    return root


def _dataset_root(root):
    make_folder(root / "train", per_class=1)
    make_folder(root / "val", per_class=1)
    return root


def _empty_class(root):
    make_folder(root, per_class=1)
    (root / "class_2").mkdir()
    return root


def _tiny_images(root):
    return make_folder(root, per_class=1, size=16)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda root: root, "does not exist"),
        (_empty, "is empty; put images in class sub-folders"),
        (_flat, "holds images directly; corrupt expects class sub-folders"),
        (_dataset_root, "looks like a dataset root (it has train/ and val/); give the split to corrupt"),
        (_empty_class, "has no images"),
        (_tiny_images, "16x16 pixels; corruptions need at least 32x32"),
    ],
)
def test_corrupt_bad_folders(tmp_path, cli, build, message):
    src = build(tmp_path / "src")
    code, out, err = cli("corrupt", src, tmp_path / "dst", "--corruptions", "contrast", "--severities", "1", "-j", "0")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("ventralkit corrupt: error: ") and message in err


def test_corrupt_refuses_a_corrupted_source_and_dst_inside_src(tmp_path):
    src = make_folder(tmp_path / "val", per_class=1)
    rb.corrupt_dataset(src, tmp_path / "c", corruptions=["contrast"], severities=[1], workers=0)
    with pytest.raises(DataError, match="looks like a corrupted dataset already"):
        rb.corrupt_dataset(tmp_path / "c", tmp_path / "c2", workers=0)
    with pytest.raises(ConfigError, match="inside SRC"):
        rb.corrupt_dataset(src, src / "corrupted", workers=0)



CORRUPT = ("--corruptions", "contrast", "--severities", "1", "--quiet")


def _tiny_image_among_others(src: Path) -> Path:
    make_folder(src, per_class=2)
    from PIL import Image

    Image.new("RGB", (16, 16), (90, 120, 150)).save(src / "class_1" / "img_9.png")
    return src


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_failed_start_leaves_nothing_and_the_size_advice_works(tmp_path, cli, workers):
    """Issue 21: a 16 px image left DST half-made with size null, and `--size 32` (the advice) was then refused
    with "pass --size None", which argparse refuses. Now nothing is made, and the advice works as given."""
    src = _tiny_image_among_others(tmp_path / "src")
    dst = tmp_path / "dst"
    code, out, err = cli("corrupt", src, dst, *CORRUPT, "-j", workers)
    assert code == 2 and err.count("\n") == 1 and "img_9.png is 16x16 pixels" in err
    assert "pass --size 32 or more" in err
    assert not dst.exists()
    code, out, err = cli("corrupt", src, dst, *CORRUPT, "-j", workers, "--size", "32")  # as advised
    assert (code, err) == (0, "")
    assert len(output_files(dst)) == 5 and json.loads((dst / generate.MANIFEST).read_text())["size"] == 32


def test_a_truncated_image_leaves_nothing_and_deleting_it_as_advised_works(tmp_path, cli):
    src = make_folder(tmp_path / "src", per_class=2)
    cut = src / "class_0" / "img_0.png"  # the first image: the run fails before any output is finished
    cut.write_bytes(cut.read_bytes()[:-60])  # header intact, pixels cut short
    header_only = tmp_path / "src2"
    make_folder(header_only, per_class=1)
    (header_only / "class_1" / "img_0.png").write_bytes(b"\x89PNG\r\n")  # not even a header
    existing = tmp_path / "existing"
    existing.mkdir()  # a DST folder made beforehand stays, as it was
    for source, dst in ((src, tmp_path / "dst"), (header_only, tmp_path / "dst2"), (src, existing)):
        code, out, err = cli("corrupt", source, dst, *CORRUPT, "-j", "0")
        assert code == 2 and err.count("\n") == 1 and "cannot read image" in err and "fix or delete it" in err
        assert not dst.exists() or list(dst.iterdir()) == []
    cut.unlink()  # as advised
    code, out, err = cli("corrupt", src, tmp_path / "dst", *CORRUPT, "-j", "0")
    assert code == 0 and len(output_files(tmp_path / "dst")) == 3


def test_resuming_with_another_size_gives_advice_that_works(tmp_path, cli):
    src = make_folder(tmp_path / "src", per_class=1, size=40)
    code, _, _ = cli("corrupt", src, tmp_path / "plain", *CORRUPT, "-j", "0")
    assert code == 0
    code, out, err = cli("corrupt", src, tmp_path / "plain", *CORRUPT, "-j", "0", "--size", "32")
    assert code == 2 and "leave out --size to resume it" in err and "None" not in err.split(";")[1]
    code, out, err = cli("corrupt", src, tmp_path / "plain", *CORRUPT, "-j", "0")  # as advised
    assert code == 0 and "2 already there" in out

    code, _, _ = cli("corrupt", src, tmp_path / "sized", *CORRUPT, "-j", "0", "--size", "32")
    assert code == 0
    code, out, err = cli("corrupt", src, tmp_path / "sized", *CORRUPT, "-j", "0")
    assert code == 2 and "pass --size 32 to resume it" in err
    code, out, err = cli("corrupt", src, tmp_path / "sized", *CORRUPT, "-j", "0", "--size", "32")  # as advised
    assert code == 0 and "2 already there" in out

    # a 16 px image added to a source whose DST was made without --size: --size alone would be refused
    from PIL import Image

    Image.new("RGB", (16, 16)).save(src / "class_0" / "img_9.png")
    code, out, err = cli("corrupt", src, tmp_path / "plain", *CORRUPT, "-j", "0")
    assert code == 2 and "resize or remove it (DST was made without --size" in err
    (src / "class_0" / "img_9.png").unlink()  # as advised
    code, out, err = cli("corrupt", src, tmp_path / "plain", *CORRUPT, "-j", "0")
    assert code == 0


# ---------------------------------------------------------------------------------------------
# metrics


def test_ce_mce_relative_mce_by_hand():
    errors = {
        "gaussian_noise": {1: 0.2, 2: 0.3, 3: 0.4, 4: 0.5, 5: 0.6},  # sum 2.0, mean 0.4
        "contrast": {s: 0.3 for s in range(1, 6)},  # sum 1.5, mean 0.3
        "saturate": {s: 0.9 for s in range(1, 6)},  # an extra: reported, never in mCE
    }
    base = rb.Baseline("run0", errors={
        "gaussian_noise": {s: 0.5 for s in range(1, 6)},  # sum 2.5
        "contrast": {s: 0.6 for s in range(1, 6)},  # sum 3.0
        "saturate": {s: 0.1 for s in range(1, 6)},
    }, clean_error=0.2)
    s = rb.summarize(errors, clean_error=0.1, baseline=base)
    rows = {r["corruption"]: r for r in s["corruptions"]}
    assert rows["gaussian_noise"]["ce"] == pytest.approx(2.0 / 2.5)  # 0.8
    assert rows["contrast"]["ce"] == pytest.approx(1.5 / 3.0)  # 0.5
    assert s["mce"] == pytest.approx((0.8 + 0.5) / 2)  # 0.65; saturate (CE 9.0) left out
    assert rows["saturate"]["ce"] == pytest.approx(9.0)
    # relative CE: (sum E - 5 * clean) / (sum E_base - 5 * clean_base)
    assert rows["gaussian_noise"]["relative_ce"] == pytest.approx((2.0 - 0.5) / (2.5 - 1.0))  # 1.0
    assert rows["contrast"]["relative_ce"] == pytest.approx((1.5 - 0.5) / (3.0 - 1.0))  # 0.5
    assert s["relative_mce"] == pytest.approx(0.75)
    assert s["mean_error"] == pytest.approx((0.4 + 0.3) / 2)  # unnormalised, benchmark corruptions only
    assert s["extra_mean_error"] == pytest.approx(0.9)
    assert s["mce_corruptions"] == 2 and not s["complete"] and "2 of the 15" in s["notes"][0]

    # AlexNet: CE = mean error / AlexNet's mean error; relative CE uses AlexNet's clean error 0.43478
    alex = rb.summarize({"gaussian_noise": {s: 0.443214 for s in range(1, 6)}}, clean_error=0.2,
                        baseline=rb.alexnet_baseline())
    row = alex["corruptions"][0]
    assert row["ce"] == pytest.approx(0.443214 / 0.886428)  # 0.5
    assert row["relative_ce"] == pytest.approx((0.443214 - 0.2) / (0.886428 - 0.43478))
    # the AlexNet table holds means over 5 severities: no CE from fewer
    partial = rb.summarize({"gaussian_noise": {1: 0.5, 2: 0.6}}, baseline=rb.alexnet_baseline())
    assert partial["corruptions"][0]["ce"] is None and partial["mce"] is None
    # a per-severity baseline is compared on the common severities
    assert rb.corruption_error({1: 0.2, 3: 0.4}, {1: 0.4, 2: 0.9, 3: 0.8}) == pytest.approx(0.6 / 1.2)
    assert rb.relative_corruption_error({1: 0.3}, None, {1: 0.6}, 0.2) is None  # clean error unknown


def test_alexnet_table_is_the_published_one():
    assert list(rb.ALEXNET_MEAN_ERRORS) == list(rb.BENCHMARK)
    assert rb.ALEXNET_MEAN_ERRORS["gaussian_noise"] == 0.886428 and rb.ALEXNET_MEAN_ERRORS["jpeg_compression"] == 0.6065
    # a model with AlexNet's errors has mCE 100 %
    errors = {c: {s: e for s in range(1, 6)} for c, e in rb.ALEXNET_MEAN_ERRORS.items()}
    s = rb.summarize(errors, rb.ALEXNET_CLEAN_ERROR, rb.alexnet_baseline())
    assert s["mce"] == pytest.approx(1.0) and s["relative_mce"] == pytest.approx(1.0) and s["complete"]


def test_results_csv_matches_the_original_script(tmp_path):
    acc = {c: {s: round(1 - 0.1 * s, 1) for s in range(1, 6)} for c in rb.ALL}
    acc["brightness"][1] = 1 / 3
    path = rb.write_results_csv(tmp_path / "r.csv", acc)
    lines = path.read_text().splitlines()
    assert lines[0] == "corruption_type,difficulty,valid_acc"
    assert lines[1:7] == ["brightness,1,0.3333333333333333", "brightness,2,0.8", "brightness,3,0.7",
                          "brightness,4,0.6", "brightness,5,0.5", "defocus_blur,1,0.9"]
    order = list(dict.fromkeys(line.split(",")[0] for line in lines[1:]))
    assert order == list(rb.ORIGINAL_CSV_ORDER) and len(lines) == 1 + 19 * 5
    errors, clean = rb.read_results_csv(path)
    assert clean is None and errors["brightness"][1] == pytest.approx(2 / 3) and errors["snow"][5] == pytest.approx(0.5)
    (tmp_path / "bad.csv").write_text("corruption_type,difficulty,valid_acc\ngausian_noise,1,0.5\n")
    with pytest.raises(DataError, match="unknown corruption_type 'gausian_noise'"):
        rb.read_results_csv(tmp_path / "bad.csv")
    with pytest.raises(ConfigError, match="neither 'alexnet' nor"):
        rb.load_baseline(tmp_path / "missing.csv")


# ---------------------------------------------------------------------------------------------
# evaluation and CLI


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory):
    """A clean 2-class folder and its full 19 x 5 corrupted copy (32 px), made through the CLI."""
    from ventralkit.cli import main

    root = tmp_path_factory.mktemp("robust")
    val = make_folder(root / "val")
    assert main(["corrupt", str(val), str(root / "c"), "-j", "0", "--quiet"]) == 0
    return val, root / "c"


def test_cli_end_to_end(corrupted, tmp_path, cli):
    val, c_root = corrupted
    assert set(output_files(c_root)) == expected_tree(rb.ALL, range(1, 6))
    code, out, err = cli("corrupt", val, c_root, "-j", "0", "--quiet")  # nothing left to do
    assert code == 0 and "0 written, 380 already there" in out

    model = ["--model", "Z", "--random_init", "--num_classes", "2", "--imsize", "32", "-j", "0", "--batch_size", "4",
             "--quiet"]
    run1 = tmp_path / "run1"
    code, out, err = cli("robustness", *model, "--data_path", c_root, "--clean_path", val, "--baseline", "alexnet",
                         "-o", run1)
    assert code == 0, err
    assert "mCE:" in out and "baseline alexnet, 15 corruptions" in out
    for name in ("tinyimagenetc_results.csv", "robustness_details.csv", "summary.json", "summary.csv",
                 "summary.txt", "heatmap.png", "errors_by_corruption.png"):
        assert (run1 / name).is_file() and (run1 / name).stat().st_size > 0, name
    rows = list(csv.reader((run1 / "tinyimagenetc_results.csv").open()))
    assert rows[0] == ["corruption_type", "difficulty", "valid_acc"] and len(rows) == 1 + 19 * 5
    assert rows[1][:2] == ["brightness", "1"] and rows[1 + 15 * 5][0] == "gaussian_blur"
    summary = json.loads((run1 / "summary.json").read_text())
    assert summary["complete"] and summary["baseline"]["name"] == "alexnet"
    assert 0 <= summary["clean_error"] <= 1 and summary["mce"] is not None and summary["relative_mce"] is not None
    assert summary["preprocess"] == "auto" and summary["n_images"] == 19 * 5 * 4
    assert summary["preprocess_used"] == ["direct"]  # 32 x 32 images at --imsize 32: auto used them as they are
    mean15 = np.mean([r["mean_error"] for r in summary["corruptions"] if r["corruption"] in rb.BENCHMARK])
    assert summary["mean_error"] == pytest.approx(mean15)

    # a second run normalised by the first, compared with it in one table and figure
    run2 = tmp_path / "run2"
    code, out, err = cli("robustness", *model, "--data_path", c_root, "--corruptions", "noise", "--baseline", run1,
                         "--name", "second", "--compare", run1, "--names", "first", "-o", run2)
    assert code == 0, err
    assert (run2 / "comparison.png").is_file() and (run2 / "comparison.csv").is_file()
    table = list(csv.DictReader((run2 / "comparison.csv").open()))
    assert [r["name"] for r in table] == ["second", "first"]
    assert float(table[1]["mce"]) == pytest.approx(1.0)  # the baseline run against itself

    # compare-only mode
    code, out, err = cli("robustness", "--compare", run1, run2, "--baseline", "alexnet", "-o", tmp_path / "cmp")
    assert code == 0 and "mCE vs alexnet" in out and (tmp_path / "cmp/comparison.png").is_file()

    # bad input: one line, exit code 2
    for argv, message in [
        (["--data_path", val], "has no corruption folders (found class_0/, class_1/)"),
        (["--data_path", c_root, "--baseline", "nonsense"], "--baseline nonsense is neither 'alexnet'"),
        (["--data_path", c_root, "--severities", "7"], "severity 7 is outside 1..5"),
        (["--data_path", tmp_path / "nowhere"], "does not exist"),
        (["--data_path", c_root, "--baseline_clean_error", "43.5"], "must be a fraction between 0 and 1"),
    ]:
        code, out, err = cli("robustness", *model, *argv, "-o", tmp_path / "bad")
        assert code == 2 and err.count("\n") == 1 and message in err, (argv, err)
    code, out, err = cli("robustness", "-o", tmp_path / "bad")
    assert code == 2 and "give --data_path" in err
    code, out, err = cli("robustness", "--compare", run1, "--names", "a", "b", "-o", tmp_path / "bad")
    assert code == 2 and "--names has 2 labels for 1 --compare runs" in err


def test_evaluate_robustness_api(corrupted, tmp_path):
    import ventralkit

    val, c_root = corrupted
    model = ventralkit.create_model("cornet_z", num_classes=2)
    report = ventralkit.evaluate_robustness(model, c_root, clean_path=val, batch_size=8, workers=0, image_size=32,
                                            corruptions=["contrast", "fog"], severities=[1, 5], progress=False)
    assert set(report.accuracies) == {"fog", "contrast"} and set(report.accuracies["fog"]) == {1, 5}
    assert report.files == {} and 0 <= report.clean_error <= 1
    assert [d["corruption_type"] for d in report.details] == ["clean", "fog", "fog", "contrast", "contrast"]
    assert report.mce is None  # no baseline
    rows = rb.compare_robustness([report, report.summary], names=["a", "b"], output_dir=tmp_path)
    assert rows[0]["fog"] == rows[1]["fog"] and (tmp_path / "comparison.png").is_file()


@pytest.mark.parametrize(("preprocess", "size", "workers"), [("direct", 32, 0), ("eval", 28, 1)])
def test_one_pass_over_the_grid_scores_each_folder_as_the_engine_does(corrupted, preprocess, size, workers):
    """Batches that straddle folders (5 images per batch, 3 per forward pass, 4 images per folder), uint8
    decoding in a thread or a worker, channels_last: the same numbers as the engine's evaluate per folder."""
    import torch
    from torch.utils.data import DataLoader

    import ventralkit
    from ventralkit.data.folders import ImageFolderDataset
    from ventralkit.data.transforms import eval_transform, normalize
    from ventralkit.engine.evaluate import evaluate
    from torchvision import transforms as T

    val, c_root = corrupted
    torch.manual_seed(0)
    model = ventralkit.create_model("cornet_z", num_classes=2)
    report = ventralkit.evaluate_robustness(model, c_root, clean_path=val, batch_size=5, forward_batch=3,
                                            workers=workers, image_size=size, preprocess=preprocess,
                                            corruptions=["gaussian_noise", "fog", "pixelate"], progress=False)
    assert report.summary["preprocess_used"] == [preprocess]
    if preprocess == "direct":
        reference = T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor(), normalize(model.info)])
    else:
        reference = eval_transform(model.info, size)
    for d in report.details:
        folder = val if d["corruption_type"] == "clean" else c_root / d["corruption_type"] / str(d["difficulty"])
        loader = DataLoader(ImageFolderDataset(folder, reference), batch_size=4)
        expected = evaluate(model, loader, device="cpu", progress=False)
        assert (d["n"], d["valid_acc"], d["top5_acc"]) == (expected.n, expected.top1, expected.top5), d
        assert d["loss"] == pytest.approx(expected.loss, rel=1e-5), d
    assert not next(model.parameters()).is_contiguous(memory_format=torch.channels_last) or \
        next(model.parameters()).is_contiguous()  # the model's layout is given back


def test_an_unreadable_image_stops_the_pass_with_its_name(corrupted, tmp_path):
    """The decoding thread's error reaches the caller as the one-line DataError (and the thread ends)."""
    import shutil
    import threading

    import ventralkit

    val, c_root = corrupted
    shutil.copytree(c_root / "fog", tmp_path / "c/fog")
    (tmp_path / "c/fog/3/class_1/broken.png").write_bytes(b"not a png")
    model = ventralkit.create_model("cornet_z", num_classes=2)
    with pytest.raises(DataError, match="cannot read image .*broken.png"):
        ventralkit.evaluate_robustness(model, tmp_path / "c", batch_size=4, workers=0, image_size=32, progress=False)
    assert not [t for t in threading.enumerate() if t.name == "robustness-decode"]


def _misnamed_corruption(c_root, root):
    (root / "gausian_noise/1/class_0").mkdir(parents=True)
    return "gausian_noise is not a corruption name (did you mean gaussian_noise?)"


def _misnamed_severity(c_root, root):
    (root / "fog/sev1").mkdir(parents=True)
    return "fog/sev1 is not a severity folder; severity folders are named 1, 2, 3, 4, 5"


def _missing_class(c_root, root):
    import shutil

    shutil.copytree(c_root / "fog/1", root / "fog/1")
    shutil.copytree(c_root / "fog/2/class_0", root / "fog/2/class_0")
    return "fog/2 has other class folders than"


def _empty_severity(c_root, root):
    (root / "fog/1").mkdir(parents=True)
    return "has no class sub-folders"


@pytest.mark.parametrize("build", [_misnamed_corruption, _misnamed_severity, _missing_class, _empty_severity])
def test_evaluate_robustness_bad_folders(corrupted, tmp_path, build):
    import ventralkit

    _, c_root = corrupted
    root = tmp_path / "c"
    root.mkdir()
    message = build(c_root, root)
    model = ventralkit.create_model("cornet_z", num_classes=2)
    with pytest.raises(DataError) as info:
        ventralkit.evaluate_robustness(model, root, workers=0, image_size=32, progress=False)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_checkpoint_supplies_classes_size_and_labels(corrupted, tmp_path, cli):
    """A ventralkit checkpoint gives the class count, image size and class names; folders map by name."""
    import shutil

    import torch

    import ventralkit

    val, c_root = corrupted
    model = ventralkit.create_model("cornet_z", num_classes=3)
    ckpt = tmp_path / "z.pt"
    torch.save({"format": "ventralkit", "model_name": "cornet_z", "num_classes": 3, "model": model.state_dict(),
                "classes": ["class_0", "class_1", "zebra"], "config": {"image_size": 32}}, ckpt)
    sub = tmp_path / "c"
    shutil.copytree(c_root / "fog", sub / "fog")
    code, out, err = cli("robustness", "--ckpt_path", ckpt, "--data_path", sub, "-j", "0", "--quiet",
                         "-o", tmp_path / "run")
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["image_size"] == 32
    # labels follow the checkpoint's class list, not the folder positions
    torch.save({"format": "ventralkit", "model_name": "cornet_z", "num_classes": 3, "model": model.state_dict(),
                "classes": ["zebra", "class_1", "class_0"], "config": {"image_size": 32}}, ckpt)
    with torch.no_grad():
        for p in model.decoder.linear.parameters():
            p.zero_()
        model.decoder.linear.bias[2] = 1.0  # always predicts index 2 = class_0 in this class list
    torch.save({"format": "ventralkit", "model_name": "cornet_z", "num_classes": 3, "model": model.state_dict(),
                "classes": ["zebra", "class_1", "class_0"], "config": {"image_size": 32}}, ckpt)
    report = ventralkit.evaluate_robustness(model, sub, workers=0, image_size=32, progress=False,
                                            classes=["zebra", "class_1", "class_0"])
    assert report.accuracies["fog"][1] == pytest.approx(0.5)  # the class_0 half of the images
    # the command reads the class list from the checkpoint: in folder order (class_0 = 0) index 2 is no class
    code, out, err = cli("robustness", "--ckpt_path", ckpt, "--data_path", sub, "-j", "0", "--quiet",
                         "-o", tmp_path / "permuted")
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "permuted" / "tinyimagenetc_results.csv").open()))
    assert [(r["corruption_type"], r["difficulty"]) for r in rows] == [("fog", str(s)) for s in range(1, 6)]
    assert [float(r["valid_acc"]) for r in rows] == [0.5] * 5
    with pytest.raises(DataError, match="'class_1', which is not one of the model's 2 training classes"):
        ventralkit.evaluate_robustness(model, sub, workers=0, image_size=32, progress=False,
                                       classes=["zebra", "class_0"])


def test_unwritable_output_and_raw_tiny_val_fail_before_work(corrupted, tmp_path, cli):
    val, c_root = corrupted
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out, err = cli("robustness", "--model", "Z", "--random_init", "--num_classes", "2", "--data_path", c_root,
                         "-o", blocker, "--quiet")
    assert code == 2 and "cannot be written" in err and err.count("\n") == 1
    code, out, err = cli("corrupt", val, blocker / "sub", "--quiet")
    assert code == 2 and "cannot be written" in err and err.count("\n") == 1
    raw = tmp_path / "tiny" / "val"
    (raw / "images").mkdir(parents=True)
    (raw / "val_annotations.txt").write_text("val_0.JPEG\tn01443537\t0\t0\t62\t62\n")
    code, out, err = cli("corrupt", raw, tmp_path / "out", "--quiet")
    assert code == 2 and "ventralkit prepare tiny-imagenet" in err


def test_size_option_is_torchvisions_resize_and_center_crop(tmp_path):
    """--size N: Resize(int(N*256/224)) + CenterCrop(N), pixel for pixel as torchvision (ImageNet-C protocol)."""
    import torchvision.transforms as T
    from PIL import Image

    from ventralkit.analysis.robustness.generate import _load_source

    for (w, h), size in (((500, 375), 224), ((333, 500), 64), ((100, 77), 32)):
        path = tmp_path / f"{w}x{h}.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        ref = T.Compose([T.Resize(int(size * 256 / 224), interpolation=T.InterpolationMode.BILINEAR),
                         T.CenterCrop(size)])(Image.open(path).convert("RGB"))
        assert np.array_equal(_load_source(str(path), size), np.asarray(ref)), (w, h, size)


#: sha256 (first 16 hex digits) of outputs written by `corrupt` before the batched rewrite (commit e027d32):
#: the same seed must keep giving the same bytes
PINNED_OUTPUTS = {
    ("a", "gaussian_noise/4/class_0/img_1.jpg"): "1765a5560af6631e",
    ("a", "impulse_noise/1/class_0/img_1.jpg"): "9db834d212e586ac",
    ("a", "glass_blur/1/class_0/img_1.jpg"): "26e69502564018c2",
    ("a", "frost/4/class_0/img_1.jpg"): "8f751d63bfbb857b",
    ("a", "spatter/4/class_0/img_1.jpg"): "4b99fc66e177722e",
    ("a", "elastic_transform/1/class_0/img_1.jpg"): "7e8e3ed8be839e6f",
    ("a", "jpeg_compression/4/class_0/img_1.jpg"): "0f8b9ccd0cce4e19",
    ("b", "shot_noise/5/class_0/img_0.png"): "55a989bbbcfd9b7b",
    ("b", "spatter/2/class_0/img_0.png"): "e98d75a54a117269",
    ("b", "fog/5/class_0/img_0.png"): "682185108d9b9524",
}


def test_corrupt_output_bytes_are_pinned(tmp_path):
    import hashlib

    a = make_folder(tmp_path / "val", size=64, ext=".jpg")
    b = make_folder(tmp_path / "val2", size=48, ext=".png", classes=1, per_class=1)
    names = sorted({c for root, rel in PINNED_OUTPUTS if root == "a" for c in [rel.split("/")[0]]})
    rb.corrupt_dataset(a, tmp_path / "a", corruptions=names, severities=[1, 4], seed=5, workers=0, progress=False)
    rb.corrupt_dataset(b, tmp_path / "b", corruptions=["shot_noise", "fog", "spatter"], severities=[2, 5], seed=0,
                       size=40, workers=0, progress=False)
    got = {key: hashlib.sha256((tmp_path / key[0] / key[1]).read_bytes()).hexdigest()[:16] for key in PINNED_OUTPUTS}
    assert got == PINNED_OUTPUTS


def test_alexnet_baseline_on_other_classes_is_flagged_in_summary_and_figures(corrupted, tmp_path, monkeypatch):
    """AlexNet's ImageNet-C errors against 2-class images: warned, noted, drawn grey with the caveat; mCE in titles."""
    import ventralkit
    import ventralkit.plots.robustness as rp

    figs = []
    real = rp.save_figure
    monkeypatch.setattr(rp, "save_figure", lambda fig, path, **kw: (figs.append(fig), real(fig, path, **kw))[1])
    val, c_root = corrupted
    model = ventralkit.create_model("cornet_z", num_classes=2)
    with pytest.warns(UserWarning, match=r"ImageNet-C errors \(1000 classes\) but these images have 2 classes"):
        report = ventralkit.evaluate_robustness(model, c_root, clean_path=val, batch_size=8, workers=0, image_size=32,
                                                corruptions="benchmark", baseline="alexnet", output_dir=tmp_path,
                                                progress=False)
    caveat = report.summary["baseline_caveat"]
    assert caveat in report.summary["notes"] and json.loads((tmp_path / "summary.json").read_text())["baseline_caveat"]
    heatmap, bars = figs
    mce = f"mCE {100 * report.mce:.1f}% vs alexnet"
    assert mce in heatmap.axes[0].get_title() and mce in bars.axes[0].get_title()
    assert "alexnet (another dataset, see note)" in [t.get_text() for t in bars.axes[0].get_legend().get_texts()]
    assert any(caveat[:40] in " ".join(t.get_text().split()) for t in bars.texts)
