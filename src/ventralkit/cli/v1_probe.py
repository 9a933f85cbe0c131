"""``ventralkit v1-probe``: in-silico V1 electrophysiology on one layer, scored against monkey V1.

Probe a model:   ventralkit v1-probe --model S --ckpt_path cornet_s.pth -o runs/v1_cornet_s
Compare runs:    ventralkit v1-probe --compare runs/v1_cornet_s runs/v1_resnet -o runs/v1_compare
Both at once:    ventralkit v1-probe --model Z -o runs/v1_z --compare runs/v1_cornet_s
"""

from __future__ import annotations

import argparse

from ..errors import ConfigError
from .common import add_model_args, add_shared, positive_float, positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "v1-probe",
        help="grating experiments on a layer's units; V1 property distributions vs monkey data",
        description="Show the Marques et al. (2021) grating sets (orientation, spatial frequency, size, plus a "
                    "contrast series) to one layer of a model, compute per-unit tuning properties and score their "
                    "distributions against monkey V1. Writes units.csv, summary.csv/.txt, run.json, curves.npz "
                    "and figures/ into -o. With --compare, prints one table over several earlier output folders "
                    "(and this run, if --model is given). Gratings are drawn only below the input's Nyquist "
                    "frequency, imsize / (2 x visual_degrees) cycles/deg.",
    )
    add_model_args(p, inference=True)
    g = p.add_argument_group("probe")
    g.add_argument("--layer", default=None,
                   help="module name (e.g. V1.output, layer1) or area name (V1); default: the model's V1 commitment")
    g.add_argument("--time_step", type=int, default=-1,
                   help="which call of a recurrent module to record: 0 = first, -1 = last (default)")
    g.add_argument("--positions", type=positive_int, default=1,
                   help="record the central N x N positions of the map (default 1: the centre only)")
    g.add_argument("--quick", action="store_true", help="about 1/6 of the stimuli (4 phases, fewer SFs/sizes)")
    g.add_argument("--visual_degrees", type=positive_float, default=None,
                   help="field of view of the input image in degrees (default 8)")
    add_shared(g, "image_size")
    g.add_argument("--no_contrast", action="store_true", help="skip the contrast response series")
    add_shared(g, "batch_size", "device")
    g.add_argument("--reference", default=None, metavar="JSON",
                   help="monkey data to add or replace (e.g. Ringach 2002 values); see docs/v1_probe.md")
    g.add_argument("--n_boot", type=positive_int, default=1000, help="bootstrap draws per property score")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--label", default=None, help="name of this run in comparison tables (default: the model name)")
    g.add_argument("--no_figures", action="store_true")
    g.add_argument("-o", "--output", default=None,
                   help="output folder (default: v1_probe_<model>, or v1_probe_compare with --compare only)")
    g.add_argument("--compare", nargs="+", default=None, metavar="DIR",
                   help="earlier v1-probe output folders to show in one table with this run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..analysis.v1_probe import compare_runs, probe_v1

    probe = args.model is not None or args.ckpt_path is not None
    if not probe and not args.compare:
        raise ConfigError("give --model or --ckpt_path (to probe) and/or --compare DIR ... (to tabulate earlier runs)")
    runs: list = []
    if probe:
        from .common import load_model_from_args, resolve_device

        device = resolve_device(args)
        loaded = load_model_from_args(args)
        model = loaded.model
        label = args.label or (f"{loaded.name}-{Path(loaded.source).stem}" if loaded.weights == "checkpoint"
                               else loaded.name)
        out = Path(args.output or f"v1_probe_{label}")
        result = probe_v1(
            model, args.layer, time_step=args.time_step, positions=args.positions, quick=args.quick,
            visual_degrees=args.visual_degrees, image_size=args.image_size, contrast=not args.no_contrast,
            batch_size=args.batch_size, device=device, references=args.reference, n_boot=args.n_boot,
            seed=args.seed, output_dir=out, figures=not args.no_figures, label=label, progress=True,
            weights=loaded.describe(),
        )
        print(result.table())
        print(f"wrote {out}/ (units.csv, summary.csv, summary.txt, run.json, curves.npz"
              f"{', figures/' if not args.no_figures else ''})")
        runs.append(result)
    if args.compare:
        runs.extend(args.compare)
        # with --model the table goes into this run's folder; otherwise into -o
        out = out if probe else Path(args.output or "v1_probe_compare")
        print()
        print(compare_runs(runs, output_dir=out, figures=not args.no_figures))
        print(f"wrote {out}/comparison.csv")
    return 0

