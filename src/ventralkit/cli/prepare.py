"""``ventralkit prepare miniimagenet SRC [DST]``, ``prepare tiny-imagenet ROOT``, ``prepare digits DST``.

The first two are idempotent: a second run says the dataset is already prepared and changes nothing; a run
after an interruption finishes the job. Files are moved (renamed), never deleted or overwritten.
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "prepare",
        help="lay out a downloaded dataset as train/ and val/ class folders",
        description="Put a downloaded dataset into the train/ + val/ class-folder layout. "
                    "Safe to re-run: a finished dataset is left as it is.",
    )
    which = p.add_subparsers(dest="dataset", metavar="DATASET", parser_class=type(p))
    which.required = True

    m = which.add_parser(
        "miniimagenet",
        help="MiniImageNet (Kaggle ctrnngtrung/miniimagenet): test/ becomes val/, as CORnet-100 does",
        description="MiniImageNet, 100 classes, as CORnet-100 uses it: the download's test/ split becomes "
                    "val/. Without DST the download folder is prepared in place (one rename).",
    )
    m.add_argument("src", metavar="SRC", help="the unpacked download (with train/ and test/)")
    m.add_argument("dst", metavar="DST", nargs="?", default=None,
                   help="where to put train/ and val/ (default: in place in SRC)")
    m.add_argument("--mode", choices=["move", "copy", "symlink"], default="move",
                   help="with DST: move the class folders (default), copy them, or symlink the splits")
    m.add_argument("--val_from", choices=["test", "val"], default=None,
                   help="which download split becomes val/ when it has both (CORnet-100: test)")
    m.set_defaults(func=run_miniimagenet)

    t = which.add_parser(
        "tiny-imagenet",
        help="Tiny-ImageNet-200: sort val/images into val/<wnid>/ from val_annotations.txt",
        description="Tiny-ImageNet (tiny-imagenet-200): moves val/images/*.JPEG into val/<wnid>/ using "
                    "val/val_annotations.txt, in place. train/<wnid>/images/ is used as it is.",
    )
    t.add_argument("root", metavar="ROOT", help="the tiny-imagenet-200 folder")
    t.set_defaults(func=run_tiny_imagenet)

    d = which.add_parser(
        "digits",
        help="write the embedded digits as DST/train/<class>/ and DST/val/<class>/ PNGs",
        description="Write the embedded 8x8 digits (scikit-learn) as an image folder with the same "
                    "train/val split the 'digits' dataset uses, e.g. to try `ventralkit corrupt` and "
                    "`ventralkit robustness` on a model trained by `ventralkit demo`.",
    )
    d.add_argument("dst", metavar="DST", help="output folder (created; files of the same name are overwritten)")
    d.add_argument("--imsize", type=int, default=32, help="image size in pixels (default 32, the demo's)")
    d.add_argument("--per_class", type=int, default=None, help="at most this many images per class and split")
    d.set_defaults(func=run_digits)


def run_miniimagenet(args) -> int:
    from ..data.prepare import prepare_miniimagenet

    prepare_miniimagenet(args.src, args.dst, mode=args.mode, val_from=args.val_from)
    return 0


def run_tiny_imagenet(args) -> int:
    from ..data.prepare import prepare_tiny_imagenet

    prepare_tiny_imagenet(args.root)
    return 0


def run_digits(args) -> int:
    from ..data.embedded import write_digits_folder
    from ..errors import ConfigError
    from ..files import ensure_writable_dir

    if args.imsize < 8:
        raise ConfigError(f"--imsize {args.imsize} is too small for the digits; use 8 or more")
    if args.per_class is not None and args.per_class < 1:
        raise ConfigError(f"--per_class {args.per_class} must be at least 1")
    ensure_writable_dir(args.dst, flag="DST")
    root = write_digits_folder(args.dst, image_size=args.imsize, per_class=args.per_class)
    print(f"wrote {root}/train and {root}/val (digits, {args.imsize} px)")
    return 0
