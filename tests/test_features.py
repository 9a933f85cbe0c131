"""Batched feature extraction: names, shapes, time steps, row order, file formats, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ventralkit import create_model
from ventralkit.analysis.features import cornet_feature_filename, extract_features
from ventralkit.cli import main
from ventralkit.data.embedded import draw_shape
from ventralkit.errors import ConfigError, DataError

SIZE = 32


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Five JPEGs written out of name order, plus files that are not images."""
    folder = tmp_path_factory.mktemp("imgs")
    rng = np.random.RandomState(0)
    for k, name in enumerate(["e.jpg", "b.png", "d.JPEG", "a.jpg", "c.jpeg"]):
        img = draw_shape(k, 40, rng)
        img.save(folder / name, "PNG" if name.endswith("png") else "JPEG")
    (folder / "notes.txt").write_text("not an image")
    (folder / ".DS_Store").write_bytes(b"\0\1")
    (folder / "sub").mkdir()
    return folder


@pytest.fixture(scope="module")
def z():
    torch.manual_seed(0)
    return create_model("cornet_z").eval()


@pytest.fixture(scope="module")
def s():
    torch.manual_seed(0)
    return create_model("cornet_s").eval()


def one_image_forward(model, path: Path, layer: str) -> list[np.ndarray]:
    """The original run.py test way: one image, square resize, a hook; every call of the layer."""
    from ventralkit.data.folders import open_rgb
    from ventralkit.data.transforms import square_resize_transform

    x = square_resize_transform(model.info, SIZE)(open_rgb(str(path)))[None]
    outs = []
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: outs.append(o.reshape(1, -1).numpy()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return outs


def test_cornet_z_default_layers_and_shapes(images, z):
    feats = extract_features(z, images, image_size=SIZE, batch_size=2, workers=0, progress=False)
    assert list(feats) == ["V1.output-t0", "V2.output-t0", "V4.output-t0", "IT.output-t0", "decoder.avgpool-t0"]
    assert {k: v.shape for k, v in feats.items()} == {
        "V1.output-t0": (5, 64 * 8 * 8), "V2.output-t0": (5, 128 * 4 * 4), "V4.output-t0": (5, 256 * 2 * 2),
        "IT.output-t0": (5, 512), "decoder.avgpool-t0": (5, 512)}
    assert all(v.dtype == np.float32 for v in feats.values())


def test_cornet_s_time_steps_per_area(images, s):
    feats = extract_features(s, images, layers=["V1.output", "V2.output", "V4.output", "IT.output"],
                             image_size=SIZE, batch_size=4, workers=0, progress=False, channels_last=False)
    steps: dict[str, int] = {}
    for name in feats:
        layer = name.rsplit("-t", 1)[0]
        steps[layer.split(".")[0]] = steps.get(layer.split(".")[0], 0) + 1
    assert steps == {"V1": 1, "V2": 2, "V4": 4, "IT": 2}
    assert feats["V4.output-t3"].shape == (5, 256 * 2 * 2)
    assert not np.allclose(feats["V4.output-t0"], feats["V4.output-t3"])
    # the requested subset, and rows identical to the full extraction
    sub = extract_features(s, images, layers=["V4.output"], time_steps=[0, 3], image_size=SIZE, batch_size=3,
                           workers=0, progress=False, channels_last=False)
    assert list(sub) == ["V4.output-t0", "V4.output-t3"]
    np.testing.assert_allclose(sub["V4.output-t3"], feats["V4.output-t3"], rtol=1e-4, atol=1e-4)


def test_rows_follow_sorted_file_names(images, s, tmp_path):
    out = tmp_path / "out"
    feats = extract_features(s, images, layers=["V4.output"], time_steps=2, image_size=SIZE, batch_size=2,
                             workers=1, output_dir=out, progress=False)
    names = (out / "images.txt").read_text().splitlines()
    assert [Path(n).name for n in names] == ["a.jpg", "b.png", "c.jpeg", "d.JPEG", "e.jpg"]  # non-images ignored
    arr = feats["V4.output-t2"]
    for row, name in enumerate(names):
        ref = one_image_forward(s, Path(name), "V4.output")
        assert len(ref) == 4
        np.testing.assert_allclose(arr[row], ref[2][0], rtol=1e-4, atol=1e-4)


def test_npy_files_and_the_cornet_name(images, s, tmp_path):
    out = tmp_path / "one"
    feats = extract_features(s, images, layers=["V4.output"], time_steps=1, image_size=SIZE, workers=0,
                             output_dir=out, progress=False, channels_last=False)
    assert sorted(os.listdir(out)) == ["CORnet-S_V4_output_feats.npy", "V4.output-t1.npy", "features.json",
                                       "images.txt"]
    a = np.load(out / "V4.output-t1.npy")
    assert a.shape == (5, 1024)
    np.testing.assert_array_equal(np.load(out / "CORnet-S_V4_output_feats.npy"), a)
    np.testing.assert_array_equal(np.asarray(feats["V4.output-t1"]), a)
    meta = json.loads((out / "features.json").read_text())
    assert meta["time_steps_fired"] == {"V4.output": 4} and meta["features"]["V4.output-t1"]["shape"] == [5, 1024]
    # two arrays: no CORnet name
    two = tmp_path / "two"
    extract_features(s, images, layers=["V4.output"], time_steps=[1, 2], image_size=SIZE, workers=0,
                     output_dir=two, progress=False, channels_last=False)
    assert not any(n.startswith("CORnet-") for n in os.listdir(two))
    assert cornet_feature_filename("cornet_s100", "Decoder.output") == "CORnet-S100_Decoder_output_feats.npy"
    assert cornet_feature_filename("cornet_rt", "decoder.avgpool") == "CORnet-RT_decoder_avgpool_feats.npy"
    assert cornet_feature_filename("v1_resnet50", "layer1") is None


def test_hdf5_output(images, z, tmp_path):
    import h5py

    ref = extract_features(z, images, layers=["V4.output", "IT.output"], image_size=SIZE, workers=0,
                           progress=False)
    out = tmp_path / "h5"
    feats = extract_features(z, images, layers=["V4.output", "IT.output"], image_size=SIZE, workers=0,
                             output_dir=out, format="hdf5", batch_size=2, progress=False)
    assert sorted(os.listdir(out)) == ["features.h5", "features.json", "images.txt"]
    with h5py.File(out / "features.h5", "r") as f:
        assert sorted(f) == ["IT.output-t0", "V4.output-t0"]
        assert f["V4.output-t0"].shape == (5, 1024)
        assert f["V4.output-t0"].attrs["layer"] == "V4.output"
        np.testing.assert_allclose(f["IT.output-t0"][()], ref["IT.output-t0"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(feats["V4.output-t0"], ref["V4.output-t0"], rtol=1e-4, atol=1e-5)


def test_list_of_paths_keeps_its_order_and_datasets_work(images, z):
    paths = [images / "e.jpg", images / "a.jpg"]
    feats = extract_features(z, paths, layers=["IT.output"], image_size=SIZE, workers=0, progress=False)
    full = extract_features(z, images, layers=["IT.output"], image_size=SIZE, workers=0, progress=False)
    np.testing.assert_allclose(feats["IT.output-t0"], full["IT.output-t0"][[4, 0]], rtol=1e-4, atol=1e-5)

    from ventralkit.data.embedded import digits_datasets
    from ventralkit.data.transforms import eval_transform

    _, val, _ = digits_datasets(eval_transform=eval_transform(z.info, SIZE), image_size=SIZE)
    sub = torch.utils.data.Subset(val, range(6))
    out = extract_features(z, sub, layers=["decoder.avgpool"], batch_size=4, workers=0, progress=False)
    assert out["decoder.avgpool-t0"].shape == (6, 512)


def test_errors_in_the_api(images, s, tmp_path):
    with pytest.raises(ConfigError, match=r"^V4\.output fires 4 times; --time_step 5 is out of range 0\.\.3 "
                                          r"\(or -4\.\.-1 from the last\)$"):
        extract_features(s, images, layers=["V4.output"], time_steps=5, image_size=SIZE, workers=0,
                         output_dir=tmp_path / "bad", progress=False, channels_last=False)
    assert os.listdir(tmp_path / "bad") == []  # nothing half-written
    with pytest.raises(ConfigError, match="V1.output fires once"):
        extract_features(s, images, layers=["V1.output", "V4.output"], time_steps=3, image_size=SIZE, workers=0,
                         progress=False, channels_last=False)
    with pytest.raises(ConfigError, match="has no layer 'V4.outptu'"):
        extract_features(s, images, layers=["V4.outptu"], progress=False)
    with pytest.raises(ConfigError, match="batch_size"):
        extract_features(s, images, batch_size=0, progress=False)
    with pytest.raises(DataError, match="does not exist"):
        extract_features(s, tmp_path / "nowhere", progress=False)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def test_cli_bad_layer_and_time_step_exit_2(images, tmp_path, capsys):
    common = ["--random_init", "--imsize", str(SIZE), "--data_path", str(images), "-o", str(tmp_path / "f")]
    assert main(["features", "--model", "Z", "--layers", "V4.outpt", *common]) == 2
    err = _one_line_error(capsys)
    assert "no layer 'V4.outpt'" in err and "V4.output" in err
    assert main(["features", "--model", "RT", "--times", "3", "--layers", "V4.output", "--time_steps", "5",
                 "--workers", "0", *common]) == 2
    assert "V4.output fires 3 times; --time_step 5 is out of range 0..2" in _one_line_error(capsys)
    assert main(["test", "--model", "Z", "--time_step", "1", "--workers", "0", *common]) == 2
    assert "decoder.avgpool fires once; --time_step 1 is out of range 0..0" in _one_line_error(capsys)
    assert not (tmp_path / "f").exists()  # the output folder it created is removed again


def test_cli_features_writes_every_time_step(images, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["features", "--model", "RT", "--times", "2", "--random_init", "--layers", "V2.output",
                 "IT.output", "--imsize", str(SIZE), "--data_path", str(images), "-o", str(out), "--workers", "0",
                 "--no_progress"]) == 0
    assert sorted(p.name for p in out.glob("*.npy")) == ["IT.output-t0.npy", "IT.output-t1.npy",
                                                         "V2.output-t0.npy", "V2.output-t1.npy"]
    assert "4 arrays" in capsys.readouterr().out


def test_truncated_jpeg_gives_one_clear_line(images, tmp_path, capsys):
    folder = tmp_path / "broken"
    folder.mkdir()
    for p in sorted(images.iterdir()):
        if p.is_file():
            (folder / p.name).write_bytes(p.read_bytes())
    data = (folder / "c.jpeg").read_bytes()
    (folder / "c.jpeg").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    rc = main(["test", "--model", "Z", "--random_init", "--imsize", str(SIZE), "--data_path", str(folder),
               "-o", str(out), "--workers", "1", "--batch_size", "2", "--no_progress"])
    assert rc == 2
    err = _one_line_error(capsys)
    assert "c.jpeg" in err and "truncated" in err
    assert not out.exists()  # nothing half-written
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["features", "--model", "Z", "--random_init", "--imsize", str(SIZE), "--data_path", str(folder),
                 "-o", str(out), "--workers", "0", "--no_progress"]) == 2
    assert "c.jpeg" in _one_line_error(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_uint8_transport_matches_the_float_pipeline(images, z):
    """Images travel as uint8 H x W x 3 and are normalised per batch: the same numbers as ToTensor+Normalize."""
    from ventralkit.analysis.features import _build_transform
    from ventralkit.data.folders import open_rgb
    from ventralkit.data.transforms import normalize_hwc_uint8
    from ventralkit.models.preprocessing import preprocessing_of, resolve

    img = open_rgb(str(images / "a.jpg"))
    mean = torch.tensor(z.info.mean).view(1, 3, 1, 1)
    std = torch.tensor(z.info.std).view(1, 3, 1, 1)
    for kind in ("square", "center"):
        pre = resolve(preprocessing_of(z), image_size=SIZE)
        ref = _build_transform(kind, pre, uint8=False)(img)
        u8 = _build_transform(kind, pre, uint8=True)(img)
        assert u8.dtype == torch.uint8 and u8.shape == (SIZE, SIZE, 3)
        x = normalize_hwc_uint8(u8[None], mean, std)
        assert x.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(x[0], ref)


# --------------------------------------------------------------------------- bounded memory


def _anon_rss_mb() -> float:
    """Anonymous resident memory of this process (Linux): torch's CPU tensors, not the page cache of output files."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no RssAnon in /proc/self/status")


class _RandomImages(torch.utils.data.Dataset):
    def __init__(self, n: int, size: int):
        self.n, self.size = n, size

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.rand(3, self.size, self.size, generator=torch.Generator().manual_seed(i))


class _Meter(torch.nn.Module):
    """Reads this process's anonymous memory on every forward pass."""

    def __init__(self):
        super().__init__()
        self.readings: list[float] = []

    def forward(self, x):
        self.readings.append(_anon_rss_mb())
        return x


def test_extraction_memory_does_not_grow_with_the_number_of_images(tmp_path):
    """Each forward pass makes a 4 MB map (8 images x 32 x 64 x 64 float32); 240 images = 120 MB if kept."""
    torch.manual_seed(0)
    meter = _Meter()
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), meter)
    feats = extract_features(model, _RandomImages(240, 64), layers=["0"], batch_size=8, output_dir=tmp_path,
                             progress=False, channels_last=False)
    assert feats["0-t0"].shape == (240, 32 * 64 * 64)
    r = meter.readings
    assert len(r) == 30
    assert r[-1] - r[3] < 40, f"anonymous memory grew {r[-1] - r[3]:.0f} MB over {len(r) - 4} batches"


def test_record_activations_keeps_only_what_the_transform_returns():
    from ventralkit.models import record_activations

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    x = torch.rand(2, 3, 8, 8)
    seen = []
    with record_activations(model, ["0"], transform=lambda t: seen.append(t.shape) or None) as store:
        model(x)
        model(x)
    assert seen == [(2, 4, 6, 6)] * 2 and store == {"0": []}  # None keeps nothing
    with record_activations(model, ["0"]) as store:
        model(x)
    assert store["0"][0].shape == (2, 4, 6, 6)


@pytest.mark.parametrize("shape", [(4, 8, 9, 9), (4, 8, 1, 1), (4, 40)])
def test_v1_probe_selection_is_a_copy_not_a_view_of_the_map(shape):
    """A view would keep every full activation map of a run alive (the centre of a map reshapes to one)."""
    from ventralkit.analysis.v1_probe.responses import LayerProbe

    out = torch.rand(*shape)
    probe = LayerProbe(layer="x", call_index=0, n_calls=1, out_shape=tuple(shape[1:]), positions=1)
    sel = probe.select(out)
    assert sel.untyped_storage().data_ptr() != out.untyped_storage().data_ptr()
    assert sel.untyped_storage().nbytes() == sel.numel() * 4
    expected = out[:, :, shape[2] // 2, shape[3] // 2] if len(shape) == 4 else out
    assert torch.equal(sel, expected)
