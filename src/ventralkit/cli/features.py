"""``ventralkit features``: activations of any set of modules, every time step, in one batched pass.

    ventralkit features --model S --layers V1.output V4.output IT.output --data_path IMGS -o OUT
    ventralkit features --model S --layers V4.output --time_steps 0 3 --data_path IMGS -o OUT --format hdf5
    ventralkit features --model Z --ckpt_path RUN/checkpoints/best.pt --data_path IMGS -o OUT

Writes ``<layer>-t<k>.npy`` per layer and time step (N x D float32, rows in sorted file order;
for one layer and one time step of a CORnet also ``CORnet-<model>_<area>_<sublayer>_feats.npy``),
or one ``features.h5`` (``--format hdf5``) with a dataset per name; plus ``images.txt`` (the image
of each row) and ``features.json`` (model, layers, time steps, shapes, preprocessing). With
``--on_bad_image skip`` an unreadable image has no row; it is listed in ``skipped.txt`` and
``features.json``. A folder holding an earlier run's features is refused; ``--overwrite`` replaces them.
Default layers: the model's brain-area commitments (``ventralkit models`` lists them); ``--areas FILE``: the
layer x time step a commitment file (``ventralkit neural --commit``'s commitment.json) names for each area.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import add_data_args, add_inference_args, add_model_args


def register(sub) -> None:
    p = sub.add_parser("features", help="extract features of an image folder (any layers, every time step)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p, inference=True)
    add_data_args(p)
    add_inference_args(p)
    g = p.add_argument_group("features")
    g.add_argument("-o", "--output_path", required=True, help="folder for the feature files (created if needed)")
    g.add_argument("--layers", nargs="+", default=None, metavar="MODULE",
                   help="module names, e.g. V1.output V4.output (default: the model's areas)")
    g.add_argument("--time_steps", "--time_step", dest="time_steps", type=int, nargs="+", default=None,
                   metavar="K", help="which calls of recurrent modules, 0 = first, -1 = last (default: all)")
    g.add_argument("--areas", nargs="+", default=None, metavar="FILE",
                   help="commitment file(s) (`neural --commit` writes commitment.json): extract each area's committed "
                        "layer at its committed time step")
    g.add_argument("--format", choices=["npy", "hdf5"], default="npy")
    g.add_argument("--transform", choices=["square", "center"], default=None,
                   help="square Resize((s, s)) as CORnet run.py test (default for registered models) or Resize + "
                        "CenterCrop (default for torchvision/timm/file models: their weights' own resize and crop)")
    g.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="stored precision")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the features of an earlier run in -o (its files are removed once this run is done)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis.features import claim_output_dir, default_transform, extract_features
    from ..errors import ConfigError
    from .common import amp_mode, channels_last_flag, load_model_from_args, output_folder, resolve_device

    from ..engine.ranks import world_size

    if world_size() > 1:  # under torchrun: each rank a share of the images, rank 0 writes the files
        return _run_ranks(args)
    device = resolve_device(args)
    if args.dataset and args.dataset != "folder":
        raise ConfigError("features are extracted from image files: give --data_path (a folder of images)")
    if not args.data_path:
        raise ConfigError("--data_path is required: a folder of images")
    out = Path(args.output_path)
    commitments = _read_areas(args)  # checked before anything is written or loaded
    claim_output_dir(out, args.overwrite)  # before the model is loaded; extract_features checks again
    with output_folder(out):
        loaded = load_model_from_args(args)
        model = loaded.model
        args.transform = args.transform or default_transform(model)  # a torchvision/timm model: its weights' crop
        size = loaded.image_size  # --imsize, else the checkpoint's training size, else the model's
        steps = args.time_steps
        layers, steps = _committed_layers(commitments, model, loaded.name) if commitments else (args.layers, steps)
        feats = extract_features(
            model, args.data_path, layers=layers, time_steps=steps[0] if isinstance(steps, list) and len(steps) == 1
            else steps,
            batch_size=args.batch_size or 64, workers=args.workers, image_size=size, transform=args.transform,
            device=device, output_dir=out, format=args.format, progress=not args.no_progress,
            channels_last=channels_last_flag(args), amp=amp_mode(args), dtype=args.dtype,
            on_bad_image=args.on_bad_image, overwrite=args.overwrite,
        )
    _print_summary(loaded.name, size, args.transform, feats, out)
    return 0


def _print_summary(name: str, size: int, transform: str, feats, out: Path) -> None:
    from .common import report_skipped

    n = next(iter(feats.values())).shape[0]
    print(f"{name}: {n} images, {len(feats)} arrays ({size} px, {transform} resize)")
    for key, arr in feats.items():
        print(f"  {key}: {arr.shape[1]} features")
    report_skipped(feats.skipped, out)
    files = json.loads((out / "features.json").read_text())["files"]
    extra = ["skipped.txt"] if feats.skipped else []
    print("wrote " + ", ".join(str(out / f) for f in files + ["images.txt", "features.json"] + extra))


def _run_ranks(args) -> int:
    """``torchrun ... -m ventralkit.cli features``: the checks and the model on every rank (one line from rank 0 for
    a mistake), rank 0's weights everywhere, then ``analysis.features_ranks``; rank 0 prints the summary."""
    from ..analysis.features import default_transform
    from ..analysis.features_ranks import extract_features_ranks
    from ..engine.distributed import rank_device
    from ..engine.ranks import agree, broadcast_weights, run_on_ranks
    from .common import amp_mode, channels_last_flag, load_model_from_args, resolve_device

    def prepare():
        from ..errors import ConfigError

        device = rank_device(resolve_device(args))
        if args.dataset and args.dataset != "folder":
            raise ConfigError("features are extracted from image files: give --data_path (a folder of images)")
        if not args.data_path:
            raise ConfigError("--data_path is required: a folder of images")
        commitments = _read_areas(args)
        loaded = load_model_from_args(args)
        args.transform = args.transform or default_transform(loaded.model)
        layers, steps = (_committed_layers(commitments, loaded.model, loaded.name) if commitments
                         else (args.layers, args.time_steps))
        return device, loaded, layers, steps[0] if isinstance(steps, list) and len(steps) == 1 else steps

    def body(info) -> int:
        device, loaded, layers, steps = agree(prepare, info, "loading the model")
        broadcast_weights(loaded.model)
        feats = extract_features_ranks(
            loaded.model, args.data_path, args.output_path, info, overwrite=args.overwrite,
            batch_size=args.batch_size or 64, progress=not args.no_progress, layers=layers, time_steps=steps,
            workers=args.workers, image_size=loaded.image_size, transform=args.transform, device=device,
            format=args.format, channels_last=channels_last_flag(args), amp=amp_mode(args), dtype=args.dtype,
            on_bad_image=args.on_bad_image)
        if info.is_main:
            _print_summary(loaded.name, loaded.image_size, args.transform, feats, Path(args.output_path))
        return 0

    return run_on_ranks(body)


def _read_areas(args):
    """--areas: the commitment file(s), read and checked (their layers are checked once the model is loaded)."""
    from ..errors import ConfigError
    from ..models.commitment_file import read_commitments

    if not args.areas:
        return None
    if args.layers or args.time_steps is not None:
        raise ConfigError("give --areas FILE or --layers / --time_steps, not both: the commitment file names the "
                          "layers and time steps")
    return read_commitments(args.areas)


def _committed_layers(commitments, model, name: str) -> tuple[list[str], dict[str, list[int]]]:
    """The committed modules and, per module, the committed time steps (-1: the last), each module checked to exist."""
    from ..models.commitment_file import check_modules, check_steps
    from ..models.commitments import area_commitments

    check_modules(commitments, (n for n, _ in model.named_modules()), f"model {name}")
    check_steps(commitments, {c.module: len(c.time_steps) for c in area_commitments(model).values()}, f"model {name}")
    steps: dict[str, list[int]] = {}
    for c in commitments.areas.values():
        steps.setdefault(c.module, []).extend(c.time_steps)
    return list(steps), steps
