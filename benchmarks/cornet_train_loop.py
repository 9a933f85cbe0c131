"""The training loop of CORnet's ``run.py train``, restated for benchmarking (not run.py's code).

What it does follows docs/reference/cornet.md section 3.3: ``ImageFolder(<data>/train)`` with
RandomResizedCrop(224) + horizontal flip + ImageNet normalisation, a shuffling DataLoader with
``--workers`` processes and pinned memory, SGD (momentum 0.9, weight decay 1e-4) with the step
schedule set from the fractional epoch before every batch, cross-entropy, and a record per step whose
loss, top-1 and top-5 are read on the host (``.item()``), with the step's duration and the time spent
waiting for the batch. After the epoch it validates once over ``<data>/val`` (Resize 256, CenterCrop
224; summed loss and top-k counts divided by the number of images) and saves one checkpoint
``{'flags', 'epoch', 'state_dict', 'optimizer'}`` and the records (``results.pkl``), as run.py does.

It leaves out what would only slow it down: run.py's extra data-only epoch at the end and its
validation before the first step. The model comes from ventralkit's builders (the same architecture
and initialisation as the ``cornet`` package; that package is not installed here).

    python benchmarks/cornet_train_loop.py --data_path DIR --model Z --workers 2 --batch_size 32 \\
        --steps 12 -o OUT
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import time

import numpy as np
import torch
import torch.nn as nn
import torchvision

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
MODELS = {"Z": "cornet_z", "R": "cornet_r", "RT": "cornet_rt", "S": "cornet_s"}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data_path", required=True)
    ap.add_argument("-o", "--output_path", required=True)
    ap.add_argument("--model", default="Z", choices=sorted(MODELS))
    ap.add_argument("-j", "--workers", type=int, default=4)
    ap.add_argument("--batch_size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--step_size", type=int, default=10)
    ap.add_argument("--steps", type=int, default=None, help="stop the epoch after this many steps")
    return ap.parse_args()


def loaders(root: str, batch_size: int, workers: int):
    T = torchvision.transforms
    norm = T.Normalize(mean=MEAN, std=STD)
    train = torchvision.datasets.ImageFolder(os.path.join(root, "train"), T.Compose(
        [T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), norm]))
    val = torchvision.datasets.ImageFolder(os.path.join(root, "val"), T.Compose(
        [T.Resize(256), T.CenterCrop(224), T.ToTensor(), norm]))
    kw = dict(batch_size=batch_size, num_workers=workers, pin_memory=True)
    return (torch.utils.data.DataLoader(train, shuffle=True, **kw),
            torch.utils.data.DataLoader(val, shuffle=False, **kw))


def topk_counts(output: torch.Tensor, target: torch.Tensor, ks=(1, 5)) -> list[int]:
    """How many of the batch have their label among the top k outputs, for each k."""
    top = output.topk(max(ks), dim=1).indices
    hits = top.eq(target[:, None])
    return [int(hits[:, :k].any(1).sum()) for k in ks]


def validate(model: nn.Module, loader) -> dict:
    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    t0, loss, c1, c5, n = time.time(), 0.0, 0, 0, 0
    with torch.no_grad():
        for images, target in loader:
            out = model(images)
            loss += loss_fn(out, target).item()
            a, b = topk_counts(out, target)
            c1, c5, n = c1 + a, c5 + b, n + len(target)
    model.train()
    return {"loss": loss / n, "top1": c1 / n, "top5": c5 / n, "dur": (time.time() - t0) / len(loader)}


def main() -> None:
    args = parse_args()
    np.random.seed(0)
    torch.manual_seed(0)
    import ventralkit as vk

    model = vk.create_model(MODELS[args.model])
    train_loader, val_loader = loaders(args.data_path, args.batch_size, args.workers)
    nsteps = min(len(train_loader), args.steps or len(train_loader))
    optimizer = torch.optim.SGD(model.parameters(), args.lr, momentum=0.9, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    records, data_load_start = [], math.nan
    for step, (images, target) in enumerate(train_loader):
        if step >= nsteps:
            break
        start = time.time()
        frac_epoch = (step + 1) / nsteps
        lr = args.lr * 0.1 ** math.floor(frac_epoch / args.step_size)
        for group in optimizer.param_groups:
            group["lr"] = lr
        output = model(images)
        loss = loss_fn(output, target)
        c1, c5 = topk_counts(output, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        records.append({"loss": loss.item(), "top1": c1 / len(target), "top5": c5 / len(target),
                        "learning_rate": lr, "dur": time.time() - start,
                        "data_load_dur": start - data_load_start})
        data_load_start = time.time()
    records.append({"val": validate(model, val_loader)})
    os.makedirs(args.output_path, exist_ok=True)
    ckpt = {"flags": vars(args), "epoch": 1, "state_dict": model.state_dict(), "optimizer": optimizer.state_dict()}
    torch.save(ckpt, os.path.join(args.output_path, "epoch_01.pth.tar"))
    with open(os.path.join(args.output_path, "results.pkl"), "wb") as fh:
        pickle.dump(records, fh)


if __name__ == "__main__":
    main()
