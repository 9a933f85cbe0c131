"""``ventralkit neural``: score every layer and time step against recorded responses (Brain-Score's metrics).

    ventralkit neural --features FEATS --responses resp.npy --metrics pls rdm cka -o OUT
    ventralkit neural --features FEATS --responses resp.h5 --responses_key IT --stimuli names.txt --groups objects.txt -o OUT
    ventralkit neural --model S --data_path IMGS --responses resp.npy -o OUT      # extracts features first

--features is the -o folder of `ventralkit features` (every <layer>-t<k>.npy, or features.h5).
--responses: (stimuli, neuroids) or (repetitions, stimuli, neuroids) in .npy / .npz / .h5, or a CSV
(stimuli x neuroids). Rows follow images.txt unless --stimuli names the image of each row.
A NaN trial is left out of its stimulus' average; a neuroid with no finite repetition of some stimulus
is dropped (both said in one line and counted in run.json). NaN features are an error.
Writes OUT/scores.csv (layer,metric,raw,ceiling,score,ci_low,ci_high,sem,note: why a value is empty),
OUT/per_neuroid.csv, OUT/run.json, OUT/scores.png, and with --bootstrap N (default 1000) OUT/comparisons.csv
(paired tests between the layers) and OUT/bootstrap.npz.

    ventralkit neural --features FEATS_A FEATS_B --responses resp.npy -o OUT   # OUT/<A>, OUT/<B>, compared
    ventralkit neural compare OUT_A OUT_B -o CMP      # paired tests of finished outputs (same stimuli)

    ventralkit neural --features FEATS --responses it.npy --commit --area IT -o OUT    # + commitment.json, mapping.csv
    ventralkit neural --features FEATS --responses it.npy --areas commitment.json -o OUT  # the committed layer only
    ventralkit neural --features FEATS --responses binned.npy --time_bins bins.txt --area IT -o OUT

--commit chooses each area's layer x time step on --select_fraction of the stimuli and reports its score on
the rest; --time_bins scores (stimuli, neuroids, bins) responses per bin against every time step
(time_scores.csv, time_mapping.csv, time_scores.png). See docs/neural.md.
"""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass
from pathlib import Path


def register(sub) -> None:
    from ..analysis.neural.registry import metric_names  # the choices are the registered metrics
    from .common import add_data_args, add_inference_args, add_model_args

    p = sub.add_parser("neural", help="model-brain comparison: PLS / ridge predictivity, RDM and CKA per layer",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("neural")
    g.add_argument("--features", nargs="+", default=None, metavar="DIR",
                   help="folder written by `ventralkit features`; several: each model scored into OUT/<folder name>, "
                        "then compared (OUT/comparisons.csv, OUT/comparison.png)")
    g.add_argument("--responses", metavar="FILE", help=".npy, .npz, .h5 or .csv of responses (required)")
    g.add_argument("--responses_key", default=None, metavar="NAME", help="array name inside a .npz / .h5 file")
    g.add_argument("--stimuli", default=None, metavar="FILE",
                   help="image file name of each response row, one per line (matched to images.txt by name)")
    g.add_argument("--groups", default=None, metavar="FILE",
                   help="object / category label of each response row, one per line (stratified splits)")
    g.add_argument("--metrics", nargs="+", choices=metric_names(), default=["pls"], metavar="METRIC",
                   help=f"any of {', '.join(metric_names())} (default: pls)")
    g.add_argument("--splits", type=_positive, default=10, help="train/test splits for the regressions (default 10)")
    g.add_argument("--seed", type=int, default=0, help="random state of the splits (Brain-Score uses 1)")
    c = g.add_mutually_exclusive_group()
    c.add_argument("--ceiling", dest="ceiling", action="store_const", const=True, default=None,
                   help="require a ceiling (an error without repetitions); default: when there are repetitions")
    c.add_argument("--no_ceiling", dest="ceiling", action="store_const", const=False, help="skip the ceiling")
    g.add_argument("--strict", action="store_true",
                   help="NaN in the responses is an error (default: leave the trial out, or drop the neuroid)")
    g.add_argument("-o", "--output_path", help="output folder (created if needed; required)")
    g.add_argument("--no_figure", action="store_true", help="skip scores.png")
    _add_mapping_args(p)
    _add_rsa_args(p)
    _add_stats_args(p)
    f = p.add_argument_group("features first (instead of --features)")
    f.add_argument("--layers", nargs="+", default=None, metavar="MODULE",
                   help="with --model: modules to extract (default: the model's brain-area commitments)")
    add_model_args(p, inference=True)
    add_data_args(p)
    add_inference_args(p)
    p.set_defaults(func=run)


def _add_mapping_args(p) -> None:
    """--area, --commit, --select_fraction, --areas, --time_bins (docs/neural.md: layer-to-area mapping, time)."""
    m = p.add_argument_group("layer-to-area mapping and time")
    m.add_argument("--area", default=None, metavar="NAME",
                   help="the brain area of the responses, e.g. IT (default with --commit: --responses_key)")
    m.add_argument("--commit", action="store_true",
                   help="choose the layer x time step on part of the stimuli, score it on the rest "
                        "(commitment.json, mapping.csv)")
    m.add_argument("--select_fraction", type=float, default=None, metavar="F",
                   help="with --commit: fraction of the stimuli that chooses (default 0.5)")
    m.add_argument("--areas", nargs="+", default=None, metavar="FILE",
                   help="commitment file(s): score only the committed layer x time step (of --area if given)")
    m.add_argument("--time_bins", default=None, metavar="FILE",
                   help="responses (stimuli, neuroids, bins) or (repetitions, stimuli, neuroids, bins); FILE: one "
                        "'start,end' ms line per bin; every time step is scored per bin")


def _positive(value: str) -> int:
    v = int(value)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return v


def run(args) -> int:
    if args.action == "compare":
        return _compare(args)
    _check_required(args)
    if args.features and len(args.features) > 1:
        return _run_several(args)
    args.features = args.features[0] if args.features else None
    out = _output_folder(args)
    _check_rsa_flags(args)
    inputs = _read_inputs(args)  # everything is read and checked before OUT is created
    _read_rsa_inputs(args, inputs)
    _check_responses(args, inputs, report=True)
    if inputs.bins is not None:
        return _run_time_bins(args, inputs, out)
    with _removed_on_failure(out):
        feats, sources = _features(args, inputs, out)
        result = _fit(args, inputs, feats, sources)
        mapping = _select(args, inputs, feats, sources) if args.commit else None
    files = _write_results(args, result, inputs, out)
    if mapping is not None:
        files += _write_mapping(args, inputs, mapping, out)
        print(mapping.summary())
    _print_summary(result, files)
    return 0


@dataclass
class _Inputs:
    """The responses and what matches them to the feature rows (updated when stimuli are left out)."""

    responses: object
    images: list[str]  # the image of each feature row
    feats: dict | None  # the --features arrays; None until extracted with --model
    unread: list[tuple[int, str]]  # (input position, image) of the stimuli without a feature row
    names: list[str] | None  # --stimuli
    groups: list[str] | None  # --groups
    rows: object = None  # the feature row of each response row (None: the same order)
    commitments: object = None  # --areas (models.commitment_file.Commitments)
    bins: list | None = None  # --time_bins: (start, end) ms; the responses are then bins_first (bins, ..., N, K)
    subjects: object = None  # --subjects / --subject_axis: the subject of each neuroid (column)
    runs: object = None  # --runs: the run of each repetition


def _output_folder(args) -> Path:
    """OUT, after checking that the flags name exactly one source of features and that OUT is not a file."""
    from ..errors import ConfigError

    model_given = bool(args.model or args.ckpt_path)
    if (args.features is None) == (not model_given):
        raise ConfigError("give --features DIR (a `ventralkit features` folder) or --model NAME / --ckpt_path FILE "
                          "with --data_path IMGS")
    if model_given and not args.data_path:
        raise ConfigError("--model / --ckpt_path needs --data_path: the folder of stimulus images")
    out = Path(args.output_path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"-o {out} is a file; give a folder")
    _check_mapping_flags(args)
    return out


def _check_mapping_flags(args) -> None:
    """--commit, --areas, --time_bins, --select_fraction and --layers that cannot go together, in one line."""
    from ..analysis.neural.mapping import check_select_fraction
    from ..errors import ConfigError

    if args.commit and args.areas:
        raise ConfigError("give --commit (choose a layer per area) or --areas FILE (use a commitment), not both")
    if args.commit and args.time_bins:
        raise ConfigError("--commit scores one response per stimulus; drop --time_bins (or average the bins) to commit")
    if args.commit and not _area(args):
        raise ConfigError("--commit needs --area NAME: the brain area the responses were recorded in (e.g. IT)")
    if args.select_fraction is not None and not args.commit:
        raise ConfigError("--select_fraction needs --commit")
    if args.commit:
        check_select_fraction(_select_fraction(args))
    if args.areas and args.layers:
        raise ConfigError("give --areas FILE or --layers, not both: the commitment file names the layers")


def _area(args) -> str | None:
    return args.area or args.responses_key


def _select_fraction(args) -> float:
    from ..analysis.neural.mapping import DEFAULT_SELECT_FRACTION

    return DEFAULT_SELECT_FRACTION if args.select_fraction is None else args.select_fraction


def _read_inputs(args) -> _Inputs:
    """Responses, the features folder (or the image list to extract from), --stimuli and --groups."""
    from ..analysis.neural.io import match_stimuli, read_features, read_lines, read_responses
    from ..analysis.neural.timebins import bins_first, read_time_bins
    from ..errors import ConfigError
    from ..models.commitment_file import read_commitments

    bins = read_time_bins(args.time_bins) if args.time_bins else None
    responses = read_responses(args.responses, args.responses_key, binned=bins is not None or args.subject_axis)
    if bins is not None:
        responses = bins_first(responses, len(bins), f"--responses {args.responses}")
    commitments = read_commitments(args.areas) if args.areas else None
    if args.features is not None:
        feats, images = read_features(args.features)
        unread = _unread_stimuli(args.features)
    else:
        from ..analysis.features import image_paths

        feats, images, unread = None, [str(p) for p in image_paths(args.data_path)], []
    names = None
    if args.stimuli:
        names = read_lines(args.stimuli, "--stimuli")
        n_rows = responses.shape[-2]
        if len(names) != n_rows:
            raise ConfigError(f"--stimuli {args.stimuli}: {len(names)} names for {n_rows} response rows")
    groups = None
    if args.groups:
        groups = read_lines(args.groups, "--groups")
    if unread:  # a features folder made with --on_bad_image skip: its unreadable stimuli have no row
        responses, names, groups = _without_stimuli(responses, names, groups, len(images), unread, args.features)
    rows = match_stimuli(names, images) if names is not None else None
    if commitments is not None and feats is not None:
        feats = _committed(args, commitments, feats, f"--features {args.features}")
    elif commitments is not None:  # --model: extract the committed modules (every time step), then keep those
        args.layers = list(dict.fromkeys(c.module for c in commitments.areas.values()))
    return _Inputs(responses, images, feats, unread, names, groups, rows, commitments, bins)


def _committed(args, commitments, feats: dict, what: str) -> dict:
    """The feature arrays the commitment names (of --area only, when given); with --time_bins every time step of
    the committed modules. A layer or time step ``what`` lacks is one line listing close names."""
    from ..models.commitment_file import committed_features, split_feature_name

    names = committed_features(commitments, feats, what, [args.area] if args.area else None)
    if args.time_bins:
        modules = {split_feature_name(n)[0] for n in names.values()}
        return {k: v for k, v in feats.items() if split_feature_name(k)[0] in modules}
    return {name: feats[name] for name in dict.fromkeys(names.values())}


def _check_responses(args, inputs: _Inputs, report: bool) -> None:
    """``check_inputs`` on the responses as matched now; its warnings go to stderr when ``report``."""
    import sys
    import warnings

    from ..analysis.neural import check_inputs

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        where = f"--responses {args.responses}"
        if inputs.bins is not None:
            from ..analysis.neural.timebins import check_bins

            check_bins(len(inputs.images), inputs.responses, inputs.bins, args.metrics, inputs.groups, args.splits,
                       args.ceiling, args.strict, inputs.rows, where)
        else:
            check_inputs(len(inputs.images), inputs.responses, args.metrics, inputs.groups, args.splits,
                         args.ceiling, args.strict, inputs.rows, where=where, **_rsa_check_kwargs(args, inputs))
        if args.commit:
            from ..analysis.neural.mapping import check_selection

            check_selection(len(inputs.images), inputs.responses, args.metrics[0], inputs.groups, args.splits,
                            args.ceiling, args.strict, inputs.rows, _select_fraction(args), args.seed, where)
    for message in dict.fromkeys(str(w.message) for w in caught) if report else ():
        print(f"warning: {message}", file=sys.stderr)


def _features(args, inputs: _Inputs, out: Path) -> tuple[dict, dict[str, str]]:
    """The feature arrays and how to name each layer in an error: read from --features, or extracted into
    OUT/features (the responses to stimuli the extraction could not read are then left out too)."""
    from ..analysis.neural.io import feature_sources, match_stimuli

    if inputs.feats is not None:
        return inputs.feats, feature_sources(args.features, inputs.feats)
    feats = _extract(args, out / "features")
    sources = {name: f"--model {args.model or args.ckpt_path}: layer {name}" for name in feats}
    if feats.skipped:  # --on_bad_image skip: the responses to unreadable stimuli are left out too
        inputs.unread = [(u.index, u.path) for u in feats.skipped]
        gone = {i for i, _ in inputs.unread}
        inputs.images = [p for i, p in enumerate(inputs.images) if i not in gone]
        inputs.responses, inputs.names, inputs.groups = _without_stimuli(
            inputs.responses, inputs.names, inputs.groups, len(inputs.images), inputs.unread, out / "features")
        inputs.rows = match_stimuli(inputs.names, inputs.images) if inputs.names is not None else None
        _check_responses(args, inputs, report=False)  # its warnings were reported by the first check
    if inputs.commitments is not None:
        feats = _committed(args, inputs.commitments, feats, f"--model {args.model or args.ckpt_path}")
    return feats, sources


def _fit(args, inputs: _Inputs, feats, sources):
    import warnings

    from ..analysis.neural import neural_fit

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the drop was reported above
        return neural_fit(feats, inputs.responses, metrics=args.metrics, groups=inputs.groups, splits=args.splits,
                          seed=args.seed, ceiling=args.ceiling, strict=args.strict, rows=inputs.rows,
                          progress=not args.no_progress, sources=sources, **_rsa_kwargs(args, inputs),
                          bootstrap=args.bootstrap, bootstrap_over=args.bootstrap_over,
                          ceiling_convention=args.ceiling_convention)


def _write_results(args, result, inputs: _Inputs, out: Path) -> list[Path]:
    """scores.csv, per_neuroid.csv, run.json and (unless --no_figure) scores.png in OUT."""
    from ..analysis.neural.report import plot_scores, write_run, write_scores

    files = write_scores(result, out)
    if result.bootstrap is not None:  # bootstrap.npz (for neural compare) and comparisons.csv (pairs of layers)
        from ..analysis.neural.comparison import write_layer_comparisons

        files += write_layer_comparisons(result, out, inputs.images, inputs.rows, args.test, args.correction,
                                         args.alpha)
    files.append(write_run(result, out, _run_inputs(args, inputs, out)))
    if not args.no_figure:
        files.append(plot_scores(result, out / "scores.png", title=f"features: {args.features}" if args.features
                                 else f"model: {args.model or args.ckpt_path}"))
    return files


def _model_source(args, out: Path) -> dict | None:
    """With --model: where the model came from (library, weights name, file, sha256, preprocessing), as the
    features this run extracted recorded it (``features.json``); None for given --features."""
    import json

    if args.features:
        return None
    try:
        return json.loads((out / "features" / "features.json").read_text(encoding="utf-8")).get("model_source")
    except (OSError, ValueError, AttributeError):
        return None


def _run_inputs(args, inputs: _Inputs, out: Path) -> dict:
    """The inputs as run.json records them (absolute paths, the response shape, what was left out)."""
    import numpy as np

    return {"features": str(Path(args.features).resolve()) if args.features else str(out / "features"),
            "responses": str(Path(args.responses).resolve()), "responses_key": args.responses_key,
            "stimuli": args.stimuli and str(Path(args.stimuli).resolve()),
            "groups": args.groups and str(Path(args.groups).resolve()),
            "model": args.model, "data_path": args.data_path, "model_source": _model_source(args, out),
            "response_shape": list(np.shape(inputs.responses) if inputs.bins is None
                                   else np.shape(np.moveaxis(inputs.responses, 0, -1))),
            "areas": [str(Path(a).resolve()) for a in args.areas or ()], "area": args.area,
            "time_bins": args.time_bins and str(Path(args.time_bins).resolve()),
            "unreadable_stimuli_left_out": [path for _, path in inputs.unread]}


def _select(args, inputs: _Inputs, feats, sources):
    """--commit: the layer x time step chosen on part of the stimuli, scored on the rest (``mapping.select_layer``)."""
    import warnings

    from ..analysis.neural.mapping import select_layer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reported by the first check
        return select_layer(feats, inputs.responses, _area(args), metric=args.metrics[0],
                            select_fraction=_select_fraction(args), groups=inputs.groups, splits=args.splits,
                            seed=args.seed, ceiling=args.ceiling, strict=args.strict, rows=inputs.rows,
                            progress=not args.no_progress, sources=sources, where=f"--responses {args.responses}",
                            bootstrap=args.bootstrap, **_convention(args))


def _convention(args) -> dict:
    """The ceiling convention of --ceiling_convention, for the mapping and time scores (as for scores.csv)."""
    value = getattr(args, "ceiling_convention", None)
    return {"ceiling_convention": value} if value else {}


def _write_mapping(args, inputs: _Inputs, mapping, out: Path) -> list[Path]:
    """commitment.json and mapping.csv, with the inputs and the version as provenance."""
    from ..analysis.neural.mapping import write_mapping
    from ..version import __version__

    return write_mapping([mapping], out, {"made_by": f"ventralkit {__version__} neural --commit",
                                          "inputs": _run_inputs(args, inputs, out)})


def _run_time_bins(args, inputs: _Inputs, out: Path) -> int:
    """--time_bins: every layer x time step against every bin (time_scores.csv, time_mapping.csv, run.json and
    time_scores.png), and per bin the time step the default mapping commits beside the best one."""
    import warnings

    import numpy as np

    from ..analysis.neural.timebins import area_module, score_time_bins, time_mapping, write_time_results

    with _removed_on_failure(out):
        feats, sources = _features(args, inputs, out)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # reported by the first check
            result = score_time_bins(feats, np.moveaxis(inputs.responses, 0, -1), inputs.bins, metrics=args.metrics,
                                     groups=inputs.groups, splits=args.splits, seed=args.seed, ceiling=args.ceiling,
                                     strict=args.strict, rows=inputs.rows, progress=not args.no_progress,
                                     sources=sources, where=f"--responses {args.responses}", bootstrap=args.bootstrap,
                                     **_convention(args))
    area = _area(args)
    found = area_module(Path(args.features) if args.features else out / "features", area, inputs.commitments)
    mapping = time_mapping(result, area, found["module"], found["windows"])
    module = found["module"]
    run = {"inputs": _run_inputs(args, inputs, out), "area": area, "model": found["model"], "module": module,
           "time_mapping": found["time_mapping"]}
    files = write_time_results(result, mapping, out, run, module, figure=not args.no_figure,
                               title=f"{area or 'responses'}: {module or 'every layer'}")
    for r in mapping:
        committed = r["committed_feature"] or "--"
        print(f"{r['metric']} {r['bin_start']:g}-{r['bin_end']:g} ms: committed {committed}, "
              f"best step {r.get('best_step_feature') or '--'}, best layer {r['best_feature'] or '--'}")
    print("wrote " + ", ".join(str(p) for p in files))
    return 0


def _print_summary(result, files: list[Path]) -> None:
    """The table, the best layer per metric (or why there is none) and the files written."""
    print(result.table())
    if result.n_repetitions < 2:
        print("no ceiling: the responses have no repetitions, raw scores only")
    for m in result.metrics:
        try:
            print(f"best layer for {m}: {result.best(m)}")
        except KeyError:
            why = next((r["note"] for r in result.rows if r["metric"] == m and r["note"]), "")
            print(f"{m}: no finite score" + (f" ({why})" if why else ""))
    print("wrote " + ", ".join(str(p) for p in files))


@contextlib.contextmanager
def _removed_on_failure(out: Path):
    """Creates ``out`` (checked writable before the slow work); if the run then fails, what it made is removed.

    A folder created here is removed whole (it holds at most the features this run extracted); in a
    folder that existed, only a ``features`` sub-folder this run created goes. Result files are only
    written after the fit succeeded, so a failure leaves nothing behind.
    """
    import shutil

    from ..files import ensure_writable_dir

    features = out / "features"
    had_features = features.exists()
    created = ensure_writable_dir(out)
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            if created:
                shutil.rmtree(out)
            elif not had_features and features.is_dir():
                shutil.rmtree(features)
        raise


def _extract(args, folder: Path) -> dict:
    """``ventralkit features`` into ``folder`` with this command's model and data flags."""
    from ..analysis.features import extract_features
    from .common import amp_mode, channels_last_flag, load_model_from_args, resolve_device

    device = resolve_device(args)
    loaded = load_model_from_args(args)
    size = loaded.image_size  # --imsize, else the checkpoint's training size, else the model's
    return extract_features(loaded.model, args.data_path, layers=args.layers, batch_size=args.batch_size or 64,
                            workers=args.workers, image_size=size, device=device, output_dir=folder,
                            progress=not args.no_progress, channels_last=channels_last_flag(args),
                            amp=amp_mode(args), on_bad_image=args.on_bad_image,
                            overwrite=True)  # OUT/features is this command's own: each run replaces it


def _unread_stimuli(folder) -> list[tuple[int, str]]:
    """(position in the input, image) of the stimuli a ``features`` run left out as unreadable (no row)."""
    import json

    try:
        manifest = json.loads((Path(folder) / "features.json").read_text(encoding="utf-8"))
        return [(int(s["input_index"]), str(s["image"])) for s in manifest.get("skipped", [])]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def _without_stimuli(responses, names, groups, n_rows_read: int, unread: list[tuple[int, str]], where):
    """Responses (and --stimuli names, --groups) without the rows of stimuli that have no feature row.

    With --stimuli, rows naming an unreadable image go. Without it the rows follow the images: if there
    is a row for every input image (read or not), the rows at the unreadable images' input positions go;
    if there is one per image read, nothing goes; any other count is left for the row-count check."""
    import numpy as np

    n = responses.shape[-2]
    if names is not None:
        bad = {Path(p).name for _, p in unread}
        keep = [i for i, name in enumerate(names) if Path(name).name not in bad]
    elif n == n_rows_read + len(unread):
        gone = {i for i, _ in unread}
        keep = [i for i in range(n) if i not in gone]
    else:
        return responses, names, groups
    if len(keep) == n:
        return responses, names, groups
    print(f"left out the responses to {n - len(keep)} unreadable stimuli (no feature row; listed in "
          f"{Path(where) / 'skipped.txt'})")
    responses = np.take(np.asarray(responses), keep, axis=-2)
    pick = (lambda seq: None if seq is None else [seq[i] for i in keep])
    return responses, pick(names), (pick(groups) if groups is not None and len(groups) == n else groups)


# --------------------------------------------------------------------------- RSA options (the rdm metric)


def _add_rsa_args(p) -> None:
    """--rdm_method, --comparator, --subjects, --subject_axis, --runs (docs/neural.md: RSA as rsatoolbox computes it)."""
    from ..analysis.neural.rsa import COMPARATORS, RDM_METHODS

    r = p.add_argument_group("RSA (the rdm metric, as rsatoolbox computes it)")
    r.add_argument("--rdm_method", choices=RDM_METHODS, default="correlation",
                   help="RDM of the responses (default correlation; mahalanobis and crossnobis whiten by the noise "
                        "estimated from the repetitions; the model's RDM is then euclidean)")
    r.add_argument("--comparator", choices=COMPARATORS, default="spearman", help="RDM comparison (default spearman)")
    s = r.add_mutually_exclusive_group()
    s.add_argument("--subjects", default=None, metavar="FILE",
                   help="subject (or session) of each neuroid, one per line: one RDM per subject, score = mean over "
                        "subjects, rsatoolbox's leave-one-subject-out noise ceiling")
    s.add_argument("--subject_axis", action="store_true",
                   help="the responses' first axis is subjects: (subjects, stimuli, neuroids) or (subjects, "
                        "repetitions, stimuli, neuroids)")
    r.add_argument("--runs", default=None, metavar="FILE",
                   help="run (session) of each repetition, one per line; crossnobis cross-validates over them")


def _rsa_given(args) -> list[str]:
    """The RSA flags given with other values than the defaults."""
    given = [f"--{k} {getattr(args, k)}" for k, d in (("rdm_method", "correlation"), ("comparator", "spearman"))
             if getattr(args, k) != d]
    return given + [f"--{k}" for k in ("subjects", "subject_axis", "runs") if getattr(args, k)]


def _check_rsa_flags(args) -> None:
    """RSA flags only where they apply: with the rdm metric, not (yet) with --time_bins or --commit."""
    from ..errors import ConfigError

    given = _rsa_given(args)
    if not given:
        return
    if "rdm" not in args.metrics and [g for g in given if not g.startswith(("--subject", "--runs"))]:
        raise ConfigError(f"{given[0]} sets the rdm metric; add rdm to --metrics")
    for flag, on in (("--time_bins", getattr(args, "time_bins", None)), ("--commit", getattr(args, "commit", False))):
        if on:
            raise ConfigError(f"{given[0]} cannot be combined with {flag} yet; score the RSA in a separate run "
                              f"without {flag}")


def _read_rsa_inputs(args, inputs) -> None:
    """--subject_axis (the responses' subjects side by side), --subjects and --runs into ``inputs``."""
    from ..analysis.neural.io import read_lines
    from ..analysis.neural.rsa_scoring import flatten_subject_axis

    if args.subject_axis:
        inputs.responses, inputs.subjects = flatten_subject_axis(inputs.responses, f"--responses {args.responses}")
    elif args.subjects:
        inputs.subjects = read_lines(args.subjects, "--subjects")
    if args.runs:
        inputs.runs = read_lines(args.runs, "--runs")


def _rsa_kwargs(args, inputs) -> dict:
    return {"rdm_method": args.rdm_method, "comparator": args.comparator, "subjects": inputs.subjects,
            "runs": inputs.runs}


def _rsa_check_kwargs(args, inputs) -> dict:
    from ..analysis.neural.rsa_scoring import RSAOptions

    return {"rsa_options": RSAOptions(args.rdm_method, args.comparator), "subjects": inputs.subjects,
            "runs": inputs.runs}


# --------------------------------------------------------------------------- uncertainty and comparisons


def _add_stats_args(p) -> None:
    """--bootstrap, --bootstrap_over, --ceiling_convention, --test, --correction, --alpha, and ``neural compare OUT ...``
    (docs/neural.md: uncertainty and comparisons)."""
    from ..analysis.neural.compare_stats import CORRECTIONS, TESTS
    from ..analysis.neural.fit import BOOTSTRAP_OVER
    from ..analysis.neural.registry import CEILING_CONVENTIONS, DEFAULT_CEILING_CONVENTION

    p.add_argument("action", nargs="?", choices=["compare"], metavar="compare",
                   help="`neural compare OUT1 OUT2 ... -o DIR`: paired tests between finished outputs scored on the "
                        "same stimuli (DIR/comparisons.csv, DIR/comparison.png); --layers then picks the layers")
    p.add_argument("outputs", nargs="*", metavar="OUT", help="with compare: output folders of `ventralkit neural`")
    b = p.add_argument_group("uncertainty and comparisons")
    b.add_argument("--bootstrap", type=_resamples, default=1000, metavar="N",
                   help="resamples for each score's 95%% interval and standard error (ci_low, ci_high, sem of "
                        "scores.csv, mapping.csv with --commit, time_scores.csv with --time_bins; comparisons.csv; "
                        "default 1000, 0: none), seeded by --seed")
    b.add_argument("--bootstrap_over", choices=BOOTSTRAP_OVER, default="auto",
                   help="resample stimuli, subjects or both (auto: both with --subjects, else stimuli)")
    b.add_argument("--ceiling_convention", choices=list(CEILING_CONVENTIONS), default=DEFAULT_CEILING_CONVENTION,
                   help="regression ceiled score: r2_over_c = r|r|/c (Brain-Score >= 2.3.13, default) or "
                        "r_over_c_squared = (r/c)|r/c| (Brain-Score <= 2.3.12)")
    b.add_argument("--test", choices=TESTS, default="t-test",
                   help="paired test: rsatoolbox's t-test on the bootstrap standard error, or the bootstrap "
                        "distribution of the difference (default t-test)")
    b.add_argument("--correction", choices=CORRECTIONS, default="fdr",
                   help="multiple comparisons: Benjamini-Hochberg FDR (default), Bonferroni or none")
    b.add_argument("--alpha", type=_probability, default=0.05, help="significance level (default 0.05)")


def _resamples(value: str) -> int:
    v = int(value)
    if v < 0 or v == 1:
        raise argparse.ArgumentTypeError(f"must be 0 (no bootstrap) or at least 2, got {value}")
    return v


def _probability(value: str) -> float:
    v = float(value)
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return v


def _check_required(args) -> None:
    """--responses and -o (not required by the parser, so that `neural compare` can do without them)."""
    from ..errors import ConfigError

    if args.outputs:
        raise ConfigError(f"{args.outputs[0]}: output folders are compared with `ventralkit neural compare OUT1 "
                          "OUT2 ... -o DIR`")
    if not args.responses:
        raise ConfigError("give --responses FILE (the recorded responses); `ventralkit neural compare OUT1 OUT2 -o "
                          "DIR` compares finished outputs")
    if not args.output_path:
        raise ConfigError("give -o OUT: the output folder")


def _compare(args) -> int:
    """`neural compare OUT1 OUT2 ... -o DIR`: comparisons.csv and comparison.png of finished outputs."""
    from ..analysis.neural.comparison import compare_outputs
    from ..errors import ConfigError

    if args.responses or args.features or args.model or args.ckpt_path:
        raise ConfigError("neural compare reads finished outputs (OUT1 OUT2 ...); drop --responses/--features/"
                          "--model, or score several models in one call: neural --features A B --responses R -o OUT")
    if not args.output_path:
        raise ConfigError("neural compare needs -o DIR: the folder for comparisons.csv and comparison.png")
    out = Path(args.output_path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"-o {out} is a file; give a folder")
    result = compare_outputs(args.outputs, out, args.test, args.correction, args.alpha, layers=args.layers,
                             figure=not args.no_figure)
    print(result.table())
    print("wrote " + ", ".join(str(p) for p in result.files))
    return 0


def _run_several(args) -> int:
    """Several --features folders: each scored into OUT/<folder name> (a full neural output), then compared."""
    import copy

    from ..analysis.neural.comparison import compare_outputs, output_names
    from ..analysis.neural.io import read_features
    from ..errors import ConfigError

    if args.model or args.ckpt_path:
        raise ConfigError("give --features DIR ... or --model, not both")
    if not args.bootstrap:
        raise ConfigError("several --features folders are compared from their bootstrap: drop --bootstrap 0")
    if args.commit or args.time_bins:
        raise ConfigError("--commit and --time_bins take one --features folder; run them per model")
    names = output_names([Path(f) for f in args.features])
    for folder in args.features:  # every folder readable before the first is scored
        read_features(folder)
    out = Path(args.output_path)
    folders = []
    for folder, name in zip(args.features, names):
        one = copy.copy(args)
        one.features, one.output_path = [folder], str(out / name)
        print(f"== {name} ({folder})")
        run(one)
        folders.append(out / name)
    result = compare_outputs(folders, out, args.test, args.correction, args.alpha, figure=not args.no_figure)
    print(f"== comparison of {', '.join(names)}")
    print(result.table())
    print("wrote " + ", ".join(str(p) for p in result.files))
    return 0
