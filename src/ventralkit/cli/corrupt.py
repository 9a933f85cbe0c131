"""``ventralkit corrupt SRC DST``: write an ImageNet-C-style corrupted copy of an image folder."""

from __future__ import annotations

from .common import positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "corrupt",
        help="make a corrupted copy of an image folder (ImageNet-C style)",
        description="Write DST/<corruption>/<severity>/<class>/<image> for every image of SRC/<class>/, "
                    "with the 15 ImageNet-C corruptions and 4 extras. Deterministic given --seed; "
                    "re-running resumes (finished images are kept).",
    )
    p.add_argument("src", metavar="SRC_VAL_DIR", help="clean images in class sub-folders, e.g. imagenet/val")
    p.add_argument("dst", metavar="DST_DIR", help="output root")
    p.add_argument("--corruptions", nargs="+", default=None, metavar="NAME",
                   help="corruption names or groups: noise, blur, weather, digital, extra, benchmark (the 15), "
                        "all (default: all 19)")
    p.add_argument("--severities", nargs="+", type=int, default=[1, 2, 3, 4, 5], metavar="S",
                   help="severities in 1..5 (default: all five)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    p.add_argument("-j", "--workers", type=int, default=None,
                   help="processes (default: every available core; 0 = in this process)")
    p.add_argument("--size", type=positive_int, default=None,
                   help="first resize the shorter side to SIZE*256/224 and centre-crop SIZE (ImageNet-C used 224); "
                        "default: keep the images as they are")
    p.add_argument("--jpeg_quality", type=int, default=85, help="quality of JPEG outputs (default 85, as ImageNet-C)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis.robustness import corrupt_dataset
    from ..analysis.robustness.generate import CorruptionPoolError

    try:
        result = corrupt_dataset(args.src, args.dst, corruptions=args.corruptions, severities=args.severities,
                                 seed=args.seed, workers=args.workers, progress=not args.quiet, size=args.size,
                                 jpeg_quality=args.jpeg_quality)
    except CorruptionPoolError as err:
        if err.starting and err.exitcode is not None and err.exitcode > 0:
            # the API's advice for this case is about Python scripts (the __main__ guard); not this command's
            raise CorruptionPoolError(f"a corruption worker exited with code {err.exitcode} while starting (its "
                                      "error is printed above); run with -j 0 to work in this process",
                                      starting=True, exitcode=err.exitcode) from None
        raise
    print(f"{result.outputs} images in {result.dst} ({len(result.corruptions)} corruptions x "
          f"{len(result.severities)} severities x {result.images} source images): "
          f"{result.written} written, {result.skipped} already there")
    if result.redrawn:
        first = next(iter(result.redrawn))
        print(f"{len(result.redrawn)} outputs gave non-finite pixels and were drawn again with the next seeds "
              f"(e.g. {first}); listed under 'redrawn' in {result.dst / 'ventralkit_corrupt.json'}")
    return 0
