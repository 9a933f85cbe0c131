"""CORnet Z/R/RT/S/S100: parameter counts, state-dict keys, shapes, time steps, checkpoints.

Pinned numbers come from docs/reference/cornet.md (section 1.0 summary table, key tables in 1.1-1.4,
hook call counts in 1.2-1.4), which were computed by running the original code.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import ventralkit as vk
from ventralkit.errors import CheckpointError, ModelNotFoundError
from ventralkit.models.interface import count_calls, record_activations, time_step_names

AREAS = ["V1.output", "V2.output", "V4.output", "IT.output"]

# docs/reference/cornet.md section 1.0
PARAMS = {"cornet_z": 2_071_656, "cornet_r": 5_208_936, "cornet_rt": 5_208_936, "cornet_s": 53_416_616,
          "cornet_s100": 52_955_684}
N_KEYS = {"cornet_z": 10, "cornet_r": 30, "cornet_rt": 30, "cornet_s": 164, "cornet_s100": 165}

# docs/reference/cornet.md section 1.1 (Z) and 1.2 (R/RT), in state-dict order
Z_KEYS = [f"{a}.conv.{p}" for a in ("V1", "V2", "V4", "IT") for p in ("weight", "bias")] + [
    "decoder.linear.weight", "decoder.linear.bias"]
R_KEYS = [f"{a}.{k}" for a in ("V1", "V2", "V4", "IT") for k in (
    "conv_input.weight", "conv_input.bias", "norm_input.weight", "norm_input.bias", "conv1.weight",
    "norm1.weight", "norm1.bias")] + ["decoder.linear.weight", "decoder.linear.bias"]
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def s_keys(decoder="decoder"):
    """Spec section 1.3: V1 stem, then per area conv_input, skip, norm_skip, conv1-3, per-step norms interleaved."""
    keys = ["V1.conv1.weight", *(f"V1.norm1.{b}" for b in BN), "V1.conv2.weight", *(f"V1.norm2.{b}" for b in BN)]
    for area, times in (("V2", 2), ("V4", 4), ("IT", 2)):
        keys += [f"{area}.conv_input.weight", f"{area}.skip.weight", *(f"{area}.norm_skip.{b}" for b in BN),
                 f"{area}.conv1.weight", f"{area}.conv2.weight", f"{area}.conv3.weight"]
        for t in range(times):
            for n in ("norm1", "norm2", "norm3"):
                keys += [f"{area}.{n}_{t}.{b}" for b in BN]
    return keys + [f"{decoder}.linear.weight", f"{decoder}.linear.bias"]


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {name: vk.create_model(name).eval() for name in PARAMS}


def test_registry_lists_the_five_cornets():
    assert vk.list_models("cornet_*") == sorted(PARAMS)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_counts_and_key_counts(models, name):
    assert vk.count_parameters(models[name]) == PARAMS[name]
    assert len(models[name].state_dict()) == N_KEYS[name]


def test_state_dict_keys_match_the_original(models):
    assert list(models["cornet_z"].state_dict()) == Z_KEYS
    assert list(models["cornet_r"].state_dict()) == R_KEYS
    assert list(models["cornet_rt"].state_dict()) == R_KEYS
    assert list(models["cornet_s"].state_dict()) == s_keys()
    assert list(models["cornet_s100"].state_dict()) == s_keys("Decoder") + ["V4_to_V1.weight"]
    sd = models["cornet_s"].state_dict()
    assert sd["IT.conv2.weight"].shape == (2048, 2048, 3, 3) and sd["V4.norm1_3.weight"].shape == (1024,)
    assert models["cornet_s100"].state_dict()["V4_to_V1.weight"].shape == (3, 256, 1, 1)


@pytest.mark.parametrize("name,size", [("cornet_z", 224), ("cornet_z", 64), ("cornet_r", 224), ("cornet_r", 96),
                                       ("cornet_rt", 96), ("cornet_s", 224), ("cornet_s", 64),
                                       ("cornet_s100", 96)])
def test_output_shapes(models, name, size):
    with torch.no_grad():
        out = models[name](torch.randn(2, 3, size, size))
    assert out.shape == (2, 100 if name == "cornet_s100" else 1000)
    assert torch.isfinite(out).all()


def test_area_shapes_at_224(models):
    """docs/reference/cornet.md section 1.3: V1 64x56x56, V2 128x28x28, V4 256x14x14, IT 512x7x7."""
    expect = {"V1.output": (64, 56, 56), "V2.output": (128, 28, 28), "V4.output": (256, 14, 14), "IT.output": (512, 7, 7)}
    for name in ("cornet_z", "cornet_s", "cornet_rt"):
        with torch.no_grad(), record_activations(models[name], AREAS) as acts:
            models[name](torch.randn(1, 3, 224, 224))
        for area, shape in expect.items():
            assert tuple(acts[area][-1].shape[1:]) == shape, (name, area)


def test_time_steps_per_area(models):
    x = torch.randn(1, 3, 64, 64)
    assert count_calls(models["cornet_s"], AREAS, x) == {"V1.output": 1, "V2.output": 2, "V4.output": 4, "IT.output": 2}
    assert count_calls(models["cornet_z"], AREAS, x) == dict.fromkeys(AREAS, 1)
    assert count_calls(models["cornet_rt"], AREAS, x) == dict.fromkeys(AREAS, 5)
    assert models["cornet_s"].info.time_steps == {"V1": 1, "V2": 2, "V4": 4, "IT": 2}
    with torch.no_grad(), record_activations(models["cornet_s"], ["V4.output"]) as acts:
        models["cornet_s"](x)
    assert list(time_step_names(acts)) == [f"V4.output-t{k}" for k in range(4)]


def test_s100_hook_counts_per_pass():
    """docs/reference/cornet.md section 1.4: V1 fires outer_times, V2 2x, V4 4x per pass, IT 2, V4_to_V1 outer_times-1."""
    m = vk.create_model("cornet_s100", outer_times=3).eval()
    calls = count_calls(m, AREAS + ["V4_to_V1", "Decoder.output"], torch.randn(1, 3, 224, 224))
    assert calls == {"V1.output": 3, "V2.output": 6, "V4.output": 12, "IT.output": 2, "V4_to_V1": 2,
                     "Decoder.output": 1}
    assert m.info.time_steps == {"V1": 3, "V2": 6, "V4": 12, "IT": 2}
    from ventralkit.models.cornet.s100 import pass_and_step

    assert pass_and_step(m, "V4", 9) == (2, 1)


def test_s100_feedback_map_sizes():
    """docs/reference/cornet.md section 1.4 table: with outer_times=4 the V4 maps are 14, 16, 18, 20 and IT 10x10."""
    m = vk.create_model("cornet_s100", outer_times=4).eval()
    with torch.no_grad(), record_activations(m, ["V4.output", "IT.output"]) as acts:
        m(torch.randn(1, 3, 224, 224))
    assert [t.shape[-1] for t in acts["V4.output"][3::4]] == [14, 16, 18, 20]
    assert acts["IT.output"][-1].shape[-1] == 10


def test_s100_with_one_pass_equals_cornet_s(models):
    s100 = vk.create_model("cornet_s100", num_classes=1000, outer_times=1).eval()
    state = {k.replace("decoder.", "Decoder."): v for k, v in models["cornet_s"].state_dict().items()}
    state["V4_to_V1.weight"] = torch.randn(3, 256, 1, 1)
    s100.load_state_dict(state)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(s100(x), models["cornet_s"](x))


def _reference_s100_forward(model, x, outer_times):
    """A literal transcription of the original CORnet-100 forward (docs/reference/cornet.md 1.4), strides mutated in place."""
    def block(b, inp, flag):
        h = b.conv_input(inp)
        for t in range(b.times):
            if t == 0 and not flag:
                skip = b.norm_skip(F.conv2d(h, b.skip.weight, stride=2))
                stride = 2
            else:
                skip, stride = h, 1
            h = F.relu(getattr(b, f"norm1_{t}")(b.conv1(h)))
            h = F.relu(getattr(b, f"norm2_{t}")(F.conv2d(h, b.conv2.weight, stride=stride, padding=1)))
            h = getattr(b, f"norm3_{t}")(b.conv3(h))
            h = F.relu(h + skip)
        return h

    for t in range(outer_times):
        s = 2 if t == 0 else 1
        if x.shape[1] > 3:
            x = model.V4_to_V1(x)
        v1 = model.V1
        x = F.relu(v1.norm1(F.conv2d(x, v1.conv1.weight, stride=s, padding=3)))
        x = F.max_pool2d(x, 3, s, 1)
        x = F.relu(v1.norm2(v1.conv2(x)))
        x = block(model.V4, block(model.V2, x, t > 0), t > 0)
    x = block(model.IT, x, False)
    return model.Decoder.linear(F.adaptive_avg_pool2d(x, 1).flatten(1))


@pytest.mark.parametrize("outer", [1, 2, 3])
def test_s100_matches_a_literal_transcription_of_the_original(outer):
    torch.manual_seed(outer)
    m = vk.create_model("cornet_s100", outer_times=outer)
    with torch.no_grad():  # non-trivial BN statistics
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
    m.eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(m(x), _reference_s100_forward(m, x, outer), rtol=1e-5, atol=1e-5)
    assert m.V1.conv1.stride == (2, 2) and m.V2.conv2.stride == (2, 2)  # no module state mutated


def test_s100_additive_feedback_mode():
    m = vk.create_model("cornet_s100", outer_times=2, feedback="additive").eval()
    keys = m.state_dict()
    assert "V2.norm1_0_p1.weight" in keys and "V1.norm1_p1.weight" in keys
    with torch.no_grad(), record_activations(m, ["V4.output"]) as acts:
        out = m(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 100)
    assert acts["V4.output"][3].shape == acts["V4.output"][7].shape  # image-sized passes, same strides
    with pytest.raises(ValueError):
        vk.create_model("cornet_s100", feedback="concat")


def test_r_and_rt_unroll_time_differently(models):
    """RT moves information one area per step (IT sees the image from t=3); R within one step (docs/reference/cornet.md 1.2)."""
    rt, r = models["cornet_rt"], models["cornet_r"]
    r.load_state_dict(rt.state_dict())
    a, b = torch.randn(1, 3, 96, 96), torch.randn(1, 3, 96, 96)

    def it_steps(model, x):
        with torch.no_grad(), record_activations(model, ["IT.output"]) as acts:
            model(x)
        return acts["IT.output"]

    rt_a, rt_b = it_steps(rt, a), it_steps(rt, b)
    assert [torch.equal(p, q) for p, q in zip(rt_a, rt_b)] == [True, True, True, False, False]
    r_a, r_b = it_steps(r, a), it_steps(r, b)
    assert [torch.equal(p, q) for p, q in zip(r_a, r_b)] == [True, False, False, False, False]


def test_original_checkpoint_with_module_prefix_round_trip(models, tmp_path):
    src = models["cornet_s"]
    path = tmp_path / "cornet_s-1d3f7974.pth"
    # the model-zoo layout: {'state_dict': ...} with DataParallel's 'module.' prefix (docs/reference/cornet.md section 2)
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}, "epoch": 43}, path)
    loaded = vk.create_model("cornet_s", checkpoint=str(path)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), src(x))
    # plain state dict, without num_batches_tracked (files saved before PyTorch 0.4.1)
    plain = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(plain, tmp_path / "plain.pt")
    again = vk.create_model("cornet_s", checkpoint=str(tmp_path / "plain.pt")).eval()
    with torch.no_grad():
        assert torch.equal(again(x), src(x))


def test_pretrained_from_weights_folder(models, tmp_path, monkeypatch):
    monkeypatch.setenv("VENTRALKIT_WEIGHTS", str(tmp_path))
    with pytest.raises(CheckpointError, match=r"cornet_z-5c427c9c\.pth.*s3\.amazonaws\.com/cornet-models"):
        vk.create_model("cornet_z", pretrained=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in models["cornet_z"].state_dict().items()}},
               tmp_path / "cornet_z-5c427c9c.pth")
    m = vk.create_model("cornet_z", pretrained=True)
    assert torch.equal(m.V1.conv.weight, models["cornet_z"].V1.conv.weight)


def test_checkpoint_of_another_architecture_fails_in_one_line(models, tmp_path):
    torch.save({"state_dict": models["cornet_z"].state_dict()}, tmp_path / "z.pth")
    with pytest.raises(CheckpointError) as err:
        vk.create_model("cornet_s", checkpoint=str(tmp_path / "z.pth"))
    msg = str(err.value)
    assert "\n" not in msg and "cornet_s" in msg and "V1.conv1.weight" in msg and "V1.conv.weight" in msg


def test_class_count_mismatch_names_the_flag(models, tmp_path):
    torch.save(models["cornet_z"].state_dict(), tmp_path / "z.pth")
    with pytest.raises(CheckpointError, match="num_classes=1000"):
        vk.create_model("cornet_z", num_classes=10, checkpoint=str(tmp_path / "z.pth"))


def test_truncated_checkpoint_is_one_clear_line(models, tmp_path):
    path = tmp_path / "bad.pth"
    torch.save(models["cornet_z"].state_dict(), path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        vk.create_model("cornet_z", checkpoint=str(path))


def test_unknown_model_lists_close_matches():
    with pytest.raises(ModelNotFoundError, match="cornet_s"):
        vk.create_model("cornet_ss")


def test_uniform_interface(models):
    x = torch.randn(2, 3, 64, 64)
    for name in ("cornet_z", "cornet_rt", "cornet_s", "cornet_s100"):
        m = models[name]
        with torch.no_grad():
            feats = m.forward_features(x)
            assert feats.shape[:2] == (2, 512)
            assert m.forward_head(feats, pre_logits=True).shape == (2, 512)
            torch.testing.assert_close(m.forward_head(feats), m(x))
    z = vk.create_model("cornet_z")
    z.reset_classifier(7)
    assert z(x).shape == (2, 7) and z.info.num_classes == 7
    z.reset_classifier(0)
    assert z(x).shape == (2, 512)


def _uniform(w: torch.Tensor, bound: float, what: str) -> None:
    """Drawn from U(-bound, bound): nothing beyond the bound, the range filled (the largest of n draws
    falls short by 20/n of it with probability e^-20), mean 0 and sd bound/sqrt(3) within 5 standard errors."""
    x = w.detach().flatten().float()
    n = x.numel()
    assert x.abs().max() <= bound, what
    assert x.abs().max() >= bound * (1 - 20 / n), what
    sd, mean = torch.std_mean(x)
    assert abs(mean) < 5 * bound / (3 * n) ** 0.5, what
    assert abs(sd / (bound / 3 ** 0.5) - 1) < 5 * (0.8 / (4 * n)) ** 0.5, what  # kurtosis of a uniform: 1.8


def _normal(w: torch.Tensor, sd_want: float, what: str) -> None:
    """Drawn from N(0, sd_want): mean, sd and the share beyond 2 sd (4.55 %; a uniform of that sd has
    none) within 5 standard errors."""
    x = w.detach().flatten().float()
    n = x.numel()
    sd, mean = torch.std_mean(x)
    assert abs(mean) < 5 * sd_want / n ** 0.5, what
    assert abs(sd / sd_want - 1) < 5 * (2 / (4 * n)) ** 0.5, what
    tail = (x.abs() > 2 * sd_want).float().mean().item()
    assert abs(tail - 0.0455) < 5 * (0.0455 * 0.9545 / n) ** 0.5, what


def _pytorch_default(m: nn.Module, what: str) -> None:
    """``reset_parameters`` of Conv2d / Linear: weight and bias ~ U(+-1/sqrt(fan_in))."""
    bound = m.weight[0].numel() ** -0.5
    _uniform(m.weight, bound, what)
    if m.bias is not None:
        _uniform(m.bias, bound, what)


@pytest.mark.parametrize("name, kwargs", [("cornet_z", {}), ("cornet_r", {}), ("cornet_rt", {}), ("cornet_s", {}),
                                          ("cornet_s100", {"outer_times": 2, "feedback": "gated"})])
def test_init_matches_the_original_scheme(name, kwargs):
    """Every layer, by the distribution of its values (docs/reference/cornet.md sections 1.1-1.4): Z: conv and
    linear xavier-uniform, zero biases; R and RT: PyTorch's default init, GroupNorm 1/0; S and S100 (V4_to_V1
    included): every conv ~ N(0, sqrt(2/(k*k*out))) without bias, BatchNorm 1/0, and the Linear left at
    PyTorch's default (the original forgot it; kept so training from scratch matches)."""
    torch.manual_seed(0)
    model = vk.create_model(name, **kwargs)
    kinds = {}
    for what, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            kinds[type(m)] = kinds.get(type(m), 0) + 1
            if name == "cornet_z":
                fan_in, fan_out = m.weight[0].numel(), m.weight[:, 0].numel()
                _uniform(m.weight, (6 / (fan_in + fan_out)) ** 0.5, what)
                assert not m.bias.any(), what
            elif name in ("cornet_r", "cornet_rt") or isinstance(m, nn.Linear):
                _pytorch_default(m, what)
            else:
                _normal(m.weight, (2 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)) ** 0.5, what)
                assert m.bias is None, what
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
            kinds[type(m)] = kinds.get(type(m), 0) + 1
            assert torch.all(m.weight == 1) and not m.bias.any(), what
    assert kinds[nn.Conv2d] >= 4 and kinds[nn.Linear] == 1
    assert (nn.GroupNorm if name in ("cornet_r", "cornet_rt") else nn.BatchNorm2d) in kinds or name == "cornet_z"
    if name == "cornet_s100":
        assert not model.V4_to_V1_gain.any()  # the gate starts closed
