"""The ``ventralkit`` command: a thin layer of argument parsing over the Python API.

Each command lives in its own module exposing ``register(subparsers)``, which adds a parser whose
``func(args)`` makes one API call. A ``VentralkitError`` becomes one line on stderr and exit code 2.
Only the chosen command's module is imported (the others are listed from ``COMMAND_MODULES``), so
commands that do not need torch (``--help``, ``corrupt``, ``plot``, ``compare``, ``prepare``,
``models``) start without importing it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys

from ..errors import VentralkitError, one_line

#: (command, module in ventralkit.cli, one-line help) in the order ``ventralkit --help`` lists them; the help
#: must be the one the module's ``register`` gives (a test checks). A bare module name also works, but that
#: module is then imported for every command.
COMMAND_MODULES: list[tuple[str, str, str] | str] = [
    ("models", "models", "list registered models"),
    ("train", "train", "train a model (CORnet run.py flags accepted)"),
    ("test", "test", "features of an image folder (CORnet run.py test) or evaluation on val/"),
    ("features", "features", "extract features of an image folder (any layers, every time step)"),
    ("plot", "plot", "draw training curves of one or more run folders"),
    ("prepare", "prepare", "lay out a downloaded dataset as train/ and val/ class folders"),
    ("demo", "demo", "train CORnet-Z on the embedded digits dataset (no download)"),
    ("corrupt", "corrupt", "make a corrupted copy of an image folder (ImageNet-C style)"),
    ("robustness", "robustness", "evaluate a model on a corrupted dataset (CE, mCE) or compare earlier runs"),
    ("compare", "compare", "compare finished runs: head, parameters, top-1/top-5/superclass accuracy"),
    ("v1-probe", "v1_probe", "grating experiments on a layer's units; V1 property distributions vs monkey data"),
    ("study", "study", "multi-run studies: 'study feedback' compares CORnet-S100 feedback designs"),
    ("neural", "neural", "model-brain comparison: PLS / ridge predictivity, RDM and CKA per layer"),
    ("behaviour", "behaviour", "behaviour vs subjects' trials: i1n/i2n, error consistency, shape bias"),
    ("weights", "weights", "list, download, verify or import the published weights files (CORnet, PhiNet)"),
]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, exit 2 (prog is "ventralkit [command ...]")
        self.exit(2, f"{self.prog}: error: {message}\n")


def _chosen_command(argv: list[str]) -> str | None:
    """The command word of ``argv`` (its first argument that is not an option), or None."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: full for the command it names, a one-line stub for every other command.

    ``argv=None`` imports and registers every command (for tests and documentation)."""
    parser = _Parser(prog="ventralkit", description="Brain-like vision models: build, train, evaluate, probe.")
    from ..version import __version__

    parser.add_argument("--version", action="version", version=f"ventralkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    chosen = None if argv is None else _chosen_command(argv)
    for entry in COMMAND_MODULES:
        command, module_name, help_text = (None, entry, None) if isinstance(entry, str) else entry
        if argv is None or command is None or command == chosen:
            try:
                module = importlib.import_module(f"{__name__}.{module_name}")
            except ModuleNotFoundError as err:
                if err.name == f"{__name__}.{module_name}":
                    continue  # command not built yet
                raise
            module.register(sub)
        else:
            sub.add_parser(command, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the process's own entry point (the console script, python -m ventralkit.cli)
        with process_collector():
            return run_command(sys.argv[1:])
    return run_command(list(argv))


#: the collector's thresholds for a command's process (CPython's defaults: 700, 10, 10)
COMMAND_GC_THRESHOLDS = (50_000, 20, 20)


@contextlib.contextmanager
def process_collector():
    """Garbage collection suited to one command in its own process; ``main(argv)`` (tests, notebooks) leaves
    the collector alone.

    - While a command imports torch, torchvision and matplotlib (~400,000 objects, none of them garbage),
      CPython's default thresholds run 6 full collections over the growing heap: 0.6 s of a ``train`` run's
      start on 2 cores. Collecting the young generation every 50,000 allocations instead of 700 (as mypy
      does) leaves 12 young collections (0.15 s); cycles are still collected, only later (the peak memory
      of a short CORnet-Z run moved by under 5 %, within its run-to-run spread).
    - When the command is done, the interpreter's collection during shutdown takes over a second (1.2-1.6 s
      measured) and would only run finalisers of objects in reference cycles; every file a command writes
      is closed before it returns. ``gc.freeze`` moves the objects out of its reach; atexit handlers
      (DataLoader workers, temporary folders), stream flushing and module teardown still run."""
    import gc

    gc.set_threshold(*COMMAND_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.freeze()


def run_command(argv: list[str]) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    import warnings

    # a warning is one line for the user, not Python's "file:line: UserWarning" plus the source line
    warnings.formatwarning = lambda message, category, *_a, **_k: f"warning: {message}\n"
    try:
        result = args.func(args)
    except VentralkitError as err:
        code = getattr(err, "exit_code", 2)  # 3: a run that stopped on purpose (diverged); 128+N: signal N
        print(f"ventralkit {args.command}: {'error: ' if code == 2 else ''}{one_line(err)}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
