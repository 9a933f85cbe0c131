"""``ventralkit corrupt SRC DST``: write an ImageNet-C-style corrupted copy of an image folder.

``--shard I/N`` writes shard I of N (one task of a SLURM array job); ``ventralkit corrupt --merge DST`` then
checks that every output exists and writes the one manifest (``analysis/robustness/shards.py``, ``merge.py``).
"""

from __future__ import annotations

from .common import positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "corrupt",
        help="make a corrupted copy of an image folder (ImageNet-C style)",
        description="Write DST/<corruption>/<severity>/<class>/<image> for every image of SRC/<class>/, "
                    "with the 15 ImageNet-C corruptions and 4 extras. Deterministic given --seed; "
                    "re-running resumes (finished images are kept). On a cluster: one --shard I/N per task of an "
                    "array job, then --merge DST.",
    )
    p.add_argument("src", metavar="SRC_VAL_DIR", help="clean images in class sub-folders, e.g. imagenet/val")
    p.add_argument("dst", metavar="DST_DIR", nargs="?", help="output root")
    p.add_argument("--corruptions", nargs="+", default=None, metavar="NAME",
                   help="corruption names or groups: noise, blur, weather, digital, extra, benchmark (the 15), "
                        "all (default: all 19)")
    p.add_argument("--severities", nargs="+", type=int, default=None, metavar="S",
                   help="severities in 1..5 (default: all five)")
    p.add_argument("--seed", type=int, default=None, help="same seed, same bytes (default 0)")
    p.add_argument("-j", "--workers", type=int, default=None,
                   help="processes (default: every available core; 0 = in this process)")
    p.add_argument("--size", type=positive_int, default=None,
                   help="first resize the shorter side to SIZE*256/224 and centre-crop SIZE (ImageNet-C used 224); "
                        "default: keep the images as they are")
    p.add_argument("--jpeg_quality", type=int, default=None,
                   help="quality of JPEG outputs (default 85, as ImageNet-C)")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="write only shard I of N (0-based; in a SLURM array job: "
                        "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT with --array=0-<N-1>), then --merge")
    p.add_argument("--merge", action="store_true",
                   help="`corrupt --merge DST` (or SRC DST): check every shard's outputs are there and write the one "
                        "manifest; on a finished DST, check its outputs. Options given are checked against the shards'")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis.robustness import corrupt_dataset
    from ..analysis.robustness.generate import JPEG_QUALITY, CorruptionPoolError
    from ..errors import ConfigError

    if args.merge:
        return merge(args)
    if args.dst is None:
        raise ConfigError("give SRC and DST (or `ventralkit corrupt --merge DST` to merge the shards in DST)")
    try:
        result = corrupt_dataset(args.src, args.dst, corruptions=args.corruptions,
                                 severities=args.severities or [1, 2, 3, 4, 5],
                                 seed=0 if args.seed is None else args.seed, workers=args.workers,
                                 progress=not args.quiet, size=args.size,
                                 jpeg_quality=JPEG_QUALITY if args.jpeg_quality is None else args.jpeg_quality,
                                 shard=args.shard)
    except CorruptionPoolError as err:
        if err.starting and err.exitcode is not None and err.exitcode > 0:
            # the API's advice for this case is about Python scripts (the __main__ guard); not this command's
            raise CorruptionPoolError(f"a corruption worker exited with code {err.exitcode} while starting (its "
                                      "error is printed above); run with -j 0 to work in this process",
                                      starting=True, exitcode=err.exitcode) from None
        raise
    which = f"shard {args.shard.strip()}: " if args.shard else ""
    print(f"{which}{result.outputs} images in {result.dst} ({len(result.corruptions)} corruptions x "
          f"{len(result.severities)} severities x {result.images} source images): "
          f"{result.written} written, {result.skipped} already there")
    if result.redrawn:
        first = next(iter(result.redrawn))
        print(f"{len(result.redrawn)} outputs gave non-finite pixels and were drawn again with the next seeds "
              f"(e.g. {first}); listed under 'redrawn' in "
              + ("the manifest --merge writes" if args.shard else f"{result.dst / 'ventralkit_corrupt.json'}"))
    if args.shard:
        print(f"when every shard is done: ventralkit corrupt --merge {result.dst}")
    return 0


def merge(args) -> int:
    """``--merge``: verify the shards' outputs and write the manifest (nothing is written unless all is there)."""
    from ..analysis.robustness.merge import merge_shards
    from ..errors import ConfigError

    if args.shard:
        raise ConfigError("--merge and --shard go in different commands: each array task runs --shard I/N, "
                          "one job after them runs --merge DST")
    src, dst = (None, args.src) if args.dst is None else (args.src, args.dst)
    result = merge_shards(dst, src, corruptions=args.corruptions, severities=args.severities, seed=args.seed,
                          size=args.size, jpeg_quality=args.jpeg_quality, progress=not args.quiet)
    grid = (f"{len(result.corruptions)} corruptions x {len(result.severities)} severities x {result.images} "
            "source images")
    if result.shards:
        print(f"merged {result.shards} shards: {result.outputs} images in {result.dst} ({grid}), none missing; "
              f"wrote {result.dst / 'ventralkit_corrupt.json'}")
    else:
        print(f"checked {result.dst}: {result.outputs} images ({grid}), none missing, nothing else")
    return 0
