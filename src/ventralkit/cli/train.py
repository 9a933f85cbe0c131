"""``ventralkit train``: the CORnet run.py flags as written, plus recipes, config files and resume.

    ventralkit train --model S --workers 20 --ngpus 1 --step_size 20 --epochs 43 --lr .1 \\
        --data_path DIR --output_path DIR
    ventralkit train --recipe v1-imagenet --model v1_resnet50_composite_a --data_path DIR
    ventralkit train --resume RUN/checkpoints/last.pt
    torchrun --nproc_per_node 4 -m ventralkit.cli train ...      (DistributedDataParallel)
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing

from .common import add_data_args, add_model_args, add_shared, model_kwargs, model_name


def register(sub) -> None:
    from ..engine.config import OPTIMISATION, RUN, SPEED

    p = sub.add_parser("train", help="train a model (CORnet run.py flags accepted)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    add_data_args(p)
    groups = {title: p.add_argument_group(title) for title in (RUN, OPTIMISATION, SPEED)}
    add_config_options(groups)
    # the options that are no TrainConfig field: where the config comes from, and CORnet's --ngpus
    groups[RUN].add_argument("--config", default=None, help="a run folder / config.json to repeat, or a TOML file")
    groups[RUN].add_argument("--list_recipes", action="store_true", help="print the named recipes and exit")
    groups[SPEED].add_argument("--ngpus", type=int, default=None,
                               help="0 = CPU, >=1 = CUDA (several GPUs: use torchrun)")
    add_shared(groups[SPEED], "device", "amp")
    p.set_defaults(func=run)


def add_config_options(groups: dict) -> None:
    """One option per ``TrainConfig`` field that has one of its own, generated from the field's metadata
    (``engine.config.option``): flags, type (from the annotation), choices, help and section. Options shared
    with other commands (``shared``) are declared by ``cli/common.py``. Every default is None, "not given",
    so that a recipe or a config file below the flags keeps its value."""
    from ..engine.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        meta, group = f.metadata, groups[f.metadata["group"]]
        if meta["negative"]:  # --no_progress, --no-pretrained
            group.add_argument(*meta["negative"], dest=f"no_{f.name}", action="store_true", help=meta["negative_help"])
        if meta["shared"] or meta["flags"] == ():
            continue
        group.add_argument(*(meta["flags"] or (f"--{f.name}",)), dest=f.name, default=None, help=meta["help"],
                           **argument_kind(hints[f.name], meta))


def argument_kind(hint, meta) -> dict:
    """How argparse reads a field's value: a switch for a bool, a list of ``item_type``, else the type itself."""
    if isinstance(hint, types.UnionType):  # ``int | None``: the value's type
        hint = next(t for t in typing.get_args(hint) if t is not type(None))
    if hint is bool:
        return {"action": "store_true"}
    if hint is list:
        return {"type": meta["item_type"], "nargs": "+"}
    kind = {} if hint is str else {"type": hint}
    if meta["choices"]:
        kind["choices"] = list(meta["choices"])
    if meta["metavar"]:
        kind["metavar"] = meta["metavar"]
    return kind


def given_options(args: argparse.Namespace) -> dict:
    """The ``TrainConfig`` values the command line gives (None where an option was not given)."""
    from ..engine.config import TrainConfig
    from ..errors import ConfigError

    given = {}
    for f in dataclasses.fields(TrainConfig):
        meta = f.metadata
        dest = meta["shared"] or (None if meta["flags"] == () else f.name)
        value = getattr(args, dest, None) if dest else None
        if value is False:  # a switch of cli/common.py (default False) that was not given
            value = None
        if meta["negative"] and getattr(args, f"no_{f.name}", False):
            if value:
                raise ConfigError(f"give --{f.name} or {meta['negative'][0]}, not both")
            value = False
        given[f.name] = value
    if given["model"]:
        given["model"] = model_name(given["model"])
    return given


def config_from_args(args):
    """Defaults < recipe < --config < explicit flags; ``--resume`` alone repeats the checkpoint's config."""
    return config_and_checkpoint(args)[0]


def config_and_checkpoint(args) -> tuple:
    """The run's config and, when ``--resume`` alone repeats a checkpoint's config (no ``--config`` or
    ``--recipe``), that checkpoint, read here once: the engine resumes from the same dict."""
    from ..engine.checkpoint import read_resume
    from ..engine.config import PER_COMMAND, TrainConfig
    from ..errors import ConfigError

    flags = given_options(args)
    recipe = flags.pop("recipe")
    if args.ngpus is not None and args.device is None:
        flags["device"] = "cpu" if args.ngpus == 0 else "cuda"
        if args.ngpus > 1:
            print("note: --ngpus > 1 runs on one GPU; use `torchrun --nproc_per_node N -m ventralkit.cli train` for DDP")
    state = None
    if args.resume and args.resume != "auto" and not args.config and not recipe:
        state = read_resume(args.resume, trust=args.trust_checkpoint)
        base = dict(state["config"])
        base.pop("output_path", None)  # the run folder is where the checkpoint is
        for key in PER_COMMAND:  # the stored run's permission is not this command's
            base.pop(key, None)
        base.update({k: v for k, v in flags.items() if v is not None})
        base["resume"] = args.resume
        cfg = TrainConfig.from_dict(base, source=args.resume)
    else:
        cfg = TrainConfig.build(recipe=recipe, config_file=args.config, **flags)
    kw = model_kwargs(args)
    if kw:
        cfg = cfg.replace(model_kwargs={**cfg.model_kwargs, **kw})
    if cfg.model is None:
        raise ConfigError("--model is required")
    from ..models.sources import refuse_unnamed_code

    refuse_unnamed_code(cfg.model, flags.get("model"), args.resume or args.config or recipe or "the config")
    return cfg, state


def run(args) -> int:
    if args.list_recipes:
        from ..engine.config import recipe_table

        print(recipe_table())
        return 0
    from ..engine.train import train
    from ..plots.curves import draw_run_curves

    cfg, state = config_and_checkpoint(args)  # a --resume checkpoint is read once: its config, then its state
    result = train(cfg, resume_state=state)  # the config is validated once, by train
    if result is not None:  # None: a staged run whose stages had all finished
        draw_run_curves(result.trained)
    return 0
