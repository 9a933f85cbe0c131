"""Training curves: top-1, top-5 and loss against epoch, train and val, several runs overlaid."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from . import save_figure

from ..engine.records import read_metrics


def _label(run_dir: Path) -> str:
    import json

    cfg_path = run_dir / "config.json"
    if cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text())
        kw = cfg.get("model_kwargs") or {}
        extra = ",".join(f"{k}={v}" for k, v in kw.items())
        return f"{run_dir.name} ({cfg.get('model')}{' ' + extra if extra else ''})"
    return run_dir.name


def plot_runs(run_dirs, output: str | Path, title: str | None = None) -> Path:
    """One figure, three panels (top-1, top-5, loss); solid = val, dashed = train; one colour per run."""
    run_dirs = [Path(r) for r in run_dirs]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, run in enumerate(run_dirs):
        recs = read_metrics(run)
        c = colours[i % len(colours)]
        label = _label(run)
        for phase, style in (("val", "-o"), ("train", "--")):
            rows = [r for r in recs if r["phase"] == phase]
            if not rows:
                continue
            x = [r["epoch"] for r in rows]
            for ax, key in zip(axes, ("top1", "top5", "loss")):
                y = [r.get(key) for r in rows]
                ax.plot(x, [float("nan") if v is None else v for v in y], style, color=c, markersize=3,
                        label=f"{label} {phase}")
        best = [r for r in recs if r["phase"] == "val" and r.get("top1") is not None]
        if best:
            b = max(best, key=lambda r: r["top1"])
            axes[0].annotate(f"{b['top1']:.3f}", (b["epoch"], b["top1"]), textcoords="offset points",
                             xytext=(0, 6), ha="center", color=c, fontsize=8)
    for ax, name in zip(axes, ("top-1 accuracy", "top-5 accuracy", "cross-entropy loss")):
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, Path(output))
