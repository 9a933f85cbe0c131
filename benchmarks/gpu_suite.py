"""The GPU check in one command: the CUDA tests, then speed ratios measured in the same run.

    make gpu-check                                   # = python benchmarks/gpu_suite.py --device cuda
    python benchmarks/gpu_suite.py --device cpu --quick --results /tmp/gpu_suite.md   # CI: under a minute

Measures (each a ratio between loops run here, in this process, on this device):
  * train step images/s: a plain fp32 loop (CORnet ``run.py``'s step: forward, loss and top-1/top-5 read
    on the host with ``.item()`` every step, zero_grad, backward, SGD) vs the ventralkit engine in fp32 vs
    the engine with bf16 autocast + channels_last + torch.compile; the input batch is already on the
    device for all three, so the step is measured, not the data pipeline. Model FLOP utilisation: FLOPs
    of one forward + backward (``torch.utils.flop_counter.FlopCounterMode``) x images/s over the
    device's dense bf16 peak (``PEAK_BF16_TFLOPS``);
  * feature extraction images/s: ``extract_features`` vs CORnet ``run.py test``'s one-image loop;
  * data pipeline images/s: JPEG decode + RandomResizedCrop + flip + normalise with PIL on one CPU core,
    and the ``--data_backend gpu`` path (worker side on one core; decode + crop on the device); and
    CORnet-Z trained by the engine from a JPEG folder with each backend, as a fraction of the same
    engine fed from device memory (the share of the step the model, not the input, sets);
  * peak device memory of each (CUDA only).
The section is appended to benchmarks/RESULTS.md (or ``--results FILE``) with the device's name.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import Dataset

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("VENTRALKIT_NO_PROGRESS", "1")

from _common import RESULTS, machine_line  # noqa: E402
from bench_features import make_jpegs, original_loop, ventralkit_run  # noqa: E402

#: dense (no sparsity) bf16 tensor-core peak, TFLOP/s: NVIDIA's datasheets give the with-sparsity figure
#: (H100 SXM / H200 SXM 1,979; H100 PCIe 1,513; H100 NVL / H200 NVL 1,671; A100 624), halved here.
#: Sources: NVIDIA H100 Tensor Core GPU datasheet, NVIDIA H200 Tensor Core GPU datasheet, NVIDIA A100
#: Tensor Core GPU datasheet. Matched against ``torch.cuda.get_device_name`` in this order.
PEAK_BF16_TFLOPS = [("H200 NVL", 835.5), ("H200", 989.5), ("H100 PCIe", 756.0), ("H100 NVL", 835.5),
                    ("H100", 989.5), ("A100", 312.0)]

#: label -> (model, model kwargs, image size, batch): the models of issue 15 at their training sizes
#: (the V1-ResNets run only at their 64 px input: their polar-transform layers are built for 32 x 32 maps)
TRAIN_MODELS = {"cornet_z": ("cornet_z", {}, 224, 256), "cornet_s": ("cornet_s", {}, 224, 256),
                "cornet_s100": ("cornet_s100", {"outer_times": 2}, 224, 128),
                "v1_resnet50_composite_a": ("v1_resnet50_composite_a", {}, 64, 256),
                "phinet": ("phinet", {}, 160, 256)}
#: --quick: the cheapest models that still run every code path (CORnet-S costs seconds a step on a CPU)
QUICK_MODELS = ["cornet_z", "phinet"]


def peak_bf16(device: torch.device) -> tuple[float | None, str]:
    if device.type != "cuda":
        return None, "unknown (not a CUDA device)"
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in name.lower():
            return tflops * 1e12, f"{name}: {tflops:g} TFLOP/s dense bf16 (NVIDIA datasheet, sparse figure halved)"
    return None, f"unknown for {name} (not in PEAK_BF16_TFLOPS)"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_mem(device: torch.device) -> str:
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f}" if device.type == "cuda" else "n/a"


# ---- train step ---------------------------------------------------------------------------------------
def conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    """A convolution's backward: the input gradient and the weight gradient each cost what its forward costs.

    torch's own formula (torch 2.14) leaves out ``groups`` in the weight gradient and counts a depthwise
    convolution's C times over: PhiNet's forward + backward came out at 9x its forward, not 3x."""
    from torch.utils.flop_counter import conv_flop_count

    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed=transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


def train_flops_per_image(model_name: str, kwargs: dict, size: int, device: torch.device) -> float:
    """Forward + backward FLOPs of one image (counted on a 2-image batch)."""
    from torch.utils.flop_counter import FlopCounterMode

    import ventralkit as vk

    model = vk.create_model(model_name, **kwargs).to(device).train()
    x = torch.randn(2, 3, size, size, device=device)
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flops}) \
            as counter:
        out = model(x)
        out = out["logits"] if isinstance(out, dict) else out
        out.float().sum().backward()
    return counter.get_total_flops() / 2


def plain_step_loop(model_name: str, kwargs: dict, size: int, batch: int, steps: int, warm: int,
                    device: torch.device) -> float:
    """CORnet ``run.py``'s train step: loss and accuracy read on the host every step."""
    import ventralkit as vk

    model = vk.create_model(model_name, **kwargs).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    crit = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=g).to(device)
    y = torch.randint(0, model.info.num_classes, (batch,), generator=g).to(device)
    t0 = 0.0
    for i in range(warm + steps):
        if i == warm:
            sync(device)
            t0 = time.perf_counter()
        out = model(x)
        loss = crit(out, y)
        top5 = out.topk(5, 1).indices.eq(y[:, None])
        _ = loss.item(), top5[:, :1].sum().item(), top5.sum().item()  # the per-step host sync
        opt.zero_grad()
        loss.backward()
        opt.step()
    sync(device)
    return steps * batch / (time.perf_counter() - t0)


class _Ready:
    """A batch already on the device: the engine's ``images.to(device)`` returns it as it is."""

    def __init__(self, x):
        self.x = x

    def pin_memory(self):
        return self

    def to(self, device, non_blocking=False):
        return self.x


class ResidentData(Dataset):
    """``n`` samples whose batches are one fixed tensor on the device (no decoding, no copies)."""

    def __init__(self, n: int, batch: int, size: int, classes: int, device: torch.device):
        g = torch.Generator().manual_seed(0)
        self.n, self.classes = n, [str(i) for i in range(classes)]
        self.x = torch.randn(batch, 3, size, size, generator=g).to(device)
        self.y = torch.randint(0, classes, (batch,), generator=g)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i

    def collate(self, idx):
        return _Ready(self.x[: len(idx)]), self.y[: len(idx)]


@contextlib.contextmanager
def engine_timer(device: torch.device, warm: int, steps: int):
    """Times steps ``warm .. warm+steps`` of the engine (its two meter updates per step mark them)."""
    from ventralkit.engine import train as engine_train

    t, orig = {}, engine_train.Meters.add

    def timed_add(self, *a, **k):
        orig(self, *a, **k)
        t["n"] = t.get("n", 0) + 1
        if t["n"] in (2 * warm, 2 * (warm + steps)):
            sync(device)
            t["t0" if t["n"] == 2 * warm else "t1"] = time.perf_counter()

    engine_train.Meters.add = timed_add
    try:
        yield t
    finally:
        engine_train.Meters.add = orig


def engine_run(model_name: str, kwargs: dict, batch: int, steps: int, warm: int, device: torch.device,
               splits=None, size: int | None = None, **options) -> float:
    """Images/s of ``ventralkit.engine.train.train`` over ``steps`` steps after ``warm`` warm-up steps."""
    from ventralkit.engine import train as engine_train

    real_load = engine_train.load_datasets
    if splits is not None:
        engine_train.load_datasets = lambda *a, **k: splits
    try:
        with tempfile.TemporaryDirectory() as tmp, engine_timer(device, warm, steps) as t, \
                contextlib.redirect_stdout(io.StringIO()):
            opts = dict(model=model_name, model_kwargs=kwargs, epochs=1, batch_size=batch, lr=0.01,
                        max_steps_per_epoch=warm + steps, output_path=tmp, progress=False, log_every=10_000,
                        val_every=100, keep_epochs=0, device=str(device), image_size=size)
            if splits is not None:
                opts.update(dataset="folder", data_path="resident", workers=0)
            engine_train.train(**{**opts, **options})
    finally:
        engine_train.load_datasets = real_load
    return steps * batch / (t["t1"] - t["t0"])


def resident_splits(model_name: str, batch: int, steps: int, warm: int, size: int, device: torch.device):
    from ventralkit.data import DataSplits
    from ventralkit.models.registry import model_info

    classes = model_info(model_name).num_classes
    # no validation images: the engine then skips evaluating (and compiling the model in eval mode)
    return DataSplits(ResidentData(batch * (warm + steps), batch, size, classes, device),
                      ResidentData(0, batch, size, classes, device), [str(i) for i in range(classes)])


def train_section(args, device, out) -> None:
    peak, peak_note = peak_bf16(device)
    cuda = device.type == "cuda"
    # on the CPU: no compile with --quick (minutes of C++ builds), and no channels_last with bf16: PhiNet's
    # gradients were at times NaN with both on torch 2.14's CPU kernels (docs/gpu.md, "Noted while preparing")
    fast = dict(amp="bf16", channels_last=cuda, compile=cuda or not args.quick)
    fast_label = " + ".join(k if k != "amp" else "bf16" for k, v in fast.items() if v)
    out.append(f"### Train step images/s ({args.steps} steps after {args.warm} warm-up, input batch on the device)")
    out.append("")
    out.append(f"MFU = FLOPs/image (forward + backward, FlopCounterMode) x images/s / bf16 peak: {peak_note}."
               + ("" if cuda else " On the CPU the fast loop leaves out channels_last (bf16 + channels_last gave "
                                  "NaN gradients at times on the CPU) and, with --quick, compile."))
    out.append("")
    out.append(f"| model | px | batch | plain fp32 (run.py step) | ventralkit fp32 | ventralkit {fast_label} | "
               "fp32 ratio | fast ratio | GFLOP/img | MFU plain / fp32 / fast | peak GiB plain / fp32 / fast |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for label in args.models:
        name, kwargs, size, batch = TRAIN_MODELS[label]
        if over_budget(args):
            out.append(f"| {label} | skipped: past --budget_minutes {args.budget_minutes:g} | | | | | | | | | |")
            continue
        label += " (outer_times 2)" if kwargs.get("outer_times") else ""
        if args.quick:
            size, batch = max(args.quick_size, 64 if name.startswith("v1_") else 0), args.quick_batch
        try:
            flops = train_flops_per_image(name, kwargs, size, device)
            splits = resident_splits(name, batch, args.steps, args.warm, size, device)
            ips, mem = [], []
            runs = [lambda: plain_step_loop(name, kwargs, size, batch, args.steps, args.warm, device),
                    lambda: engine_run(name, kwargs, batch, args.steps, args.warm, device, splits, size,
                                       amp="none", channels_last=False),
                    lambda: engine_run(name, kwargs, batch, args.steps, args.warm, device, splits, size, **fast)]
            for run in runs:
                reset_peak(device)
                ips.append(run())
                mem.append(peak_mem(device))
            mfu = " / ".join(f"{100 * v * flops / peak:.1f}%" if peak else "n/a" for v in ips)
            out.append(f"| {label} | {size} | {batch} | {ips[0]:.1f} | {ips[1]:.1f} | {ips[2]:.1f} | "
                       f"{ips[1] / ips[0]:.2f}x | **{ips[2] / ips[0]:.2f}x** | {flops / 1e9:.3g} | {mfu} | "
                       f"{' / '.join(mem)} |")
        except Exception as err:  # one failing model (out of memory, a compile error) must not lose the rest
            out.append(f"| {label} | {size} | {batch} | failed: {type(err).__name__}: {str(err).splitlines()[0][:120]} "
                       "| | | | | | | |")
            traceback.print_exc()
        print(out[-1], flush=True)
    out.append("")


# ---- feature extraction --------------------------------------------------------------------------------
def features_section(args, device, work: Path, out) -> None:
    from ventralkit import create_model

    n, px = (args.quick_images, args.quick_size) if args.quick else (args.images, 224)
    folder, warm = work / "features", work / "features-warm"
    make_jpegs(folder, n, size=max(px, 64) * 8 // 7)
    make_jpegs(warm, 4, size=max(px, 64) * 8 // 7, seed=1)
    out.append(f"### Feature extraction images/s ({n} JPEGs -> {px} px, decoder.avgpool, defaults of extract_features)")
    out.append("")
    out.append("| model | original one-image loop | ventralkit | ratio | max abs diff | peak GiB original / ventralkit |")
    out.append("|---|---:|---:|---:|---:|---|")
    for name in [m for m in ("cornet_z", "cornet_s") if m in args.models]:
        if over_budget(args):
            out.append(f"| {name} | skipped: past --budget_minutes {args.budget_minutes:g} | | | | |")
            continue
        try:
            model = create_model(name).eval().to(device)
            original_loop(model, warm, "decoder", "avgpool", 0, px, device)
            ventralkit_run(model, warm, "decoder.avgpool", 0, px, device, 64, None, None)
            reset_peak(device)
            sync(device)
            t = time.perf_counter()
            ref = original_loop(model, folder, "decoder", "avgpool", 0, px, device)
            sync(device)
            t_orig, m_orig = time.perf_counter() - t, peak_mem(device)
            reset_peak(device)
            t = time.perf_counter()
            got = ventralkit_run(model, folder, "decoder.avgpool", 0, px, device, 64, None, None)
            sync(device)
            t_vk, m_vk = time.perf_counter() - t, peak_mem(device)
            diff = float(abs(ref - got).max())
            out.append(f"| {name} | {n / t_orig:.1f} | {n / t_vk:.1f} | **{t_orig / t_vk:.2f}x** | {diff:.1e} | "
                       f"{m_orig} / {m_vk} |")
        except Exception as err:
            out.append(f"| {name} | failed: {type(err).__name__}: {str(err).splitlines()[0][:120]} | | | | |")
            traceback.print_exc()
        print(out[-1], flush=True)
    out.append("")


# ---- data pipeline --------------------------------------------------------------------------------------
def data_section(args, device, work: Path, out) -> None:
    from ventralkit.data.device_decode import RawCropDataset
    from ventralkit.data.folders import ImageFolderDataset
    from ventralkit.data.sampling import SeededDataset
    from ventralkit.data.transforms import train_transform
    from ventralkit.models.registry import model_info

    info = model_info("cornet_z")
    px = args.quick_size if args.quick else 224
    per_class = args.quick_images if args.quick else args.data_images // 2
    jpeg_px = 96 if args.quick else 400  # ImageNet's photos average about 400 x 350
    root = work / "folder"
    unique = min(per_class, 128)  # drawing a photo-like JPEG costs ~20 ms: the rest are copies of these
    for split, k in (("train", per_class), ("val", 2)):
        for c in range(2):
            made = make_jpegs(root / split / f"c{c}", min(k, unique), size=jpeg_px, seed=c)
            for j in range(len(made), k):
                shutil.copyfile(made[j % len(made)], made[0].with_name(f"copy_{j:05d}.jpg"))
    out.append(f"### Data pipeline ({2 * per_class} JPEGs of {jpeg_px} x {jpeg_px} px -> RandomResizedCrop {px} + flip "
               "+ normalise)")
    out.append("")
    out.append("| path | images/s | peak GiB |")
    out.append("|---|---:|---:|")
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cpu_set = SeededDataset(ImageFolderDataset(root / "train", train_transform(info, px)), 0)
        keys = [(0, i) for i in range(len(cpu_set))]
        t = time.perf_counter()
        cpu_set.__getitems__(keys)
        cpu_ips = len(keys) / (time.perf_counter() - t)
        raw_set = RawCropDataset(ImageFolderDataset(root / "train"), px, info.mean, info.std)
        seeded = SeededDataset(raw_set, 0)
        t = time.perf_counter()
        items = seeded.__getitems__(keys)
        worker_ips = len(keys) / (time.perf_counter() - t)
    finally:
        torch.set_num_threads(torch_threads)
    out.append(f"| PIL decode + crop + flip + normalise, 1 CPU core (--data_backend cpu worker) | {cpu_ips:.1f} | n/a |")
    out.append(f"| read bytes + draw crop, 1 CPU core (--data_backend gpu worker) | {worker_ips:.1f} | n/a |")
    batch = min(256, len(items))
    batches = [raw_set.collate(items[i:i + batch]) for i in range(0, len(items) - batch + 1, batch)]
    batches[0][0].to(device)  # warm-up (decoder, kernels)
    reset_peak(device)
    sync(device)
    t = time.perf_counter()
    for raw, _ in batches:
        raw.to(device)
    sync(device)
    dev_ips = len(batches) * batch / (time.perf_counter() - t)
    out.append(f"| decode_jpeg + crop + resize + flip + normalise on {device.type}, batch {batch} "
               f"(--data_backend gpu) | {dev_ips:.1f} | {peak_mem(device)} |")
    print("\n".join(out[-3:]), flush=True)

    # CORnet-Z trained from the folder with each backend, against the same engine fed from device memory
    bsz = args.quick_batch if args.quick else args.data_batch
    warm = args.warm
    steps = max(1, min(args.steps, 2 * per_class // bsz - warm))
    fast = dict(amp="bf16", channels_last=device.type == "cuda", compile=device.type == "cuda")
    try:
        ceiling = engine_run("cornet_z", {}, bsz, steps, warm, device,
                             resident_splits("cornet_z", bsz, steps, warm, px, device), px, **fast)
        rows = []
        for backend in ("cpu", "gpu"):
            reset_peak(device)
            ips = engine_run("cornet_z", {}, bsz, steps, warm, device, None, px, dataset="folder",
                             data_path=str(root), data_backend=backend, num_classes=1000,
                             **({"workers": 0} if args.quick else {}), **fast)
            rows.append(f"| CORnet-Z engine ({', '.join(k for k, v in fast.items() if v)}), batch {bsz}, "
                        f"--data_backend {backend}, default workers: {ips:.1f} img/s = **{100 * ips / ceiling:.0f}%** "
                        f"of the device-memory-fed {ceiling:.1f} img/s | {ips:.1f} | {peak_mem(device)} |")
        out.extend(rows)
    except Exception as err:
        out.append(f"| CORnet-Z engine from the folder: failed: {type(err).__name__}: "
                   f"{str(err).splitlines()[0][:120]} | | |")
        traceback.print_exc()
    print("\n".join(out[-2:]), flush=True)
    out.append("")


# ---- CUDA tests ----------------------------------------------------------------------------------------
def over_budget(args) -> bool:
    """True once the suite has run past ``--budget_minutes``: later rows are skipped, never half-measured."""
    return time.perf_counter() - args.started > 60 * args.budget_minutes


def cuda_tests(args, out) -> None:
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests/test_cuda.py"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=HERE.parent, capture_output=True, text=True)
    tail = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()][-1:] or ["(no output)"]
    print(proc.stdout[-4000:], proc.stderr[-2000:], sep="\n", flush=True)
    out.append(f"CUDA tests (`pytest -m cuda tests/test_cuda.py`, {time.perf_counter() - t:.0f} s): "
               f"exit {proc.returncode}, {tail[0].strip('= ')}")
    out.append("")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few steps (CI on the CPU: under a minute)")
    p.add_argument("--results", default=None, help=f"append the section to this file (default {RESULTS})")
    p.add_argument("--no_tests", action="store_true", help="skip the CUDA tests")
    p.add_argument("--steps", type=int, default=None, help="timed train steps per loop (default 20; quick 2)")
    p.add_argument("--warm", type=int, default=None, help="warm-up steps (default 3; quick 1)")
    p.add_argument("--images", type=int, default=512, help="feature extraction JPEGs")
    p.add_argument("--data_images", type=int, default=3072, help="JPEGs of the data pipeline folder")
    p.add_argument("--data_batch", type=int, default=256)
    p.add_argument("--models", nargs="+", choices=list(TRAIN_MODELS), default=None,
                   help=f"train-step and feature models (default all; --quick: {' '.join(QUICK_MODELS)})")
    p.add_argument("--budget_minutes", type=float, default=7.5,
                   help="skip the train and feature rows that would start after this many minutes")
    p.add_argument("--quick_size", type=int, default=32)
    p.add_argument("--quick_batch", type=int, default=4)
    p.add_argument("--quick_images", type=int, default=8)
    args = p.parse_args(argv)
    args.steps = args.steps or (2 if args.quick else 20)
    args.warm = args.warm or (1 if args.quick else 3)
    args.models = args.models or (QUICK_MODELS if args.quick else list(TRAIN_MODELS))
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"--device {args.device}: no CUDA device here; use --device cpu --quick for the CPU run", file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    results = Path(args.results) if args.results else RESULTS
    started = args.started = time.perf_counter()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    out = [f"## GPU suite (gpu_suite.py{' --quick' if args.quick else ''}), {name}, {stamp}", "",
           f"Machine: {machine_line(device)}; {os.cpu_count()} CPU cores.", ""]
    if not args.no_tests:
        cuda_tests(args, out)
    with tempfile.TemporaryDirectory(prefix="vk-gpu-suite-") as tmp:
        train_section(args, device, out)
        features_section(args, device, Path(tmp), out)
        data_section(args, device, Path(tmp), out)
    out.append(f"Suite time: {time.perf_counter() - started:.0f} s.")
    text = "\n".join(out)
    with results.open("a") as fh:
        fh.write("\n" + text.rstrip() + "\n")
    print(f"\n{text}\n\nappended to {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
