"""``ventralkit behaviour``: do the model's errors look like the subjects'? i1n, i2n, error consistency, shape bias.

    ventralkit behaviour --model NAME [--ckpt_path F] --data_path IMGS --trials trials.csv -o OUT
    ventralkit behaviour --ckpt_path F --data_path IMGS --trials trials.csv --label_map map.csv -o OUT
    ventralkit behaviour --model cornet_z --data_path IMGS --trials trials.csv --readout_images TRAIN \\
        [--readout_layer decoder.avgpool] --metrics i1n i2n error_consistency shape_bias -o OUT

--trials: CSV with stimulus,subject,truth,choice and optional distractor (two-way tasks), cue_shape,cue_texture
(cue-conflict images), condition. Stimuli are matched to the images of --data_path by file name.
The model decides with its own classifier (its class names, or --label_map: CSV class,label) or with a
logistic-regression read-out of a layer fitted on --readout_images (class folders named by the task's labels).
Writes OUT/scores.csv (metric,score,ci_low,ci_high,ceiling,ceiled), OUT/per_image.csv, OUT/per_subject.csv,
OUT/run.json and OUT/plots/ (image_scatter.png, error_consistency.png, shape_bias.png). See docs/behaviour.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    from ..analysis.behaviour.metrics import METRICS
    from .common import add_inference_args, add_model_args, add_shared, non_negative_int, positive_int

    p = sub.add_parser("behaviour", help="behaviour vs subjects' trials: i1n/i2n, error consistency, shape bias",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("behaviour")
    g.add_argument("--trials", required=True, metavar="CSV", help="the subjects' trials (see above)")
    g.add_argument("--data_path", required=True, metavar="IMGS", help="folder of the stimulus images")
    g.add_argument("--labels", default=None, metavar="FILE",
                   help="the task's labels, one per line (default: every truth, distractor and cue label)")
    g.add_argument("--label_map", default=None, metavar="CSV",
                   help="class,label rows mapping the model's classes (index or name) onto the task's labels")
    g.add_argument("--readout_images", default=None, metavar="DIR",
                   help="fit a logistic-regression read-out on these images (one folder per task label)")
    g.add_argument("--readout_layer", default=None, metavar="MODULE",
                   help="layer of the read-out (default: the model's decoder commitment, CORnet: decoder.avgpool)")
    g.add_argument("--metrics", nargs="+", choices=list(METRICS), default=None, metavar="METRIC",
                   help=f"any of {', '.join(METRICS)} (default: every one the trials support)")
    g.add_argument("--splits", type=positive_int, default=2,
                   help="split halves for i1n, i2n and confusion (default 2, as Brain-Score)")
    g.add_argument("--seed", type=int, default=0, help="random state of the split halves and the bootstrap "
                   "(default 0, Brain-Score's)")
    g.add_argument("--bootstrap", type=non_negative_int, default=1000,
                   help="bootstrap draws for the 95%% intervals (default 1000; 0: none)")
    c = g.add_mutually_exclusive_group()
    c.add_argument("--ceiling", dest="ceiling", action="store_const", const=True, default=None,
                   help="require the error-consistency ceiling (an error with one subject); default: when possible")
    c.add_argument("--no_ceiling", dest="ceiling", action="store_const", const=False, help="skip the ceilings")
    g.add_argument("-o", "--output_path", required=True, help="output folder (created if needed)")
    g.add_argument("--no_figure", action="store_true", help="skip the figures in OUT/plots")
    add_model_args(p, inference=True)
    d = p.add_argument_group("data")
    add_shared(d, "workers", "batch_size", "image_size")
    add_inference_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis.behaviour.fit import resolve_metrics, score_decisions
    from ..analysis.behaviour.report import write_all
    from ..analysis.behaviour.trials import read_trials
    from ..analysis.neural.io import read_lines
    from ..files import ensure_writable_dir

    out = _output_folder(args)
    if args.on_bad_image == "skip":
        raise _config("--on_bad_image skip: every stimulus of the trials needs the model's decision; fix or remove "
                      "the unreadable images (and their trials) instead")
    labels = read_lines(args.labels, "--labels") if args.labels else None
    trials = read_trials(args.trials, labels=labels)  # everything is read and checked before OUT is created
    names = resolve_metrics(args.metrics, trials, args.ceiling)
    decisions = _decisions(args, trials)
    result = score_decisions(trials, decisions, names, splits=args.splits, seed=args.seed, draws=args.bootstrap,
                             ceiling=args.ceiling is not False, progress=not args.no_progress)
    ensure_writable_dir(out)
    files = write_all(result, out, inputs=_inputs(args), figures=not args.no_figure,
                      title=f"model: {args.model or args.ckpt_path}")
    print(result.table())
    print("wrote " + ", ".join(str(p) for p in files))
    return 0


def _config(message: str):
    from ..errors import ConfigError

    return ConfigError(message)


def _output_folder(args) -> Path:
    out = Path(args.output_path)
    if out.exists() and not out.is_dir():
        raise _config(f"-o {out} is a file; give a folder")
    return out


def _decisions(args, trials):
    """The model's choice probabilities for the stimuli (its classifier or a read-out), before OUT exists."""
    from ..analysis.behaviour.run_model import decide, stimulus_paths
    from .common import amp_mode, channels_last_flag, load_model_from_args, resolve_device

    stimulus_paths(trials, args.data_path)  # stimuli absent from the folder: said before the model loads
    loaded = load_model_from_args(args)
    return decide(loaded, trials, args.data_path, label_map=args.label_map, readout_layer=args.readout_layer,
                  readout_images=args.readout_images, device=resolve_device(args), batch_size=args.batch_size or 64,
                  workers=args.workers, amp=amp_mode(args), channels_last=channels_last_flag(args),
                  progress=not args.no_progress)


def _inputs(args) -> dict:
    resolved = lambda p: p and str(Path(p).resolve())  # noqa: E731
    return {"trials": resolved(args.trials), "data_path": resolved(args.data_path), "labels": resolved(args.labels),
            "label_map": resolved(args.label_map), "readout_images": resolved(args.readout_images),
            "readout_layer": args.readout_layer, "model": args.model, "ckpt_path": resolved(args.ckpt_path)}
