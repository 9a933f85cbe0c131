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
    from ..files import ensure_writable_dir
    from ..plots import save_figure
    from ..plots.curves import curves_figure

    runs = [r for given in args.runs for r in run_folders(given)]  # a staged run: one curve per stage
    out = Path(args.output or (Path(args.runs[0]) / "plots" / "curves.png" if len(args.runs) == 1 else "curves.png"))
    drawn = curves_figure(runs, title=args.title, zoom=args.zoom)  # every input read before anything is written
    try:
        ensure_writable_dir(out.parent, flag="-o/--output")
    except Exception:
        import matplotlib.pyplot as plt

        plt.close(drawn.figure)
        raise
    print(save_figure(drawn.figure, out, bbox_inches="tight"))
    return 0
