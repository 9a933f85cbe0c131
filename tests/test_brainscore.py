"""The Brain-Score adapter: region map from the registry's commitments; construction when installed.

brainscore-vision is an optional extra (it downgrades numpy), so CI runs the first four tests and
skips the construction test; with the extra installed the last test builds a ModelCommitment and
checks the extracted activations against ventralkit's own recording (no Brain-Score data needed).
`make test-brainscore` runs this file in its own environment (.venv-brainscore) with
VENTRALKIT_REQUIRE_BRAINSCORE=1, under which the construction test runs (and fails) rather than skips
when brainscore-vision cannot be imported.
"""

import importlib.util
import os

import numpy as np
import pytest
import torch

from ventralkit import create_model, record_activations
from ventralkit.errors import ConfigError
from ventralkit.integrations.brainscore import brainscore_model, region_layer_map, split_layer

HAVE_BRAINSCORE = importlib.util.find_spec("brainscore_vision") is not None
REQUIRED = os.environ.get("VENTRALKIT_REQUIRE_BRAINSCORE") == "1"  # set by `make test-brainscore`


def test_region_map_is_the_registry_commitment_last_step_by_default():
    s = create_model("cornet_s")
    # CORnet-S runs V1 once, V2 twice, V4 four times, IT twice (docs/reference/cornet.md section 1.0, hook counts)
    assert region_layer_map(s) == {"V1": "V1.output-t0", "V2": "V2.output-t1", "V4": "V4.output-t3",
                                   "IT": "IT.output-t1"}
    assert region_layer_map(s, {"V4": 0})["V4"] == "V4.output-t0"
    assert region_layer_map(create_model("v1_resnet50", num_classes=10)) == {"V1": "layer1-t0"}


def test_bad_time_steps_fail_in_one_line():
    s = create_model("cornet_s")
    with pytest.raises(ConfigError, match=r"V4.output runs at steps 0..3"):
        region_layer_map(s, {"V4": 4})
    with pytest.raises(ConfigError, match="commits only"):
        region_layer_map(s, {"MT": 0})


def test_split_layer():
    assert split_layer("V4.output-t3") == ("V4.output", 3)
    assert split_layer("layer1") == ("layer1", None)
    assert split_layer("features.conv-t2-t10") == ("features.conv-t2", 10)


@pytest.mark.skipif(HAVE_BRAINSCORE or REQUIRED, reason="brainscore-vision is installed (or required)")
def test_missing_extra_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"pip install 'ventralkit\[brainscore\]'"):
        brainscore_model("cornet_z")


@pytest.mark.skipif(not (HAVE_BRAINSCORE or REQUIRED), reason="optional extra brainscore-vision not installed")
def test_construction_and_time_step_activations(tmp_path):
    from PIL import Image

    torch.manual_seed(0)
    model = create_model("cornet_rt", times=3)
    bm = brainscore_model(model, visual_degrees=8)
    assert bm.visual_degrees() == 8
    # CORnet-RT with times=3 runs every area at 3 steps; each region commits to its last
    assert dict(bm.layer_model.region_layer_map) == {"V1": "V1.output-t2", "V2": "V2.output-t2",
                                                     "V4": "V4.output-t2", "IT": "IT.output-t2"}
    paths = []
    for i in range(2):
        p = tmp_path / f"{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    wrapper = bm.activations_model
    assert wrapper.image_size == 224
    images = wrapper._extractor.preprocess(paths)
    got = wrapper.get_activations(images, ["V4.output-t1", "V4.output-t2"])
    with record_activations(model, ["V4.output"]) as acts, torch.no_grad():
        model(torch.as_tensor(images))
    for k in (1, 2):
        np.testing.assert_allclose(got[f"V4.output-t{k}"], acts["V4.output"][k].numpy(), rtol=1e-5, atol=1e-6)
