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
Default layers: the model's brain-area commitments (``ventralkit models`` lists them).
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
    g.add_argument("--format", choices=["npy", "hdf5"], default="npy")
    g.add_argument("--transform", choices=["square", "center"], default="square",
                   help="square Resize((s, s)) as CORnet run.py test (default) or Resize + CenterCrop")
    g.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="stored precision")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the features of an earlier run in -o (its files are removed once this run is done)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis.features import claim_output_dir, extract_features
    from ..errors import ConfigError
    from .common import (amp_mode, channels_last_flag, load_model_from_args, output_folder, report_skipped,
                         resolve_device)

    device = resolve_device(args)
    if args.dataset and args.dataset != "folder":
        raise ConfigError("features are extracted from image files: give --data_path (a folder of images)")
    if not args.data_path:
        raise ConfigError("--data_path is required: a folder of images")
    out = Path(args.output_path)
    claim_output_dir(out, args.overwrite)  # before the model is loaded; extract_features checks again
    with output_folder(out):
        loaded = load_model_from_args(args)
        model = loaded.model
        size = loaded.image_size  # --imsize, else the checkpoint's training size, else the model's
        steps = args.time_steps
        feats = extract_features(
            model, args.data_path, layers=args.layers, time_steps=steps[0] if steps and len(steps) == 1 else steps,
            batch_size=args.batch_size or 64, workers=args.workers, image_size=size, transform=args.transform,
            device=device, output_dir=out, format=args.format, progress=not args.no_progress,
            channels_last=channels_last_flag(args), amp=amp_mode(args), dtype=args.dtype,
            on_bad_image=args.on_bad_image, overwrite=args.overwrite,
        )
    n = next(iter(feats.values())).shape[0]
    print(f"{loaded.name}: {n} images, {len(feats)} arrays ({size} px, {args.transform} resize)")
    for name, arr in feats.items():
        print(f"  {name}: {arr.shape[1]} features")
    report_skipped(feats.skipped, out)
    files = json.loads((out / "features.json").read_text())["files"]
    extra = ["skipped.txt"] if feats.skipped else []
    print("wrote " + ", ".join(str(out / f) for f in files + ["images.txt", "features.json"] + extra))
    return 0
