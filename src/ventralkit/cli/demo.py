"""``ventralkit demo``: train CORnet-Z on the embedded digits and write a complete run folder.

No download and no data to prepare; a couple of minutes on 2 CPU cores (recipe ``demo-digits``).
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("demo", help="train CORnet-Z on the embedded digits dataset (no download)")
    p.add_argument("-o", "--output_path", default=None, help="run folder (default demo_runs/cornet_z-digits-<time>)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--no_progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    import time
    from pathlib import Path

    from ..engine.config import TrainConfig
    from ..engine.train import train

    out = args.output_path or str(Path("demo_runs") / f"cornet_z-digits-{time.strftime('%Y%m%d-%H%M%S')}")
    overrides = {"output_path": out, "epochs": args.epochs}
    if args.no_progress:
        overrides["progress"] = False
    result = train(TrainConfig.build(recipe="demo-digits", **overrides))
    run_dir = Path(result.run_dir)
    print("\nthe run folder holds:")
    for rel in ("config.json", "metrics.jsonl", "metrics.csv", "checkpoints/last.pt", "checkpoints/best.pt",
                "plots/curves.png"):
        print(f"  {run_dir / rel}")
    print(f"\nnext: ventralkit test --ckpt_path {run_dir / 'checkpoints/best.pt'} --dataset digits "
          f"-o {run_dir / 'eval'}   (model, classes and size come from the checkpoint)")
    return 0
