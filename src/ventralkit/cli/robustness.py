"""``ventralkit robustness``: accuracy under every corruption and severity, CE / mCE, figures, comparisons."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .common import add_model_args, add_shared, amp_mode


def register(sub) -> None:
    p = sub.add_parser(
        "robustness",
        help="evaluate a model on a corrupted dataset (CE, mCE) or compare earlier runs",
        description="Evaluate every DATA_PATH/<corruption>/<severity>/ folder (and --clean_path), write the "
                    "original Tiny-ImageNet-C CSV, a summary with Corruption Error and mCE, and figures. "
                    "--compare puts earlier runs (their output folders or CSVs) in one table and figure.",
    )
    add_model_args(p, inference=True)
    g = p.add_argument_group("data")
    g.add_argument("--data_path", default=None, metavar="C_ROOT",
                   help="corrupted dataset root: C_ROOT/<corruption>/<severity>/<class>/<image>")
    g.add_argument("--clean_path", default=None, metavar="VAL_DIR",
                   help="clean validation folder (class sub-folders); enables relative mCE")
    g.add_argument("--corruptions", nargs="+", default=None, metavar="NAME",
                   help="evaluate only these corruptions or groups (default: every folder found)")
    g.add_argument("--severities", nargs="+", type=int, default=None, metavar="S", help="only these severities")
    add_shared(g, "workers", "batch_size", "image_size")
    g.add_argument("--preprocess", choices=["auto", "eval", "direct"], default=None,
                   help="eval: the model's eval transform; direct: resize+crop to the input size only (for "
                        "released -C images already at that size); auto: direct when they are. Default: the "
                        "checkpoint's own evaluation preprocessing (as `test` uses), else auto")
    e = p.add_argument_group("evaluation")
    add_shared(e, "device", "amp")
    e.add_argument("--baseline", default=None, metavar="alexnet|CSV|RUN_DIR",
                   help="normalise CE by 'alexnet' (ImageNet-C table) or an earlier run's results")
    e.add_argument("--baseline_clean_error", type=float, default=None,
                   help="the baseline's clean top-1 error (fraction), for relative mCE when its CSV lacks it")
    e.add_argument("--name", default=None, help="label of this run in tables and figures")
    e.add_argument("--compare", nargs="+", default=None, metavar="RUN",
                   help="earlier run folders or results CSVs to put in one table and figure with this run")
    e.add_argument("--names", nargs="+", default=None, help="labels for the --compare runs")
    e.add_argument("-o", "--output_path", required=True, metavar="OUT", help="folder for CSVs, summary and figures")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis.robustness import compare_robustness, evaluate_robustness
    from ..analysis.robustness.evaluate import COMPARISON_PNG, COMPARISON_TXT
    from ..engine.ranks import world_size

    if world_size() > 1 and args.data_path is not None:  # under torchrun: the folders shared out among the ranks
        return _run_ranks(args)
    if args.data_path is None and not args.compare:
        raise ConfigError("give --data_path C_ROOT to evaluate a model, and/or --compare RUN ... to compare runs")
    if args.names is not None and not args.compare:
        raise ConfigError("--names labels the --compare runs; give --compare RUN ... too (this run: --name)")
    if args.names is not None and len(args.names) != len(args.compare):
        raise ConfigError(f"--names has {len(args.names)} labels for {len(args.compare)} --compare runs; "
                          "give one per run")
    out = Path(args.output_path)
    runs = []
    if args.data_path is not None:
        from ..analysis.robustness.evaluate import scan_corruption_root
        from .common import load_model_from_args, resolve_device

        scan_corruption_root(args.data_path, args.corruptions, args.severities)  # a typo fails before the model loads

        # as `ventralkit test`: a ventralkit checkpoint supplies the model, its options, class count and
        # class names, the image size it was trained at and its evaluation preprocessing
        loaded = load_model_from_args(args)
        name = args.name or loaded.name + (f" ({Path(args.ckpt_path).stem})" if args.ckpt_path else "")
        report = evaluate_robustness(
            loaded.model, args.data_path, clean_path=args.clean_path, batch_size=args.batch_size or 128,
            workers=args.workers, device=resolve_device(args), baseline=args.baseline, output_dir=out,
            image_size=loaded.image_size, amp=amp_mode(args),
            preprocess=args.preprocess, corruptions=args.corruptions, severities=args.severities,
            baseline_clean_error=args.baseline_clean_error, name=name, progress=not args.quiet,
            classes=loaded.classes,
        )
        print(report.table())
        print("wrote " + ", ".join(str(p) for p in report.files.values()))
        runs.append(report)
    if args.compare:
        names = args.names
        if names is not None and runs:
            names = [runs[0].name, *names]
        rows = compare_robustness(runs + list(args.compare), names=names, baseline=args.baseline, output_dir=out,
                                  baseline_clean_error=args.baseline_clean_error)
        print((out / COMPARISON_TXT).read_text().rstrip())
        print(f"wrote {out / COMPARISON_PNG} ({len(rows)} runs)")
    return 0



def _run_ranks(args) -> int:
    """``torchrun ... -m ventralkit.cli robustness``: the checks and the model on every rank (a mistake is one line,
    from rank 0), rank 0's weights everywhere, the folders shared out (``analysis.robustness.ranks``); rank 0 prints
    and writes the table (and any --compare)."""
    from ..analysis.robustness import compare_robustness, evaluate_robustness
    from ..analysis.robustness.evaluate import COMPARISON_PNG, COMPARISON_TXT, scan_corruption_root
    from ..engine.distributed import rank_device
    from ..engine.ranks import agree, broadcast_weights, run_on_ranks
    from .common import load_model_from_args, resolve_device

    def prepare():
        if args.names is not None and (not args.compare or len(args.names) != len(args.compare)):
            raise ConfigError("--names labels the --compare runs: give one per --compare run (this run: --name)")
        scan_corruption_root(args.data_path, args.corruptions, args.severities)
        return rank_device(resolve_device(args)), load_model_from_args(args)

    def body(info) -> int:
        device, loaded = agree(prepare, info, "loading the model")
        broadcast_weights(loaded.model)
        out = Path(args.output_path)
        name = args.name or loaded.name + (f" ({Path(args.ckpt_path).stem})" if args.ckpt_path else "")
        report = evaluate_robustness(
            loaded.model, args.data_path, clean_path=args.clean_path, batch_size=args.batch_size or 128,
            workers=args.workers, device=device, baseline=args.baseline, output_dir=out,
            image_size=loaded.image_size, amp=amp_mode(args), preprocess=args.preprocess, corruptions=args.corruptions,
            severities=args.severities, baseline_clean_error=args.baseline_clean_error, name=name,
            progress=not args.quiet, classes=loaded.classes, dist_info=info)
        if not info.is_main:
            return 0
        print(report.table())
        print("wrote " + ", ".join(str(p) for p in report.files.values()))
        if args.compare:
            names = [report.name, *args.names] if args.names is not None else None
            rows = compare_robustness([report, *args.compare], names=names, baseline=args.baseline, output_dir=out,
                                      baseline_clean_error=args.baseline_clean_error)
            print((out / COMPARISON_TXT).read_text().rstrip())
            print(f"wrote {out / COMPARISON_PNG} ({len(rows)} runs)")
        return 0

    return run_on_ranks(body)
