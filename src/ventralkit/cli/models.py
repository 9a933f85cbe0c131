"""``ventralkit models``: list registered models with their parameter counts and metadata, or, with
``--source torchvision|timm``, the names that library offers as ``--model torchvision:NAME`` / ``timm:NAME``
(read from the library, no model built; timm is imported only for ``--source timm``)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("models", help="list registered models")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'cornet_*'")
    p.add_argument("--shapes", action="store_true", help="also run one forward pass to show the output shape")
    p.add_argument("--source", choices=["torchvision", "timm"], default=None,
                   help="list the models of that library instead (use them as --model torchvision:NAME / timm:NAME)")
    p.add_argument("--pretrained", action="store_true",
                   help="with --source timm: the architecture.tag names that have pretrained weights")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.source:
        return list_source(args)
    from ..models.summary import model_table

    print(model_table(args.pattern, with_shapes=args.shapes))
    return 0


def list_source(args) -> int:
    """One name per line, as ``--model`` takes it; a pattern that matches nothing says so (exit 0)."""
    from ..errors import ConfigError
    from ..models.sources import list_source_models

    if args.shapes:
        raise ConfigError("--shapes applies to registered models; drop it with --source")
    if args.source == "timm" and args.pretrained:
        from ..models.sources.timm_source import list_names

        names = list_names(args.pattern, pretrained=True)
    else:
        names = list_source_models(args.source, args.pattern)
    if not names:
        print(f"no {args.source} model matches {args.pattern!r}")
        return 0
    print("\n".join(f"{args.source}:{n}" for n in names))
    return 0
