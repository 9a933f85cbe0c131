"""The inference runner (``engine.inference``): the state it sets is given back, its outputs are a plain forward's,
and every analysis runs with the one channels_last rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ventralkit.engine import inference
from ventralkit.engine.inference import InferenceRunner, weights_channels_last

CL = torch.channels_last


class Net(nn.Module):
    """Two convolutions and a linear read-out; notes the memory format of what each forward pass received."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, classes)
        self.seen: list[tuple[bool, bool]] = []  # (input NHWC, weights NHWC) of each pass

    def forward(self, x):
        self.seen.append((x.is_contiguous(memory_format=CL) and not x.is_contiguous(), weights_channels_last(self)))
        x = self.conv2(torch.relu(self.bn(self.conv(x))))
        return self.fc(x.mean((2, 3)))


class RefusesNHWC(Net):
    """A model written for NCHW only: ``view`` of a channels_last activation raises a RuntimeError."""

    def forward(self, x):
        self.seen.append((x.is_contiguous(memory_format=CL) and not x.is_contiguous(), weights_channels_last(self)))
        x = self.conv(x)
        return self.fc(x.view(x.shape[0], -1).reshape(x.shape[0], 8, -1).mean(2))  # C merged with H: NCHW only


def _images(n=6, size=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, 3, (n,), generator=g)


def _state(model):
    return (model.training, weights_channels_last(model), torch.get_num_threads(), next(model.parameters()).device,
            torch.is_inference_mode_enabled())


# --------------------------------------------------------------------------- state in, state out


@pytest.mark.parametrize("fail", [False, True], ids=["finished", "exception inside the loop"])
def test_training_mode_layout_and_threads_are_given_back(fail):
    torch.manual_seed(0)
    model = Net().train()
    x, y = _images()
    before = _state(model)
    threads = 2 if torch.get_num_threads() != 2 else 1
    with pytest.raises(RuntimeError, match="boom") if fail else _nothing():
        with InferenceRunner(model, threads=threads) as runner:
            for step in runner.run(DataLoader(TensorDataset(x, y), batch_size=4)):
                assert not model.training and weights_channels_last(model)
                assert torch.get_num_threads() == threads and torch.is_inference_mode_enabled()
                if fail:
                    raise RuntimeError("boom")
    assert _state(model) == before
    assert not torch.is_inference_mode_enabled()


def test_a_model_already_in_channels_last_or_eval_mode_stays_so():
    model = Net().eval().to(memory_format=CL)
    with InferenceRunner(model, channels_last=False) as runner:  # forcing NCHW inputs leaves the weights alone
        list(runner.run(_images()[0]))
    assert not model.training and weights_channels_last(model)
    model = Net().train()
    with InferenceRunner(model, channels_last=False) as runner:
        list(runner.run(_images()[0]))
    assert model.training and not weights_channels_last(model) and model.seen == [(False, False)]


@pytest.mark.parametrize("fail", [False, True], ids=["finished", "exception inside the block"])
def test_the_model_goes_back_to_its_device(monkeypatch, fail):
    """Without a second device here, the model's moves are observed: to the runner's device on entry, back after
    (the CUDA test below does it for real)."""
    model = Net()
    where = {"device": torch.device("cpu")}
    moves = []
    real_to = nn.Module.to

    def to(self, *args, **kwargs):
        if args and not kwargs:  # a move (memory-format conversions pass memory_format=)
            moves.append(torch.device(args[0]))
            where["device"] = torch.device(args[0])
            return self
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(Net, "to", to)
    monkeypatch.setattr(inference, "model_device", lambda m: where["device"])
    with pytest.raises(KeyError) if fail else _nothing():
        with InferenceRunner(model, torch.device("meta"), channels_last=False):
            assert where["device"] == torch.device("meta")
            if fail:
                raise KeyError("boom")
    assert moves == [torch.device("meta"), torch.device("cpu")]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_model_goes_back_from_cuda_with_its_outputs_on_the_host_equal():
    model = Net().train()
    x, y = _images()
    benchmark = torch.backends.cudnn.benchmark
    with InferenceRunner(model, "cuda", channels_last=False) as runner:
        out = torch.cat([s.output.cpu() for s in runner.run(x)])
        assert next(model.parameters()).is_cuda
    assert next(model.parameters()).device.type == "cpu" and model.training
    assert torch.backends.cudnn.benchmark == benchmark
    with torch.no_grad():
        torch.testing.assert_close(out, model.eval()(x), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- outputs


@pytest.mark.parametrize("channels_last", [False, None], ids=["nchw", "the rule"])
def test_outputs_are_a_plain_forward_pass_of_each_chunk(channels_last):
    torch.manual_seed(0)
    model = Net()
    x, y = _images(10)
    with InferenceRunner(model, channels_last=channels_last) as runner:
        steps = [(s.output, s.take(1), s.rows, s.n) for s in runner.run(DataLoader(TensorDataset(x, y), batch_size=4),
                                                                        forward_batch=3)]
    assert [(r.start, r.stop, n) for _, _, r, n in steps] == [(0, 3, 3), (3, 4, 1)] * 2 + [(0, 2, 2)]
    plain = Net()
    plain.load_state_dict(model.state_dict())
    plain.eval()
    if channels_last is None:
        plain.to(memory_format=CL)
    starts = [0, 3, 4, 7, 8]
    with torch.no_grad():
        for (out, target, _, n), a in zip(steps, starts):
            chunk = x[a:a + n]
            want = plain(chunk.contiguous(memory_format=CL) if channels_last is None else chunk)
            assert torch.equal(out, want)
            assert torch.equal(target, y[a:a + n])


def test_a_tensor_is_one_batch_and_uint8_batches_are_normalised_as_totensor_normalize():
    from torchvision import transforms as T

    torch.manual_seed(0)
    model = Net()
    u8 = torch.randint(0, 256, (2, 12, 12, 3), dtype=torch.uint8)  # H x W x 3, as the decoders give them
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    with InferenceRunner(model, channels_last=False, normalize=(mean, std)) as runner:
        (step,) = runner.run(u8)
    ref = torch.stack([T.Normalize(mean, std)(T.ToTensor()(img.numpy())) for img in u8])
    with torch.no_grad():
        assert torch.equal(step.output, model.eval()(ref))


def test_recorded_activations_are_those_of_the_current_pass_and_a_pass_can_stop_early():
    torch.manual_seed(0)
    model = Net()
    x = _images(4)[0]
    with InferenceRunner(model, channels_last=False) as runner, runner.record(["conv"]) as store:
        outs = [(s.output, [t.clone() for t in store["conv"]]) for s in runner.run(x, forward_batch=2)]
    with torch.no_grad():
        for k, (out, (act,)) in enumerate(outs):
            assert torch.equal(act, model.conv(x[2 * k:2 * k + 2]))
    with InferenceRunner(model, channels_last=False) as runner, runner.stop_after("conv", 1):
        assert [s.output for s in runner.run(x)] == [None]  # conv2 and the read-out never ran
    assert not model.conv._forward_hooks  # every hook is removed


def test_unreadable_images_are_collected_and_an_all_unreadable_batch_gives_no_pass():
    from ventralkit.data.folders import SkippedBatch, Unreadable

    model = Net()
    x, y = _images(2)
    bad = [Unreadable(path="a.jpg", index=0, reason="truncated")]
    batches = [SkippedBatch([torch.empty(0), torch.empty(0, dtype=torch.long)], bad), [x, y]]
    with InferenceRunner(model) as runner:
        assert [s.n for s in runner.run(batches)] == [2]
    assert runner.skipped == bad and len(model.seen) == 1


# --------------------------------------------------------------------------- the one channels_last rule


def test_the_rule_is_nhwc_and_nchw_for_a_model_that_refuses_it():
    torch.manual_seed(0)
    x = _images(4)[0]
    model = Net()
    with InferenceRunner(model) as runner:
        list(runner.run(x))
    assert model.seen == [(True, True)] and not weights_channels_last(model)

    model = RefusesNHWC()
    with pytest.raises(RuntimeError):  # forced, a refusal is an error
        with InferenceRunner(model, channels_last=True) as runner:
            list(runner.run(x))
    assert not weights_channels_last(model)
    model.seen.clear()
    with InferenceRunner(model) as runner:  # the rule: NHWC, and NCHW from the pass it was refused on
        outs = [s.output for s in runner.run(x, forward_batch=2)]
    assert model.seen == [(True, True), (False, False), (False, False)] and not runner.channels_last
    with torch.no_grad():
        assert torch.equal(torch.cat(outs), model.eval()(x))
    assert not weights_channels_last(model)


class _Images(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def test_every_analysis_runs_with_the_one_rule(monkeypatch, tmp_path):
    """evaluate, features, robustness, the V1 probe and the feedback study's read-out all leave the layout to the
    runner by default, and so all run NHWC on the CPU."""
    from PIL import Image

    import ventralkit
    from ventralkit.analysis.features import extract_features
    from ventralkit.analysis.v1_probe.responses import prepare_layer, record_units
    from ventralkit.analysis.v1_probe.stimuli import StimulusConfig, benchmark_sets
    from ventralkit.engine.evaluate import evaluate

    chosen = []
    real_init = InferenceRunner.__init__

    def spy(self, *args, **kwargs):
        chosen.append(kwargs.get("channels_last"))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(InferenceRunner, "__init__", spy)
    torch.manual_seed(0)
    x, y = _images(4, size=16)
    model = Net()
    evaluate(model, DataLoader(TensorDataset(x, y), batch_size=4), progress=False)
    extract_features(model, _Images(x, y), layers=["conv"], batch_size=4, workers=0, progress=False)
    probe = prepare_layer(model, "conv2", 16, (0.5,) * 3, (0.25,) * 3)
    record_units(model, probe, benchmark_sets(StimulusConfig.quick())["size"], 16, 8.0, (0.5,) * 3, (0.25,) * 3,
                 batch_size=64)
    assert chosen[:2] == [None, None] and set(chosen[2:]) == {None, True}  # the probe passes on what it found
    assert probe.channels_last and all(seen == (True, True) for seen in model.seen), model.seen

    root = tmp_path / "c" / "fog" / "1"
    for k, cls in enumerate(("a", "b")):
        (root / cls).mkdir(parents=True)
        Image.fromarray(np.full((32, 32, 3), 60 * k, np.uint8)).save(root / cls / "0.png")
    chosen.clear()
    z = ventralkit.create_model("cornet_z", num_classes=2)
    ventralkit.evaluate_robustness(z, tmp_path / "c", workers=0, image_size=32, progress=False)
    assert chosen == [None]


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
