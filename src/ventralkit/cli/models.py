"""``ventralkit models``: list registered models with their parameter counts and metadata."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("models", help="list registered models")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'cornet_*'")
    p.add_argument("--shapes", action="store_true", help="also run one forward pass to show the output shape")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..models.summary import model_table

    print(model_table(args.pattern, with_shapes=args.shapes))
    return 0
