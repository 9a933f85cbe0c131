"""``ventralkit compare RUN_DIR... [-o OUT]``: a table of heads, parameters and accuracies, saved and drawn.

    ventralkit compare runs/phinet-linear runs/phinet-adaptive runs/hierarchical -o comparison
"""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("compare", help="compare finished runs: head, parameters, top-1/top-5/superclass accuracy",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="run folders (config.json + metrics.jsonl); a staged run gives one row per stage")
    p.add_argument("-o", "--output", default="comparison",
                   help="folder for comparison.csv, comparison.md and comparison.png (default: ./comparison)")
    p.add_argument("--no_plot", action="store_true", help="skip the bar chart")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis.compare import compare_runs

    result = compare_runs(args.run_dirs, output=args.output, plot=not args.no_plot)
    print(result.table)
    print("saved " + ", ".join(str(p) for p in result.files.values()))
    return 0
