"""Train-step throughput: ventralkit's engine against a plain fp32 loop that synchronises every step.

The plain loop is what most research scripts do (``loss.item()`` and accuracy on the host each step).
Both see the same in-memory synthetic data, model, optimizer and batch size, in one process.

    python benchmarks/bench_train.py --model cornet_z --size 64 --batch 32 --steps 40 [--device cuda] [--write]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from _common import append_results, machine_line

import ventralkit as vk
from ventralkit.data import DataSplits
from ventralkit.engine import train as engine_train


class Synthetic(Dataset):
    def __init__(self, n, size, classes=10):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, size, size, generator=g)
        self.y = torch.randint(0, classes, (n,), generator=g)
        self.classes = [str(i) for i in range(classes)]

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def plain_loop(model_name, ds, batch, steps, device) -> float:
    model = vk.create_model(model_name, num_classes=10).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=0, drop_last=True)
    crit = nn.CrossEntropyLoss()
    done, t0 = 0, None
    while done < steps + 3:
        for x, y in loader:
            if done == 3:  # warm-up steps excluded
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            x, y = x.to(device), y.to(device)
            out = model(x)
            loss = crit(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            _ = loss.item(), (out.argmax(1) == y).float().mean().item()  # per-step host sync
            done += 1
            if done == steps + 3:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def engine_run(model_name, ds, batch, steps, device, **speed) -> float:
    engine_train.load_datasets = lambda *a, **k: DataSplits(ds, Synthetic(batch, ds.x.shape[-1]), ds.classes)
    warm = 3
    with tempfile.TemporaryDirectory() as tmp:
        t = {}
        orig_step = engine_train.Meters.add

        def timed_add(self, *a, **k):  # start the clock after the warm-up steps
            orig_step(self, *a, **k)
            t["n"] = t.get("n", 0) + 1
            if t["n"] == 2 * warm:  # two meters per step
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t["t0"] = time.perf_counter()
            if t["n"] == 2 * (warm + steps):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t["t_end"] = time.perf_counter()

        engine_train.Meters.add = timed_add
        try:
            engine_train.train(model=model_name, dataset="folder", data_path="synthetic", epochs=1,
                               batch_size=batch, workers=0, lr=0.01, max_steps_per_epoch=steps + warm,
                               output_path=tmp, progress=False, log_every=10_000, val_every=100,
                               keep_epochs=0, device=str(device), **speed)
        finally:
            engine_train.Meters.add = orig_step
        # the end-of-run validation, checkpoint and plot are excluded: time stops at the last step
        return steps * batch / (t["t_end"] - t["t0"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="cornet_z")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs of each loop; the best counts")
    ap.add_argument("--write", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = ap.parse_args()
    device = torch.device(args.device)
    ds = Synthetic(args.batch * (args.steps + 3), args.size)
    loops = [("plain fp32 loop, host sync every step", lambda: plain_loop(args.model, ds, args.batch, args.steps, device)),
             ("ventralkit engine, fp32", lambda: engine_run(args.model, ds, args.batch, args.steps, device))]
    if device.type == "cuda":
        loops.append(("ventralkit engine, bf16 + channels_last",
                      lambda: engine_run(args.model, ds, args.batch, args.steps, device, amp="bf16",
                                         channels_last=True)))
        loops.append(("ventralkit engine, bf16 + channels_last + compile",
                      lambda: engine_run(args.model, ds, args.batch, args.steps, device, amp="bf16",
                                         channels_last=True, compile=True)))
    best = {name: 0.0 for name, _ in loops}
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits every loop alike
        for name, fn in loops:
            best[name] = max(best[name], fn())
    rows = list(best.items())
    base = rows[0][1]
    lines = [f"### Train step: {args.model}, {args.size}px, batch {args.batch}, {args.steps} steps, best of {args.repeats} ({machine_line(device)})",
             "", "| loop | images/s | ratio vs plain |", "|---|---:|---:|"]
    lines += [f"| {name} | {ips:.1f} | {ips / base:.2f}x |" for name, ips in rows]
    text = "\n".join(lines)
    print(text)
    if args.write:
        append_results(text)


if __name__ == "__main__":
    main()
