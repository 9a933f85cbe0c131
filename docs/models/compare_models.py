"""The figure and the table of docs/models.md, read from the run folders its commands wrote.

    python compare_models.py --root RUNS_ROOT -o comparison.png

RUNS_ROOT is the folder the commands ran in: ``runs/<name>/metrics.csv`` (training), ``neural/<name>/
scores.csv`` (``ventralkit neural``, one metric with ``--bootstrap``), ``robustness/<name>/summary.json`` and
``robustness_details.csv`` (``ventralkit robustness``). Nothing is recomputed: every number printed or drawn
is one of those files' values. Prints the Markdown table; writes a figure of two panels: each layer's neural
score with its 95 % interval against its relative depth, and the top-1 error against corruption severity
(mean over the corruptions; 0 = clean).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

#: run name -> label, in the order of the table and the legends
MODELS = {"z": "CORnet-Z", "alexnet": "AlexNet (torchvision)", "resnet18": "ResNet-18 (torchvision)"}


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def training_top1(root: Path, name: str) -> float:
    """Best validation top-1 over the epochs (``metrics.csv`` of ``ventralkit train``)."""
    return max(float(r["val_top1"]) for r in rows(root / "runs" / name / "metrics.csv") if r["val_top1"])


def neural_layers(root: Path, name: str) -> list[dict]:
    """Each layer's row of ``scores.csv``, in the model's order (one metric per output)."""
    return [r for r in rows(root / "neural" / name / "scores.csv") if r["raw"]]


def severity_errors(root: Path, name: str) -> dict[int, float]:
    """Top-1 error per severity, mean over the corruptions (severity 0: the clean images)."""
    by_sev: dict[int, list[float]] = {}
    for r in rows(root / "robustness" / name / "robustness_details.csv"):
        by_sev.setdefault(int(r["difficulty"]), []).append(float(r["top1_error"]))
    return {s: sum(v) / len(v) for s, v in sorted(by_sev.items())}


def table(root: Path) -> str:
    """The Markdown table of docs/models.md."""
    head = ("| model | val top-1 (training) | clean top-1 (digits/val) | best layer (ridgecv) | raw r [95% CI] "
            "| ceiled | mean corruption error | mCE vs CORnet-Z | relative mCE |")
    lines = [head, "|" + "---|" * 9]
    for name, label in MODELS.items():
        best = max(neural_layers(root, name), key=lambda r: float(r["raw"]))
        summary = json.loads((root / "robustness" / name / "summary.json").read_text())
        mce = f"{summary['mce']:.2f}" if summary.get("mce") is not None else "1 (the baseline)"
        rel = f"{summary['relative_mce']:.2f}" if summary.get("relative_mce") is not None else "1 (the baseline)"
        lines.append(f"| {label} | {training_top1(root, name):.3f} | {1 - summary['clean_error']:.3f} "
                     f"| `{best['layer']}` | {float(best['raw']):.3f} [{float(best['ci_low']):.3f}, "
                     f"{float(best['ci_high']):.3f}] | {float(best['score']):.3f} | {summary['mean_error']:.3f} "
                     f"| {mce} | {rel} |")
    return "\n".join(lines)


def draw_neural(ax, root: Path) -> None:
    ceiling = None
    for k, (name, label) in enumerate(MODELS.items()):
        layers = neural_layers(root, name)
        depth = [i / max(len(layers) - 1, 1) + 0.012 * (k - 1) for i in range(len(layers))]  # bars side by side
        raw = [float(r["raw"]) for r in layers]
        err = [[v - float(r["ci_low"]) for v, r in zip(raw, layers)],
               [float(r["ci_high"]) - v for v, r in zip(raw, layers)]]
        ax.errorbar(depth, raw, yerr=err, marker="o", capsize=3, label=label)
        i = max(range(len(raw)), key=raw.__getitem__)
        ax.annotate(layers[i]["layer"].rsplit("-t", 1)[0], (depth[i], raw[i]), textcoords="offset points",
                    xytext=(0, 9), ha="center", fontsize=8)
        ceiling = float(layers[0]["ceiling"]) ** 0.5
    ax.axhline(ceiling, ls="--", color="grey", lw=1, label=f"noise ceiling (raw scale, {ceiling:.3f})")
    ax.set_xlabel("relative depth of the layer (first to last scored)")
    ax.set_ylabel("ridgecv raw score (median r), 95% CI")
    ax.set_title("Neural predictivity: 60 synthetic V4 neuroids")
    ax.legend(fontsize=8, loc="upper left")


def draw_robustness(ax, root: Path) -> None:
    for name, label in MODELS.items():
        errs = severity_errors(root, name)
        ax.plot(list(errs), [100 * e for e in errs.values()], marker="o", label=label)
    ax.set_xticks(range(6), ["clean", "1", "2", "3", "4", "5"])
    ax.set_xlabel("corruption severity")
    ax.set_ylabel("top-1 error (%), mean over 15 corruptions")
    ax.set_title("Robustness: corrupted digits/val")
    ax.legend(fontsize=8, loc="upper left")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=Path("."), help="the folder the commands ran in")
    p.add_argument("-o", "--output", type=Path, default=Path("comparison.png"))
    args = p.parse_args(argv)
    print(table(args.root))
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    draw_neural(a, args.root)
    draw_robustness(b, args.root)
    fig.suptitle("CORnet-Z, AlexNet and ResNet-18 trained on the embedded digits (64 px, 4 epochs)")
    fig.tight_layout()
    fig.savefig(args.output, dpi=90)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
