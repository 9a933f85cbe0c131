"""Flags shared by several commands, with the original CORnet names accepted as written."""

from __future__ import annotations

import argparse
import json
import math

from ..errors import ConfigError

from ..models.registry import canonical_name as model_name  # CORnet's --model letters -> registered names


def add_model_args(p: argparse.ArgumentParser, default: str | None = "Z", inference: bool = False) -> None:
    """--model, --num_classes, --ckpt_path, --pretrained, --trust_checkpoint and the per-family model options.

    ``inference``: a command that needs trained weights, so ``--random_init`` asks for none (the default
    is the published weights, as CORnet's ``run.py test``)."""
    g = p.add_argument_group("model")
    g.add_argument("--model", default=default, help="registered name or CORnet letter Z|R|RT|S|S100")
    g.add_argument("--num_classes", type=positive_int, default=None,
                   help="classifier outputs (default: the checkpoint's, else the model's)")
    g.add_argument("--ckpt_path", "--checkpoint", dest="ckpt_path", default=None,
                   help="weights: an original checkpoint, a state dict or a ventralkit checkpoint")
    g.add_argument("--pretrained", action="store_true",
                   help="load the original published weights from the weights folder ($VENTRALKIT_WEIGHTS)")
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

    Weights: ``--ckpt_path``, ``--pretrained``, ``--random_init``; with none of them, the published
    weights where the model has them (as CORnet's ``run.py test``), else a one-line error. A ventralkit
    checkpoint supplies the model, its options, class count, class names and image size."""
    from ..errors import CheckpointError
    from ..models.loading import load_model
    from ..models.registry import model_info

    random_init = getattr(args, "random_init", False)
    given = [f for f, on in (("--ckpt_path", args.ckpt_path), ("--pretrained", args.pretrained),
                             ("--random_init", random_init)) if on]
    if len(given) > 1:
        raise ConfigError(f"give one of {' / '.join(given)}, not both")
    name = model_name(args.model) if args.model else None
    pretrained, implied = args.pretrained, False
    if not given:
        name = name or "cornet_z"  # the original run.py default
        if model_info(name).weights is None:
            raise ConfigError(f"{name} has no published weights; pass --ckpt_path FILE "
                              "(or --random_init for untrained weights)")
        pretrained = implied = True
    try:
        return load_model(name, checkpoint=args.ckpt_path, pretrained=pretrained, num_classes=args.num_classes,
                          model_kwargs=model_kwargs(args), trust=args.trust_checkpoint)
    except CheckpointError as err:
        if implied:
            raise CheckpointError(f"{err} (the published weights are the default; pass --ckpt_path FILE, or "
                                  "--random_init for untrained weights)") from None
        raise


def add_data_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data_path", default=None, help="dataset root (train/ and val/ class folders) or image folder")
    g.add_argument("--dataset", default=None, help="'folder' (default with --data_path), 'digits' (embedded), 'cifar100'")
    g.add_argument("-j", "--workers", type=int, default=None, help="DataLoader worker processes")
    g.add_argument("--batch_size", type=int, default=None)
    g.add_argument("--imsize", "--image_size", dest="image_size", type=image_size_arg, default=None,
                   help="input size in pixels (default: the checkpoint's training size, else the model's)")


def positive_int(value: str) -> int:
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {v}")
    return v


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
