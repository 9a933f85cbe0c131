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
    from ..files import RunPaths
    from ..plots.curves import draw_run_curves

    out = args.output_path or str(Path("demo_runs") / f"cornet_z-digits-{time.strftime('%Y%m%d-%H%M%S')}")
    overrides = {"output_path": out, "epochs": args.epochs}
    if args.no_progress:
        overrides["progress"] = False
    result = train(TrainConfig.build(recipe="demo-digits", **overrides))
    draw_run_curves(result.trained)
    run = RunPaths(result.run_dir)
    print("\nthe run folder holds:")
    for path in (run.config, run.root / "metrics.jsonl", run.root / "metrics.csv", run.last, run.best, run.curves):
        print(f"  {path}")
    print(f"\nnext: ventralkit test --ckpt_path {run.best} --dataset digits "
          f"-o {run.root / 'eval'}   (model, classes and size come from the checkpoint)")
    return 0
