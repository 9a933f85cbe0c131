"""``ventralkit train``: the CORnet run.py flags as written, plus recipes, config files and resume.

    ventralkit train --model S --workers 20 --ngpus 1 --step_size 20 --epochs 43 --lr .1 \\
        --data_path DIR --output_path DIR
    ventralkit train --recipe v1-imagenet --model v1_resnet50_composite_a --data_path DIR
    ventralkit train --resume RUN/checkpoints/last.pt
    torchrun --nproc_per_node 4 -m ventralkit.cli train ...      (DistributedDataParallel)
"""

from __future__ import annotations

import argparse

from .common import add_data_args, add_model_args, add_shared, model_kwargs, model_name


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model (CORnet run.py flags accepted)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    add_data_args(p)
    g = p.add_argument_group("run")
    g.add_argument("--recipe", default=None, help="named recipe (see `ventralkit train --list_recipes`) or a .toml file")
    g.add_argument("--config", default=None, help="a run folder / config.json to repeat, or a TOML file")
    g.add_argument("-o", "--output_path", default=None, help="run folder (default runs/<model>-<time>)")
    g.add_argument("--resume", "--restore_path", dest="resume", default=None, metavar="LAST_PT|auto",
                   help="continue an interrupted run from its checkpoints/last.pt; 'auto': from -o's last.pt when "
                        "there is one, else start (a requeued job reruns the same command)")
    g.add_argument("--overwrite", action="store_true", default=None,
                   help="replace the run already in --output_path (default: refuse to mix two runs)")
    g.add_argument("--list_recipes", action="store_true", help="print the named recipes and exit")
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int, default=None)
    o.add_argument("--lr", "--learning_rate", dest="lr", type=float, default=None)
    o.add_argument("--optimizer", default=None, choices=["sgd", "adam", "adamw"])
    o.add_argument("--momentum", type=float, default=None)
    o.add_argument("--weight_decay", type=float, default=None)
    o.add_argument("--scheduler", default=None, choices=["step", "multistep", "cosine", "onecycle", "constant"])
    o.add_argument("--pct_start", type=float, default=None, help="onecycle: fraction of steps warming up (0.3)")
    o.add_argument("--clip_grad_value", type=float, default=None, help="clamp gradients to [-v, v]")
    o.add_argument("--clip_grad_norm", type=float, default=None, help="clip the gradients' total L2 norm")
    o.add_argument("--step_size", type=float, default=None, help="epochs between x0.1 decays (StepLR)")
    o.add_argument("--gamma", type=float, default=None)
    o.add_argument("--milestones", type=float, nargs="+", default=None, help="MultiStepLR epochs")
    o.add_argument("--warmup_epochs", type=float, default=None)
    o.add_argument("--label_smoothing", type=float, default=None)
    o.add_argument("--mixup_alpha", type=float, default=None)
    o.add_argument("--cutmix_alpha", type=float, default=None)
    o.add_argument("--trainable", nargs="+", default=None, help="train only these modules (e.g. fc)")
    o.add_argument("--frozen_bn", default=None, choices=["eval", "train"],
                   help="with --trainable: frozen BatchNorms keep their statistics (eval, default) or update "
                        "them as main.py's fine-tuning does (train)")
    o.add_argument("--augment", default=None, choices=["crop_flip", "flip", "none"],
                   help="training augmentation of image folders: RandomResizedCrop + flip (default), flip only "
                        "at native size, or none")
    o.add_argument("--eval_transform", default=None, choices=["resize_crop", "none"],
                   help="validation preprocessing: Resize + CenterCrop (default) or the images as they are")
    o.add_argument("--reset_classifier", action="store_true", default=None,
                   help="after loading --ckpt_path, a fresh classifier of --num_classes")
    o.add_argument("--no-pretrained", "--no_pretrained", dest="no_pretrained", action="store_true",
                   help="start from random weights although the recipe loads published ones")
    o.add_argument("--on_nonfinite", default=None, choices=["stop", "skip"],
                   help="a non-finite loss or gradient: stop the run (default, exit code 3) or drop that step")
    s = p.add_argument_group("speed and bookkeeping")
    s.add_argument("--ngpus", type=int, default=None, help="0 = CPU, >=1 = CUDA (several GPUs: use torchrun)")
    add_shared(s, "device", "amp")
    s.add_argument("--channels_last", action="store_true", default=None)
    s.add_argument("--sync_bn", action="store_true", default=None,
                   help="under torchrun on GPUs: BatchNorm statistics over all processes (small per-GPU batches)")
    s.add_argument("--compile", action="store_true", default=None)
    s.add_argument("--data_backend", default=None, choices=["cpu", "gpu"],
                   help="image folders: decode JPEGs and crop/flip in CPU workers (cpu, default) or on the "
                        "training device (gpu; workers only read the files)")
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--log_every", type=int, default=None, help="steps between train records")
    s.add_argument("--val_every", type=float, default=None, help="epochs between validations (0.5 = twice)")
    s.add_argument("--save_every_minutes", type=float, default=None)
    s.add_argument("--keep_epochs", type=int, default=None, help="epoch snapshots kept (-1 all, 0 none)")
    s.add_argument("--max_steps_per_epoch", type=int, default=None)
    s.add_argument("--on_bad_image", default=None, choices=["skip", "error"])
    s.add_argument("--tensorboard", action="store_true", default=None)
    s.add_argument("--no_progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def config_from_args(args):
    """Defaults < recipe < --config < explicit flags; ``--resume`` alone repeats the checkpoint's config."""
    from ..engine.config import PER_COMMAND, TrainConfig
    from ..errors import ConfigError

    flags = {k: getattr(args, k) for k in (
        "num_classes", "data_path", "dataset", "workers", "batch_size", "image_size", "output_path", "resume",
        "epochs", "lr", "optimizer", "momentum", "weight_decay", "scheduler", "step_size", "gamma", "milestones",
        "warmup_epochs", "pct_start", "clip_grad_value", "clip_grad_norm", "label_smoothing", "mixup_alpha",
        "cutmix_alpha", "trainable", "reset_classifier",
        "frozen_bn", "augment", "eval_transform",
        "device", "amp", "channels_last", "compile", "seed", "log_every", "val_every", "save_every_minutes",
        "keep_epochs", "max_steps_per_epoch", "on_bad_image", "tensorboard", "overwrite", "on_nonfinite",
        "sync_bn", "data_backend")}
    if args.model:
        flags["model"] = model_name(args.model)
    if args.ckpt_path:
        flags["checkpoint"] = args.ckpt_path
    if args.pretrained and args.no_pretrained:
        raise ConfigError("give --pretrained or --no-pretrained, not both")
    if args.pretrained:
        flags["pretrained"] = True
    if args.no_pretrained:
        flags["pretrained"] = False
    if args.trust_checkpoint:
        flags["trust_checkpoint"] = True
    if args.no_progress:
        flags["progress"] = False
    if args.ngpus is not None and args.device is None:
        flags["device"] = "cpu" if args.ngpus == 0 else "cuda"
        if args.ngpus > 1:
            print("note: --ngpus > 1 runs on one GPU; use `torchrun --nproc_per_node N -m ventralkit.cli train` for DDP")
    config_file = args.config
    if args.resume and args.resume != "auto" and not args.config and not args.recipe:
        from ..engine.checkpoint import read_resume

        base = read_resume(args.resume, trust=args.trust_checkpoint)["config"]
        base.pop("output_path", None)  # the run folder is where the checkpoint is
        for key in PER_COMMAND:  # the stored run's permission is not this command's
            base.pop(key, None)
        base.update({k: v for k, v in flags.items() if v is not None})
        base["resume"] = args.resume
        cfg = TrainConfig.from_dict(base, source=args.resume)
    else:
        cfg = TrainConfig.build(recipe=args.recipe, config_file=config_file, **flags)
    kw = model_kwargs(args)
    if kw:
        cfg = cfg.replace(model_kwargs={**cfg.model_kwargs, **kw})
    if cfg.model is None:
        raise ConfigError("--model is required")
    return cfg


def run(args) -> int:
    if args.list_recipes:
        from ..engine.config import recipe_table

        print(recipe_table())
        return 0
    from ..engine.train import train

    train(config_from_args(args).validate())
    return 0
