"""Forward+backward time of the V1-ResNet components against what they replace.

(a) the local-receptive-field layer (``LocallyConnected2d`` 64->64, 3x3, 16x16 map, as in
    ``layer1.2``) against a plain 3x3 convolution of the same shape, and optionally against the
    reference code's formulation (broadcast product of ``(N, O, C, H, W, 9)``, spec v1_resnet.md 1.2);
(b) a whole composite model (default ``v1_resnet50_composite_a``: DoG, local RF, tuned norm,
    polar transform) against the baseline ResNet-50, training mode, cross-entropy loss.

Both at the paper's 64x64 input. The best of ``--repeats`` timed runs after a warm-up is reported.

    OMP_NUM_THREADS=2 python benchmarks/bench_v1.py                 # CPU, batch 128
    python benchmarks/bench_v1.py --device cuda --original_lc       # GPU, with the reference layer
    python benchmarks/bench_v1.py --batch 32 --write                 # append to benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn as nn

from _common import append_results, machine_line


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fwd_bwd(step, device: torch.device, repeats: int, warmup: int) -> float:
    """Best wall time of ``step()`` (one forward + backward) in seconds."""
    for _ in range(warmup):
        step()
    sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t)
    return min(times)


class OriginalLocallyConnected(nn.Module):
    """The reference code's forward: unfold, then a broadcast product summed over channels and taps."""

    def __init__(self, weight: torch.Tensor, padding: int = 1):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        self.padding = padding

    def forward(self, x):
        x = nn.functional.pad(x, (self.padding,) * 4)
        x = x.unfold(2, 3, 1).unfold(3, 3, 1)
        x = x.contiguous().view(*x.shape[:-2], -1)
        return (x.unsqueeze(1) * self.weight).sum([2, -1])


def layer_step(module: nn.Module, x: torch.Tensor):
    def step():
        for p in module.parameters():
            p.grad = None
        x.grad = None
        module(x).square().mean().backward()
    return step


def model_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    criterion = nn.CrossEntropyLoss()

    def step():
        model.zero_grad(set_to_none=True)
        criterion(model(x), y).backward()
    return step


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch", type=int, default=128, help="batch size (the issue's 128; smaller on a slow CPU)")
    p.add_argument("--size", type=int, default=64, help="input size; the models only run at 64")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each; the best is reported")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: OMP_NUM_THREADS)")
    p.add_argument("--model", default="v1_resnet50_composite_a", help="the composite model of part (b)")
    p.add_argument("--original_lc", action="store_true",
                   help="also time the reference code's local RF layer (memory ~ batch x 37 MB x 2)")
    p.add_argument("--skip_models", action="store_true", help="time only the layers (part a)")
    p.add_argument("--note", default="", help="free text for the RESULTS.md entry (e.g. 'machine shared')")
    p.add_argument("--write", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    if args.size != 64:
        print("note: the V1 components are built for 64x64 input; --size only scales part (b)", file=sys.stderr)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)

    from ventralkit import create_model
    from ventralkit.models.v1.components import LocallyConnected2d

    rows = []  # (group, what, seconds, baseline seconds)
    # (a) layer1.2's conv2: 64 -> 64 channels, 3x3, on the 16x16 map of a 64x64 input
    side = 16
    x = torch.randn(args.batch, 64, side, side, device=device, requires_grad=True)
    conv = nn.Conv2d(64, 64, 3, padding=1, bias=False).to(device)
    lrf = LocallyConnected2d(64, 64, side, kernel_size=3, stride=1, padding=1).to(device)
    t_conv = time_fwd_bwd(layer_step(conv, x), device, args.repeats, args.warmup)
    rows.append(("layer", "3x3 conv 64->64 (baseline)", t_conv, t_conv))
    t_lrf = time_fwd_bwd(layer_step(lrf, x), device, args.repeats, args.warmup)
    rows.append(("layer", "local RF layer, ventralkit (unfold + einsum)", t_lrf, t_conv))
    if args.original_lc:
        orig = OriginalLocallyConnected(lrf.weight).to(device)
        with torch.no_grad():
            err = (orig(x) - lrf(x)).abs().max() / lrf(x).abs().max()
        if err > 1e-4:
            print(f"warning: the two local RF implementations differ (relative {err:.1e})", file=sys.stderr)
        t_orig = time_fwd_bwd(layer_step(orig, x), device, args.repeats, args.warmup)
        rows.append(("layer", "local RF layer, reference code (broadcast product)", t_orig, t_conv))
        del orig
    del conv, lrf, x

    # (b) whole models, training mode
    if not args.skip_models:
        images = torch.randn(args.batch, 3, args.size, args.size, device=device)
        labels = torch.randint(0, 1000, (args.batch,), device=device)
        base = create_model("v1_resnet50").to(device).train()
        t_base = time_fwd_bwd(model_step(base, images, labels), device, args.repeats, args.warmup)
        rows.append(("model", "v1_resnet50 (baseline)", t_base, t_base))
        del base
        comp = create_model(args.model).to(device).train()
        t_comp = time_fwd_bwd(model_step(comp, images, labels), device, args.repeats, args.warmup)
        rows.append(("model", args.model, t_comp, t_base))
        del comp

    lines = ["| part | forward + backward | ms | ratio to baseline |", "|---|---|---:|---:|"]
    lines += [f"| {g} | {w} | {t * 1e3:.1f} | {t / b:.2f}x |" for g, w, t, b in rows]
    table = "\n".join(lines)
    print(table)
    if args.write:
        settings = (f"batch {args.batch}, {args.size}x{args.size} input (layer: 64x{side}x{side} map), device "
                    f"{device}, best of {args.repeats} after {args.warmup} warm-up")
        if args.note:
            settings += f"; {args.note}"
        append_results(f"## V1 ResNet layers (bench_v1.py)\n\nMachine: {machine_line(device)}.\n"
                       f"Settings: {settings}.\n\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
