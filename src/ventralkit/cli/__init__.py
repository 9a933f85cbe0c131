"""The ``ventralkit`` command: a thin layer of argument parsing over the Python API.

Each command lives in its own module exposing ``register(subparsers)``, which adds a parser whose
``func(args)`` makes one API call. A ``VentralkitError`` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import VentralkitError

#: command modules, in the order ``ventralkit --help`` lists them
COMMAND_MODULES = [
    "models",
    "train",
    "test",
    "features",
    "plot",
    "prepare",
    "demo",
    "corrupt",
    "robustness",
    "compare",
    "v1_probe",
    "study",
    "neural",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, exit 2
        self.exit(2, f"ventralkit {self.prog.split()[-1]}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ventralkit", description="Brain-like vision models: build, train, evaluate, probe.")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"ventralkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"{__name__}.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def one_line(err: Exception) -> str:
    """The user-facing line of an error; DataLoader workers wrap it in a traceback, so take its last line."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    if not lines:
        return type(err).__name__
    last = lines[-1]
    prefix = f"{type(err).__module__}.{type(err).__name__}: "
    return last[len(prefix):] if last.startswith(prefix) else last


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except VentralkitError as err:
        print(f"ventralkit {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
