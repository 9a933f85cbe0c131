"""What the commands share: the options several of them take, declared once, and the helpers they call.

Command modules import this module (and the layers below), never each other. An option several commands
take (``--model``, ``--ckpt_path``, ``--workers``, ``--batch_size``, ``--imsize``, ``--device``, ``--amp``) is
one ``OptionSpec`` in ``SHARED_OPTIONS``: one set of flags, one type, one default and one help text. Where
commands used to differ, the default is None and each command resolves it (the help says how), so a user
reads the same option the same way everywhere. The original CORnet names are accepted as written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.config import AMP_MODES  # the one list of --amp values (TrainConfig checks the same)
from ..errors import ConfigError
from ..files import ensure_writable_dir
from ..models.registry import canonical_name as model_name  # CORnet's --model letters -> registered names


def _int_at_least(value: str, low: int, rule: str) -> int:
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if v < low:
        raise argparse.ArgumentTypeError(f"must be {rule}, got {v}")
    return v


def positive_int(value: str) -> int:
    return _int_at_least(value, 1, "a positive integer")


def non_negative_int(value: str) -> int:
    return _int_at_least(value, 0, "0 or more")


def image_size_arg(value: str) -> int:
    """``--imsize``: one rule for every command (the engine's ``MIN_IMAGE_SIZE``)."""
    from ..engine.config import MIN_IMAGE_SIZE

    v = positive_int(value)
    if v < MIN_IMAGE_SIZE:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_IMAGE_SIZE} pixels, got {v}")
    return v


def positive_float(value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {value}")
    return v


@dataclass(frozen=True)
class OptionSpec:
    """One option as every command that takes it declares it: ``add_argument(*flags, dest=dest, **kwargs)``."""

    flags: tuple[str, ...]
    dest: str
    help: str
    kwargs: dict = field(default_factory=dict)  # type, choices, metavar; the default is always None

    def add_to(self, parser) -> argparse.Action:
        """Declare the option on ``parser`` (a parser or an argument group)."""
        return parser.add_argument(*self.flags, dest=self.dest, default=None, help=self.help, **self.kwargs)


#: the options several commands take; ``add_shared(group, name, ...)`` declares them (``train`` too)
SHARED_OPTIONS: dict[str, OptionSpec] = {spec.dest: spec for spec in (
    OptionSpec(("--model",), "model", "registered name or CORnet letter Z|R|RT|S|S100; torchvision:NAME, timm:NAME "
               "(`ventralkit models --source torchvision|timm` lists them), or path/to/file.py:factory (this RUNS "
               "that Python file and calls factory(): name only files you trust)"),
    OptionSpec(("--weights",), "weights", "weights of a torchvision/timm model: DEFAULT, or a name such as IMAGENET1K_V2 "
               "(torchvision) or a1_in1k (a timm tag); downloaded and checked by that library (default: random "
               "initialisation for train, DEFAULT for the other commands); registered models: DEFAULT = --pretrained"),
    OptionSpec(("--ckpt_path", "--checkpoint"), "ckpt_path",
               "weights: an original checkpoint, a state dict or a ventralkit checkpoint"),
    OptionSpec(("-j", "--workers"), "workers",
               "DataLoader worker processes, 0 = load in this process (default: train one per CPU core, at most 8; "
               "study 0; the others none on up to 4 CPU cores, a few on more, up to 16 on CUDA)",
               {"type": non_negative_int}),
    OptionSpec(("--batch_size",), "batch_size",
               "images per batch (default: train the recipe's; test, features, neural 64; robustness 128; "
               "v1-probe 16 on the CPU, 128 on CUDA; study 32)", {"type": positive_int}),
    OptionSpec(("--imsize", "--image_size"), "image_size",
               "input size in pixels (default: the checkpoint's training size, else the model's; train: the "
               "recipe's, else the model's; study: 32)", {"type": image_size_arg}),
    OptionSpec(("--device",), "device", "auto (default: cuda if available) | cpu | cuda | cuda:N"),
    OptionSpec(("--amp",), "amp", "autocast (mixed precision): none | bf16 | fp16 (default: none; train: the "
               "recipe's, else none)", {"choices": list(AMP_MODES)}),
)}


def add_shared(parser, *names: str) -> None:
    """Declare the named ``SHARED_OPTIONS`` on ``parser`` (a parser or an argument group), in that order."""
    for name in names:
        SHARED_OPTIONS[name].add_to(parser)


def amp_mode(args: argparse.Namespace) -> str:
    """``--amp`` for a forward-only command: not given means none (``train`` leaves None to its recipe)."""
    return args.amp or "none"


def add_model_args(p: argparse.ArgumentParser, inference: bool = False) -> None:
    """--model, --num_classes, --ckpt_path, --pretrained, --trust_checkpoint and the per-family model options.

    ``inference``: a command that needs trained weights, so ``--random_init`` asks for none (the default
    is the published weights, as CORnet's ``run.py test``)."""
    g = p.add_argument_group("model")
    add_shared(g, "model")
    g.add_argument("--num_classes", type=positive_int, default=None,
                   help="classifier outputs (default: the checkpoint's, else the model's)")
    add_shared(g, "ckpt_path")
    g.add_argument("--pretrained", action="store_true",
                   help="the original published weights (downloaded into $VENTRALKIT_WEIGHTS and checked when missing: "
                        "ventralkit weights); for a torchvision/timm model: --weights DEFAULT")
    add_shared(g, "weights")
    if inference:
        g.add_argument("--random_init", action="store_true",
                       help="untrained weights (default without --ckpt_path: the published weights)")
    g.add_argument("--trust_checkpoint", action="store_true",
                   help="load a checkpoint that needs full unpickling (it can run code: only files you trust)")
    g.add_argument("--times", type=positive_int, default=None, help="time steps of CORnet-R/RT (original default 5)")
    g.add_argument("--outer_times", type=positive_int, default=None,
                   help="CORnet-S100 passes over V1-V4 (1 = no feedback)")
    g.add_argument("--feedback", choices=["replace", "additive", "gated"], default=None,
                   help="CORnet-S100 feedback design")
    g.add_argument("--model_kwargs", default=None, metavar="JSON", help='extra builder arguments, e.g. \'{"rank": 16}\'')


def model_kwargs(args: argparse.Namespace) -> dict:
    """The builder keyword arguments the flags ask for (only those given)."""
    kw = {}
    for flag in ("times", "outer_times", "feedback"):
        if getattr(args, flag, None) is not None:
            kw[flag] = getattr(args, flag)
    if getattr(args, "model_kwargs", None):
        try:
            extra = json.loads(args.model_kwargs)
        except json.JSONDecodeError as err:
            raise ConfigError(f"--model_kwargs is not valid JSON ({err.msg})") from None
        if not isinstance(extra, dict):
            raise ConfigError("--model_kwargs must be a JSON object")
        kw.update(extra)
    return kw


def load_model_from_args(args: argparse.Namespace):
    """The model the shared flags describe, through the one loader (``models.loading.load_model``).

    Weights: ``--ckpt_path``, ``--pretrained``, ``--weights``, ``--random_init``; with none of them, the published
    weights where the model has them (as CORnet's ``run.py test``), else a one-line error. A ventralkit
    checkpoint supplies the model, its options, class count, class names and preprocessing (image size);
    ``--imsize`` replaces the size in ``loaded.preprocessing`` (and ``model.preprocessing``)."""
    from ..errors import CheckpointError
    from ..models.loading import load_model

    name = model_name(args.model) if args.model else None
    name, pretrained, weights, implied = weights_choice(args, name)
    try:
        return load_model(name, checkpoint=args.ckpt_path, pretrained=pretrained, num_classes=args.num_classes,
                          model_kwargs=model_kwargs(args), trust=args.trust_checkpoint, weights=weights,
                          image_size=getattr(args, "image_size", None))  # --imsize: into the preprocessing
    except CheckpointError as err:
        if implied:
            raise CheckpointError(f"{err} (the published weights are the default; pass --ckpt_path FILE, or "
                                  "--random_init for untrained weights)") from None
        raise


def weights_choice(args: argparse.Namespace, name: str | None) -> tuple:
    """``(name, pretrained, weights, implied)`` from ``--ckpt_path`` / ``--pretrained`` / ``--weights`` /
    ``--random_init`` (at most one). None of them: the published weights where the model has them (a
    torchvision/timm model: its DEFAULT weights; a file's factory: the weights it builds). ``--weights DEFAULT``
    of a registered model is ``--pretrained``."""
    from ..models.model_spec import is_source_spec, parse_spec
    from ..models.registry import model_info

    random_init, weights = getattr(args, "random_init", False), getattr(args, "weights", None)
    given = [f for f, on in (("--ckpt_path", args.ckpt_path), ("--pretrained", args.pretrained),
                             ("--weights", weights), ("--random_init", random_init)) if on]
    if len(given) > 1:
        raise ConfigError(f"give one of {' / '.join(given)}, not both")
    pretrained, implied = args.pretrained, False
    if weights is not None and not is_source_spec(name or "cornet_z"):
        if str(weights).upper() != "DEFAULT":
            raise ConfigError(f"--weights {weights}: a registered model has one set of published weights, "
                              "--weights DEFAULT (= --pretrained)")
        pretrained, weights = True, None
    if not given:
        name = name or "cornet_z"  # the original run.py default
        if is_source_spec(name):
            if parse_spec(name).kind != "file":
                weights, implied = "DEFAULT", True
        elif model_info(name).weights is None:
            raise ConfigError(f"{name} has no published weights; pass --ckpt_path FILE "
                              "(or --random_init for untrained weights)")
        else:
            pretrained = implied = True
    return name, pretrained, weights, implied


def add_data_args(p: argparse.ArgumentParser) -> None:
    """--data_path, --dataset and the shared --workers, --batch_size, --imsize."""
    g = p.add_argument_group("data")
    g.add_argument("--data_path", default=None, help="dataset root (train/ and val/ class folders) or image folder")
    g.add_argument("--dataset", default=None, help="'folder' (default with --data_path), 'digits' (embedded), 'cifar100'")
    add_shared(g, "workers", "batch_size", "image_size")


def add_inference_args(p: argparse.ArgumentParser) -> None:
    """How a forward-only command runs: --device / --ngpus, --amp, --channels_last, --on_bad_image, --no_progress."""
    g = p.add_argument_group("inference")
    add_shared(g, "device")
    g.add_argument("--ngpus", type=int, default=None, help="original flag: 0 = CPU, >= 1 = CUDA")
    add_shared(g, "amp")
    g.add_argument("--channels_last", choices=["auto", "on", "off"], default="auto",
                   help="NHWC activations and weights (auto: on; NCHW for a model that refuses it)")
    g.add_argument("--on_bad_image", choices=["skip", "error"], default="error",
                   help="an unreadable image stops the run (default), or is left out of every count and output "
                        "row and listed in skipped.txt")
    g.add_argument("--no_progress", action="store_true", help="no progress bar")


def resolve_device(args) -> "torch.device":  # noqa: F821
    """--device, or the original --ngpus (0 = CPU), through the engine's one resolver."""
    from ..engine.distributed import resolve_device as resolve

    name = args.device
    if name is None and getattr(args, "ngpus", None) is not None:
        name = "cpu" if args.ngpus == 0 else "cuda"
    return resolve(name)


def channels_last_flag(args) -> bool | None:
    """--channels_last: on / off; auto = None: the inference runner's one rule (``engine.inference``)."""
    return {"on": True, "off": False}.get(args.channels_last)


def progress_enabled(args) -> bool:
    return not args.no_progress


@contextlib.contextmanager
def output_folder(out: Path | None):
    """Checks ``out`` up front; if the command then fails, a folder it created and left empty is removed."""
    created = ensure_writable_dir(out) if out is not None else False
    try:
        yield out
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only succeeds when empty
        raise


def report_skipped(skipped: list, out: Path | None) -> None:
    """One line about the unreadable images left out (``--on_bad_image skip``); where they are listed."""
    if not skipped:
        return
    where = (f"listed in {out / 'skipped.txt'}" if out is not None
             else "e.g. " + ", ".join(u.path for u in skipped[:3]) + (", ..." if len(skipped) > 3 else ""))
    print(f"skipped {len(skipped)} unreadable image{'s' if len(skipped) != 1 else ''} (in no count): {where}")
