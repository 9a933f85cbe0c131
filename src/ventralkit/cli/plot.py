"""``ventralkit plot RUN_DIR [RUN_DIR ...]``: top-1, top-5 and loss curves, several runs overlaid."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("plot", help="draw training curves of one or more run folders")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("-o", "--output", default=None, help="PNG path (default RUN_DIR/plots/curves.png, or curves.png)")
    p.add_argument("--title", default=None)
    p.add_argument("--zoom", action="store_true", help="auto-scale the accuracy axes (default: 0 to 1)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ..engine.records import run_folders
    from ..plots.curves import plot_runs

    runs = [r for given in args.runs for r in run_folders(given)]  # a staged run: one curve per stage
    out = args.output or (Path(args.runs[0]) / "plots" / "curves.png" if len(args.runs) == 1 else "curves.png")
    print(plot_runs(runs, out, title=args.title, zoom=args.zoom))
    return 0
