"""Flags shared by several commands, with the original CORnet names accepted as written."""

from __future__ import annotations

import argparse
import json
import math

from ..errors import ConfigError

from ..models.registry import canonical_name as model_name  # CORnet's --model letters -> registered names


def add_model_args(p: argparse.ArgumentParser, default: str | None = "Z") -> None:
    """--model, --num_classes, --ckpt_path, --pretrained and the per-family model options."""
    g = p.add_argument_group("model")
    g.add_argument("--model", default=default, help="registered name or CORnet letter Z|R|RT|S|S100")
    g.add_argument("--num_classes", type=int, default=None, help="classifier outputs (default: the model's)")
    g.add_argument("--ckpt_path", "--checkpoint", dest="ckpt_path", default=None,
                   help="weights: an original checkpoint, a state dict or a ventralkit checkpoint")
    g.add_argument("--pretrained", action="store_true",
                   help="load the original published weights from the weights folder ($VENTRALKIT_WEIGHTS)")
    g.add_argument("--times", type=int, default=None, help="time steps of CORnet-R/RT (original default 5)")
    g.add_argument("--outer_times", type=int, default=None, help="CORnet-S100 passes over V1-V4 (1 = no feedback)")
    g.add_argument("--feedback", choices=["replace", "additive"], default=None, help="CORnet-S100 feedback design")
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


def build_model_from_args(args: argparse.Namespace):
    """create_model from the shared model flags (a one-line error for a bad name or checkpoint)."""
    from ..models import create_model

    if args.pretrained and args.ckpt_path:
        raise ConfigError("give --pretrained or --ckpt_path, not both")
    try:
        return create_model(
            model_name(args.model),
            num_classes=args.num_classes,
            checkpoint=args.ckpt_path,
            pretrained=args.pretrained,
            **model_kwargs(args),
        )
    except TypeError as err:
        raise ConfigError(f"--model {args.model}: {err}") from None


def add_data_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data_path", default=None, help="dataset root (train/ and val/ class folders) or image folder")
    g.add_argument("--dataset", default=None, help="'folder' (default with --data_path), 'digits' (embedded), 'cifar100'")
    g.add_argument("-j", "--workers", type=int, default=None, help="DataLoader worker processes")
    g.add_argument("--batch_size", type=int, default=None)
    g.add_argument("--imsize", "--image_size", dest="image_size", type=int, default=None,
                   help="input size in pixels (default: the model's)")


def positive_int(value: str) -> int:
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {v}")
    return v


def positive_float(value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {value}")
    return v
