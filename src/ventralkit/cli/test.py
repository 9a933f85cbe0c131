"""``ventralkit test``: CORnet ``run.py test`` (features of a flat image folder) or an evaluation.

    ventralkit test --model S --ckpt_path FILE --layer V4 --sublayer output --time_step 1 \\
        --imsize 224 --data_path IMGS -o OUT          # IMGS holds images: features, as the original
    ventralkit test --model S100 --batch_size 16 --ckpt_path FILE --data_path MiniImageNet -o OUT
                                                      # val/ or class folders: loss, top-1/5, confusion
    ventralkit test --model Z --ckpt_path RUN/checkpoints/best.pt --dataset digits -o OUT

Features (a folder of images, or a single image): ``<layer>.<sublayer>-t<k>.npy`` and the original
``CORnet-<model>_<layer>_<sublayer>_feats.npy`` (N x D, rows in sorted file order), ``images.txt``,
``features.json``. Preprocessing as the original: ``Resize((imsize, imsize))``, no crop. Default
layer: ``decoder.avgpool`` (CORnet-S100: ``Decoder.output``, the logits, and the predicted classes
are printed, as CORnet-100 does).

Evaluation (``--data_path`` with ``val/``, ``val_in_folders/`` or class sub-folders, ``--dataset
digits``, or ``--evaluate``): ``summary.json``, ``per_class.csv``, ``confusion.csv``,
``confusion.png`` and ``predictions.csv`` in ``-o``; preprocessing Resize + CenterCrop, or the images
as they are with ``--eval_transform none`` (the default follows the checkpoint's training config).

Weights: ``--ckpt_path`` (an original or a ventralkit checkpoint; the class count, image size and
model options of a ventralkit checkpoint are used unless given), ``--pretrained`` (the weights
folder); with neither, the published weights as the original ``test`` (``--random_init``: none).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..errors import ConfigError, DataError
from ..files import write_csv, write_json
from .common import (add_data_args, add_inference_args, add_model_args, amp_mode, channels_last_flag,
                     load_model_from_args, output_folder, progress_enabled, report_skipped, resolve_device)


def register(sub) -> None:
    p = sub.add_parser("test", help="features of an image folder (CORnet run.py test) or evaluation on val/",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p, inference=True)
    add_data_args(p)
    add_inference_args(p)
    g = p.add_argument_group("test")
    g.add_argument("-o", "--output_path", default=None, help="folder for the results (created if needed)")
    g.add_argument("--layer", default=None, help="module of the original test (default: decoder / Decoder)")
    g.add_argument("--sublayer", default=None,
                   help="its sub-module (default: avgpool; S100: output; 'output' for an area like V4)")
    g.add_argument("--time_step", type=int, default=0, help="which call of a recurrent module: 0 = first (default, as the original), -1 = last")
    g.add_argument("--evaluate", action="store_true",
                   help="evaluate on class folders (DATA/val/ or DATA/<class>/) even if unclear from the layout")
    g.add_argument("--transform", choices=["square", "center"], default="square",
                   help="features: square Resize((s, s)) as the original (default) or Resize + CenterCrop")
    g.add_argument("--format", choices=["npy", "hdf5"], default="npy", help="features file format")
    g.add_argument("--eval_transform", choices=["resize_crop", "none"], default=None,
                   help="evaluation preprocessing: Resize + CenterCrop, or the images as they are (default: the "
                        "checkpoint's training config, else resize_crop)")
    g.add_argument("--classes_path", default=None,
                   help="CORnet-100 class map ('<wnid> <index> <name>' lines) to name predicted classes")
    p.set_defaults(func=run)


# --------------------------------------------------------------------------- the command


def _default_layer(name: str, model) -> tuple[str, str]:
    """The original test's defaults: decoder.avgpool; CORnet-100 (S100): Decoder.output."""
    if name == "cornet_s100":
        return "Decoder", "output"
    dec = getattr(model, "decoder_name", None)
    if dec:
        return dec, "avgpool"
    areas = list(getattr(model.info, "areas", {}).values())
    if not areas:
        raise ConfigError(f"{name} has no default layer; pass --layer and --sublayer")
    layer, _, sub = areas[-1].partition(".")
    return layer, sub


def layer_path(args, name: str, model) -> str:
    if args.layer is None:
        layer, sub = _default_layer(name, model)
        if args.sublayer is not None:
            sub = args.sublayer
    else:
        layer = args.layer
        if args.sublayer is not None:
            sub = args.sublayer
        elif "." in layer:
            sub = ""
        else:  # the original default sublayer belongs to the decoder; an area's hookable output is 'output'
            dec = getattr(model, "decoder_name", "decoder")
            sub = ("output" if name == "cornet_s100" else "avgpool") if layer == dec else "output"
    return f"{layer}.{sub}" if sub else layer


def _has_images(folder: Path) -> bool:
    from ..data.folders import is_image

    return any(p.is_file() and is_image(p) for p in folder.iterdir())


def choose_mode(args) -> tuple[str, Path | None]:
    """('features', path) for a flat image folder / one image, ('evaluate', class root) otherwise."""
    from ..data.folders import VAL_NAMES, split_dir

    if args.dataset and args.dataset != "folder":
        return "evaluate", None
    if not args.data_path:
        raise ConfigError("--data_path is required: a folder of images (features), a dataset root with val/ "
                          "(evaluation), or use --dataset digits")
    path = Path(args.data_path)
    if not path.exists():
        raise DataError(f"--data_path {path} does not exist; give a folder of images or a dataset root with val/")
    if path.is_file():
        if args.evaluate:
            raise DataError(f"--data_path {path} is a file; --evaluate needs class folders")
        return "features", path
    if any((path / n).is_dir() for n in VAL_NAMES) or (path / "train").is_dir():
        return "evaluate", split_dir(path, "val")
    if args.evaluate:
        return "evaluate", path
    if _has_images(path):
        return "features", path
    if any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir()):
        return "evaluate", path
    from ..data.folders import list_images

    list_images(path)  # raises the one-line "no image files" error
    return "features", path


def run(args) -> int:
    device = resolve_device(args)
    mode, path = choose_mode(args)
    out = Path(args.output_path) if args.output_path else None
    with output_folder(out):
        loaded = load_model_from_args(args)
        if mode == "features":
            return run_features(args, loaded, path, out, device)
        return run_evaluation(args, loaded, path, out, device)


def run_features(args, loaded, path: Path, out: Path | None, device) -> int:
    import numpy as np

    from ..analysis.features import extract_features

    model = loaded.model
    layer = layer_path(args, loaded.name, model)
    size = loaded.image_size  # --imsize, else the checkpoint's training size, else the model's
    feats = extract_features(
        model, path, layers=[layer], time_steps=args.time_step, batch_size=args.batch_size or 64,
        workers=args.workers, image_size=size, transform=args.transform, device=device, output_dir=out,
        format=args.format, progress=progress_enabled(args), channels_last=channels_last_flag(args),
        amp=amp_mode(args), on_bad_image=args.on_bad_image,
        overwrite=None,  # as CORnet's run.py test: one file per layer, runs for several layers share -o
    )
    (fname, arr), = feats.items()
    print(f"{fname}: {arr.shape[0]} images x {arr.shape[1]} features ({loaded.name}, {size} px)")
    report_skipped(feats.skipped, out)
    if layer.split(".")[-1] in ("output", "linear") and arr.shape[1] == model.info.num_classes:
        pred = np.asarray(arr).argmax(axis=1)
        print(f"predicted classes: {pred.tolist()}")
        names = read_class_names(args.classes_path) if args.classes_path else loaded.classes
        if names:
            print(f"predicted names: {[names[i] if 0 <= i < len(names) else str(i) for i in pred]}")
    if out is None:
        print("nothing written: give -o/--output_path to save the features")
    else:
        files = json.loads((out / "features.json").read_text())["files"]
        for f in files + ["images.txt", "features.json"] + (["skipped.txt"] if feats.skipped else []):
            print(f"  {out / f}")
    return 0


def read_class_names(path: str) -> list[str]:
    """CORnet-100's ``map_clsloc.txt`` (``<wnid> <1-based index> <name>``) -> names by 0-based index."""
    names: dict[int, str] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) < 3 or not parts[1].isdigit():
                    raise DataError(f"--classes_path {path} line {lineno} is not '<wnid> <index> <name>'")
                names[int(parts[1]) - 1] = parts[2]
    except OSError as err:
        raise DataError(f"--classes_path {path} cannot be read ({err.strerror or err})") from None
    return [names.get(i, str(i)) for i in range(max(names) + 1)] if names else []


def run_evaluation(args, loaded, root: Path | None, out: Path | None, device) -> int:
    import numpy as np
    from torch.utils.data import DataLoader

    from ..data.transforms import eval_pipeline
    from ..engine.evaluate import evaluate

    model = loaded.model
    info = model.info
    dataset_name = args.dataset if args.dataset and args.dataset != "folder" else "folder"
    pre = loaded.preprocessing.with_flags(mode=args.eval_transform)  # default: the checkpoint's
    size, mode = pre.image_size, pre.mode
    if dataset_name == "folder":
        from ..data.folders import ImageFolderDataset

        ds = ImageFolderDataset(root, eval_pipeline(pre), on_bad_image=args.on_bad_image)
        classes = ds.classes
        where = str(root)
    else:
        from ..data import load_datasets

        ds = load_datasets(dataset_name, args.data_path, info, size, eval_mode=mode).val
        classes = list(getattr(ds, "classes", [])) or [str(i) for i in range(info.num_classes)]
        where = f"{dataset_name} val split"
    n_out = info.num_classes
    if len(classes) != n_out:
        raise DataError(f"{where} has {len(classes)} classes but {loaded.name} outputs {n_out}; use a checkpoint "
                        f"trained on these classes or pass --num_classes {len(classes)} with one")
    if loaded.classes and list(loaded.classes) != list(classes):
        raise DataError(f"the classes of {where} differ from the checkpoint's training classes "
                        f"(e.g. {classes[0]!r} vs {loaded.classes[0]!r}); evaluate on the same class folders")
    from ..engine.workers import inference_workers

    workers = args.workers if args.workers is not None else inference_workers(device)
    loader = DataLoader(ds, batch_size=args.batch_size or 64, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda", collate_fn=getattr(ds, "collate", None))
    model.to(device)
    t0 = time.perf_counter()
    res = evaluate(model, loader, device=device, amp=amp_mode(args), desc="test", progress=progress_enabled(args),
                   num_classes=n_out, channels_last=channels_last_flag(args))
    dur = (time.perf_counter() - t0) / max(1, len(loader))
    record = {"loss": res.loss, "top1": res.top1, "top5": res.top5, "dur": dur}
    print(f"val: {record}")
    order = np.argsort(np.nan_to_num(res.per_class, nan=2.0))
    worst = ", ".join(f"{classes[i]} {res.per_class[i]:.3f}" for i in order[:5] if not np.isnan(res.per_class[i]))
    print(f"{res.n} images, {len(classes)} classes; lowest per-class accuracy: {worst}")
    report_skipped(res.skipped, out)
    if out is None:
        print("nothing written: give -o/--output_path for the per-class accuracy, confusion matrix and predictions")
        return 0
    unread = {u.index for u in res.skipped}
    samples = [(str(s[0]), int(s[1])) for i, s in enumerate(getattr(ds, "samples", [])) if i not in unread]
    files = write_evaluation(out, res, classes, record, samples, meta={
        **loaded.describe(),
        "data": where, "image_size": size, "device": str(device),
        "transform": "resize+center_crop" if mode == "resize_crop" else "none",
    })
    for f in files:
        print(f"  {f}")
    return 0


def write_evaluation(out: Path, res, classes: list[str], record: dict, samples: list[tuple[str, int]],
                     meta: dict) -> list[Path]:
    """summary.json, per_class.csv, confusion.csv, confusion.png and predictions.csv in ``out``; skipped.txt
    when unreadable images were left out (``samples``: the images read, in loader order)."""
    import numpy as np

    from ..data.folders import write_skipped
    from ..plots.evaluation import confusion_matrix_png

    out.mkdir(parents=True, exist_ok=True)
    conf = res.confusion
    support = conf.sum(axis=1)
    skipped = list(getattr(res, "skipped", []))
    summary = {**meta, "n_images": res.n, "n_skipped": len(skipped), "num_classes": len(classes), **record,
               "mean_per_class_accuracy": float(np.nanmean(res.per_class)) if len(res.per_class) else None}
    if skipped:
        summary["skipped"] = [u.path for u in skipped]
    write_json(out / "summary.json", summary)
    write_csv(out / "per_class.csv", [["class_index", "class", "n_images", "correct", "accuracy"]] + [
        [i, c, int(support[i]), int(conf[i, i]), "" if np.isnan(res.per_class[i]) else f"{res.per_class[i]:.6f}"]
        for i, c in enumerate(classes)])
    write_csv(out / "confusion.csv", [["true \\ predicted", *classes]] + [
        [c, *[int(v) for v in conf[i]]] for i, c in enumerate(classes)])
    files = [out / "summary.json", out / "per_class.csv", out / "confusion.csv"]
    if skipped:
        files.append(write_skipped(out / "skipped.txt", skipped))
    else:  # an earlier run's list would describe images this run read
        (out / "skipped.txt").unlink(missing_ok=True)
    preds = res.predictions
    if len(preds) == len(samples):
        def name(i: int) -> str:
            return classes[i] if 0 <= i < len(classes) else ""

        write_csv(out / "predictions.csv", [["image", "label", "prediction", "label_name", "prediction_name"]] + [
            [path, label, int(y), name(label), name(int(y))] for (path, label), y in zip(samples, preds)])
        files.append(out / "predictions.csv")
    files.append(confusion_matrix_png(conf, classes, out / "confusion.png",
                                      title=f"{meta.get('model')}: top-1 {record['top1']:.3f} on {res.n} images"))
    return files

