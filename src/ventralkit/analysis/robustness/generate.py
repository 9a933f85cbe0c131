"""Make an ImageNet-C-style corrupted copy of an image folder.

``corrupt_dataset(src, dst)`` writes ``dst/<corruption>/<severity>/<class>/<image>`` with the
corruption functions of ``imagecorruptions`` (the maintained ``imagecorruptions-imaug`` fork).

* Deterministic: every (corruption, severity, image) is seeded from a hash of
  ``(seed, corruption, severity, relative path)``, so the output does not depend on the number of
  worker processes or on the order in which images are done.
* Never clean: a corruption that returns non-finite pixels (spatter divides by the maximum of its
  liquid mask, which is 0 when no drop survives the threshold on a small image) is drawn again with
  the next seeds, ``job_seed + 1, + 2, ...``, and the manifest records which outputs needed it.
* Resumable: an output that exists is finished (each image is written under a temporary name in
  its final folder and renamed into place), so a re-run only does what is missing and removes the
  temporary files an interrupted run left behind.
* Parallel: a task is a batch of source images (each read once, every pending corruption and
  severity applied), spread over a process pool; the output folders are created once, up front.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import re
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ...engine.progress import progress_bar
from ...errors import ConfigError, DataError
from ...files import ensure_writable_dir, write_json
from ...data.listing import VAL_NAMES, is_image, open_rgb, scan_classes
from .names import ALL, resolve_corruptions, resolve_severities

#: JPEG outputs use Hendrycks' setting for the released -C sets: quality 85, optimize=True
#: (hendrycks/robustness ImageNet-C/create_c/make_imagenet_c.py and make_tinyimagenet_c.py)
JPEG_QUALITY = 85
#: imagecorruptions refuses smaller images
MIN_SIZE = 32
#: corruptions whose randomness does not come from numpy's global RNG but from a ``seed`` argument
_SEED_ARGUMENT = ("glass_blur", "impulse_noise")
#: further seeds tried for one output whose corruption keeps returning non-finite pixels
MAX_REDRAWS = 20
MANIFEST = "ventralkit_corrupt.json"
#: outputs that workers drew again, one JSON object per line, appended before the output is written and folded
#: into the manifest at the start of a run (which covers a run that was killed) and at its end
REDRAW_LOG = ".ventralkit_corrupt_redrawn.jsonl"
_TEMP = re.compile(r"^\..+\.\d+\.tmp$")


@dataclass
class CorruptionRun:
    """What ``corrupt_dataset`` did."""

    dst: Path
    corruptions: list[str]
    severities: list[int]
    images: int  # source images
    written: int  # output files written by this call
    skipped: int  # output files already present (earlier run)
    #: "<corruption>/<severity>/<class>/<image>" -> redraws (the output's seed is job_seed + redraws): outputs
    #: whose first draws gave non-finite pixels, written by this call
    redrawn: dict[str, int] = field(default_factory=dict)

    @property
    def outputs(self) -> int:
        return self.written + self.skipped


def job_seed(seed: int, corruption: str, severity: int, relpath: str) -> int:
    """A 32-bit seed for one output image, independent of scheduling."""
    key = f"{int(seed)}\0{corruption}\0{int(severity)}\0{relpath}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "little")


def corrupt_image(image, corruption: str, severity: int, seed: int | None = None) -> np.ndarray:
    """One corrupted copy of ``image`` (PIL image or uint8 array, at least 32x32) as an HxWx3 uint8 array.

    Same result as ``imagecorruptions.corrupt`` seeded with ``seed`` (numpy's global RNG is seeded and
    restored afterwards; glass_blur and impulse_noise get ``seed`` as an argument, as they ignore the
    global RNG; ``seed=None`` draws from the global RNG as imagecorruptions does), except when the
    corruption returns non-finite pixels: spatter divides by the maximum of its liquid mask, which is 0
    when no drop survives the threshold (this happens on small images), and the NaNs would be cast to
    black or replaced by the clean image. Such a draw is repeated with ``seed + 1``, ``seed + 2``, ...
    (at most ``MAX_REDRAWS`` times, then a RuntimeError), so the result is always a corrupted image.
    """
    out, _ = _corrupt_array(_rgb_array(image), corruption, severity, seed)
    return out


def _rgb_array(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = image if image.mode == "RGB" else image.convert("RGB")
        return np.asarray(image, dtype=np.uint8)
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ConfigError(f"images to corrupt must be uint8 arrays, got {arr.dtype}")
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise ConfigError(f"images to corrupt must be HxW or HxWx3 arrays, got shape {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return arr


def _corrupt_array(arr: np.ndarray, corruption: str, severity: int, seed: int | None,
                   keep_rng: bool = True) -> tuple[np.ndarray, int]:
    """(uint8 output, number of redraws after non-finite draws).

    keep_rng: give numpy's global RNG its state back afterwards (get_state + set_state cost ~0.4 ms, more
    than a cheap corruption of a 64-px image; corrupt_dataset's workers reseed before every output anyway).
    """
    from imagecorruptions import corruption_dict

    if corruption not in corruption_dict:
        resolve_corruptions([corruption])  # raises the one-line error with suggestions
    if int(severity) not in (1, 2, 3, 4, 5):
        resolve_severities([severity])
    h, w = arr.shape[:2]
    if min(h, w) < MIN_SIZE:
        raise DataError(f"image is {w}x{h} pixels; corruptions need at least {MIN_SIZE}x{MIN_SIZE}")
    for redraws in range(MAX_REDRAWS + 1):
        draw_seed = None if seed is None else (int(seed) + redraws) % 2**32
        out = _draw(corruption_dict[corruption], arr, corruption, int(severity), draw_seed, keep_rng)
        if out.shape != arr.shape:
            raise RuntimeError(f"{corruption} returned shape {out.shape} for an image of shape {arr.shape}")
        if out.dtype == np.uint8:  # a PIL image (jpeg_compression, pixelate)
            return out, redraws
        if out.dtype.kind != "f" or np.isfinite(out).all():
            # imagecorruptions.corrupt ends in np.uint8(...), i.e. truncation of values already clipped to 0..255
            return np.clip(out, 0, 255).astype(np.uint8), redraws
    raise RuntimeError(f"{corruption} severity {severity} gave non-finite pixels for {MAX_REDRAWS + 1} seeds in a "
                       f"row on a {w}x{h} image (from seed {seed}); the image cannot be corrupted this way")


def _draw(function, arr: np.ndarray, corruption: str, severity: int, seed: int | None,
          keep_rng: bool = True) -> np.ndarray:
    """One call of an imagecorruptions function, seeded as ``imagecorruptions.corrupt`` would be."""
    kwargs = {"seed": seed} if (corruption in _SEED_ARGUMENT and seed is not None) else {}
    state = np.random.get_state() if (seed is not None and keep_rng) else None
    try:
        if seed is not None:
            np.random.seed(seed)
        with np.errstate(invalid="ignore", divide="ignore"), _frost_pictures_cached(corruption == "frost"):
            return np.asarray(function(Image.fromarray(arr), severity, **kwargs))
    finally:
        if state is not None:
            np.random.set_state(state)


class _FrostCv2:
    """``cv2`` as imagecorruptions' frost sees it while ventralkit calls it: the six frost pictures are read
    from disk and rescaled once per process instead of on every call (10-40 ms each, more than the
    corruption itself on a 64-px image). The cached arrays are read-only (frost only reads them), so the
    result is the same bytes."""

    def __init__(self, cv2):
        self._cv2 = cv2
        self._read: dict[str, np.ndarray] = {}
        self._resized: dict[tuple, np.ndarray] = {}

    def __getattr__(self, name):
        return getattr(self._cv2, name)

    def imread(self, path, *args):
        key = f"{os.fspath(path)}\0{args}"
        if key not in self._read:
            image = self._cv2.imread(path, *args)
            if image is None:
                return image
            image.setflags(write=False)
            self._read[key] = image
        return self._read[key]

    def resize(self, src, dsize=None, *args, **kwargs):
        if not any(src is image for image in self._read.values()):
            return self._cv2.resize(src, dsize, *args, **kwargs)
        key = (id(src), tuple(dsize), args, tuple(sorted(kwargs.items())))
        if key not in self._resized:
            if len(self._resized) >= 24:  # a few image sizes at a time
                self._resized.clear()
            image = self._cv2.resize(src, dsize, *args, **kwargs)
            image.setflags(write=False)
            self._resized[key] = image
        return self._resized[key]


_FROST_CV2: list[_FrostCv2] = []


@contextlib.contextmanager
def _frost_pictures_cached(active: bool):
    if not active:
        yield
        return
    from imagecorruptions import corruptions

    real = corruptions.cv2
    if not _FROST_CV2:
        _FROST_CV2.append(_FrostCv2(real))
    corruptions.cv2 = _FROST_CV2[0]
    try:
        yield
    finally:
        corruptions.cv2 = real


# ---------------------------------------------------------------------------------------------
# files


def _save_format(suffix: str, quality: int) -> tuple[str, dict, str | None]:
    """PIL format, save options and target mode for an output with this extension."""
    ext = suffix.lower()
    if ext in (".jpg", ".jpeg"):
        return "JPEG", {"quality": int(quality), "optimize": True}, None
    if ext == ".webp":
        return "WEBP", {"lossless": True}, None
    if ext == ".pgm":
        return "PPM", {}, "L"
    fmt = Image.registered_extensions().get(ext)
    if fmt is None:
        raise DataError(f"cannot write images with extension {suffix!r}")
    return fmt, {}, None


def save_image_atomic(arr: np.ndarray, path: Path, quality: int = JPEG_QUALITY) -> None:
    """Write ``arr`` to ``path`` so that ``path`` is either absent or complete."""
    fmt, options, mode = _save_format(path.suffix, quality)
    img = Image.fromarray(arr)
    if mode:
        img = img.convert(mode)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        try:
            img.save(tmp, format=fmt, **options)
        except FileNotFoundError:  # corrupt_dataset creates the folders up front; other callers may not have
            path.parent.mkdir(parents=True, exist_ok=True)
            img.save(tmp, format=fmt, **options)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _load_source(path: str, size: int | None) -> np.ndarray:
    img = open_rgb(path)
    if size:
        # the ImageNet-C protocol, torchvision's arithmetic: Resize(size * 256/224) of the shorter side
        # (the longer one truncated, as transforms.Resize does), then CenterCrop(size) (offsets rounded)
        short = int(size * 256 / 224)
        w, h = img.size
        nw, nh = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
        nw, nh = max(size, nw), max(size, nh)
        img = img.resize((nw, nh), Image.BILINEAR)
        left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
        img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.uint8)


def _corrupt_one(job: tuple) -> tuple[int, dict[str, int], str | None, str | None]:
    """Worker: all pending outputs of one source image -> (written, redrawn, error kind, message)."""
    src_path, rel, pairs, dst, seed, size, quality = job
    try:
        arr = _load_source(src_path, size)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        return 0, {}, "data", f"cannot read image {src_path} ({err}); fix or delete it"
    h, w = arr.shape[:2]
    if min(h, w) < MIN_SIZE:
        return 0, {}, "data", (f"{src_path} is {w}x{h} pixels; corruptions need at least {MIN_SIZE}x{MIN_SIZE} "
                               f"(pass --size {MIN_SIZE} or more to resize the images first)")
    written, redrawn = 0, {}
    for corruption, severity in pairs:
        out_path = Path(dst, corruption, str(severity), rel)
        try:
            out, redraws = _corrupt_array(arr, corruption, severity, job_seed(seed, corruption, severity, rel),
                                          keep_rng=False)
        except Exception:
            return written, redrawn, "bug", (f"{corruption} severity {severity} failed on {src_path}:\n"
                                             f"{traceback.format_exc()}")
        if redraws:
            key = f"{corruption}/{severity}/{rel}"
            redrawn[key] = redraws
            _log_redraw(dst, key, redraws)
        save_image_atomic(out, out_path, quality)
        written += 1
    return written, redrawn, None, None


def _log_redraw(dst: str, key: str, redraws: int) -> None:
    """One line appended in a single write (workers share the file; short appends do not interleave)."""
    fd = os.open(os.path.join(dst, REDRAW_LOG), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps({key: redraws}) + "\n").encode())
    finally:
        os.close(fd)


def _pool_context(warm: bool = False):
    """Workers are forked from a fresh single-threaded server (forkserver), never from the caller: forking a
    process with other threads running (OpenCV's pool, which frost, snow and spatter use; torch; numba) can
    leave the child deadlocked on a lock copied in the held state; plain fork hung here in testing."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        preload = [__name__, "imagecorruptions"]  # imported once in the server, shared by every worker
        if warm:
            preload.append(f"{__package__}._warm_numba")
        ctx.set_forkserver_preload(preload)  # no effect once the server runs
        return ctx
    return multiprocessing.get_context("spawn")


def _corrupt_many(jobs: list[tuple]) -> list[tuple]:
    results = []
    for job in jobs:
        results.append(_corrupt_one(job))
        if results[-1][2] is not None:
            break
    return results


def _run_jobs(jobs: list[tuple], n_workers: int):
    """Results of ``_corrupt_one`` for every job, in this process or in a process pool (as they finish)."""
    if n_workers <= 1:
        yield from map(_corrupt_one, jobs)
        return
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    chunk = max(1, min(16, len(jobs) // (n_workers * 8)))
    chunks = [jobs[i:i + chunk] for i in range(0, len(jobs), chunk)]
    # a broken pool (a worker that died, e.g. a script without the __main__ guard re-run by every worker)
    # raises instead of being refilled forever, as multiprocessing.Pool would
    warm = any(c in ("glass_blur", "frost") for job in jobs for c, _ in job[2])
    executor = ProcessPoolExecutor(n_workers, mp_context=_pool_context(warm), initializer=_init_worker)
    try:
        pending = {executor.submit(_corrupt_many, c) for c in chunks[: 4 * n_workers]}
        queued = iter(chunks[4 * n_workers:])
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    results = future.result()
                except BrokenProcessPool:
                    raise RuntimeError(
                        "a corruption worker process died; when calling corrupt_dataset from a script, put the "
                        "call under `if __name__ == \"__main__\":` (workers start by importing the script), "
                        "or pass workers=0") from None
                yield from results
                nxt = next(queued, None)
                if nxt is not None:
                    pending.add(executor.submit(_corrupt_many, nxt))
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _init_worker() -> None:
    try:
        import cv2

        cv2.setNumThreads(1)  # one process per core already
    except Exception:  # pragma: no cover - cv2 is a dependency of imagecorruptions
        pass


# ---------------------------------------------------------------------------------------------
# input checks


def _source_images(src: Path) -> list[str]:
    """Relative paths (posix) of every image under src/<class>/, with one-line errors for wrong folders."""
    if not src.exists():
        raise DataError(f"{src} does not exist; give a folder of class sub-folders of images (e.g. a val/ split)")
    if not src.is_dir():
        raise DataError(f"{src} is not a folder; give a folder of class sub-folders of images (e.g. a val/ split)")
    subdirs = {e.name for e in os.scandir(src) if e.is_dir() and not e.name.startswith(".")}
    if "train" in subdirs and subdirs & set(VAL_NAMES):
        val = next(n for n in VAL_NAMES if n in subdirs)
        raise DataError(f"{src} looks like a dataset root (it has train/ and {val}/); "
                        f"give the split to corrupt, e.g. {src / val}")
    already = sorted(subdirs & set(ALL))
    if already:
        raise DataError(f"{src} looks like a corrupted dataset already (it has {already[0]}/); "
                        "give the clean folder of class sub-folders")
    if not subdirs:
        if any(is_image(e.name) for e in os.scandir(src) if e.is_file()):
            raise DataError(f"{src} holds images directly; corrupt expects class sub-folders, "
                            f"{src}/<class>/<image> (move the images into e.g. {src}/images/)")
        raise DataError(f"{src} is empty; put images in class sub-folders, {src}/<class>/<image>")
    _, samples = scan_classes(src)
    return [Path(p).relative_to(src).as_posix() for p, _ in samples]


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return os.cpu_count() or 1


def _imagecorruptions_version() -> str:
    from importlib import metadata

    for dist in ("imagecorruptions-imaug", "imagecorruptions"):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def _check_manifest(dst: Path, settings: dict, corruptions: list[str], severities: list[int], src: Path) -> dict:
    """Refuse to resume into a DST made with other settings; record what this run adds (returns the manifest)."""
    path = dst / MANIFEST
    manifest = {}
    if path.is_file():
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            manifest = {}
        for key, value in settings.items():
            if key in manifest and manifest[key] != value:
                flag = {"seed": "--seed", "size": "--size", "jpeg_quality": "--jpeg_quality"}[key]
                raise ConfigError(f"{dst} was made with {key}={manifest[key]} but this run has {key}={value}; "
                                  f"pass {flag} {manifest[key]} to resume it, or choose a new DST")
    manifest.update(settings)
    manifest["source"] = str(src)
    manifest["imagecorruptions"] = _imagecorruptions_version()
    manifest["corruptions"] = [c for c in ALL if c in set(manifest.get("corruptions", [])) | set(corruptions)]
    manifest["severities"] = sorted(set(manifest.get("severities", [])) | set(severities))
    manifest.setdefault("redrawn", {})
    write_json(path, manifest)
    return manifest


def _fold_redraw_log(dst: Path, manifest: dict) -> None:
    """Move the workers' redraw records into the manifest (when no worker runs)."""
    log = dst / REDRAW_LOG
    if not log.is_file():
        return
    found = {}
    for line in log.read_text().splitlines():
        try:
            found.update(json.loads(line))
        except ValueError:  # a line cut short by a kill; that output is drawn (and logged) again on resume
            continue
    manifest["redrawn"] = dict(sorted({**manifest.get("redrawn", {}), **found}.items()))
    write_json(dst / MANIFEST, manifest)
    log.unlink()


# ---------------------------------------------------------------------------------------------


def corrupt_dataset(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    corruptions=None,
    severities=(1, 2, 3, 4, 5),
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    size: int | None = None,
    jpeg_quality: int = JPEG_QUALITY,
) -> CorruptionRun:
    """Write ``dst/<corruption>/<severity>/<class>/<image>`` for every image of ``src/<class>/``.

    corruptions: names or groups (``noise``, ``blur``, ``weather``, ``digital``, ``extra``,
        ``benchmark`` = the 15, ``all`` = the 19); None = all 19.
    severities: integers in 1..5.
    seed: the same seed gives byte-identical outputs, whatever ``workers`` is.
    workers: processes; None = every available core, 0 or 1 = in this process.
    size: None keeps every image as it is; N first applies the ImageNet-C protocol
        (shorter side resized to N*256/224, centre crop N x N).
    jpeg_quality: quality of JPEG outputs (85, optimize=True, as Hendrycks' released sets).

    Outputs keep the source file name and format (JPEG in, JPEG out; PNG stays lossless).
    Existing outputs are kept, so an interrupted run resumes where it stopped. Outputs whose first
    draws gave non-finite pixels are listed, with their number of redraws, in the manifest's
    ``redrawn`` and in the returned ``CorruptionRun.redrawn``.
    """
    src, dst = Path(src), Path(dst)
    corruptions = resolve_corruptions(corruptions)
    severities = resolve_severities(severities)
    if size is not None and int(size) < MIN_SIZE:
        raise ConfigError(f"--size {size} is below {MIN_SIZE}; imagecorruptions needs images of at least "
                          f"{MIN_SIZE}x{MIN_SIZE} pixels")
    if not 1 <= int(jpeg_quality) <= 100:
        raise ConfigError(f"--jpeg_quality {jpeg_quality} is outside 1..100")
    if workers is not None and int(workers) < 0:
        raise ConfigError(f"--workers {workers} is negative")
    rels = _source_images(src)
    src_abs, dst_abs = src.resolve(), dst.resolve()
    if dst_abs == src_abs or src_abs in dst_abs.parents:
        raise ConfigError(f"DST {dst} is inside SRC {src}; write the corrupted copy somewhere else")
    settings = {"seed": int(seed), "size": None if size is None else int(size), "jpeg_quality": int(jpeg_quality)}
    ensure_writable_dir(dst, flag="DST")
    manifest = _check_manifest(dst, settings, corruptions, severities, src_abs)
    _fold_redraw_log(dst, manifest)

    listings: dict[Path, set[str]] = {}

    def finished(out_dir: Path) -> set[str]:
        if out_dir not in listings:
            names = set(os.listdir(out_dir)) if out_dir.is_dir() else set()
            for name in [n for n in names if _TEMP.match(n)]:  # left by an interrupted run
                (out_dir / name).unlink(missing_ok=True)
                names.discard(name)
            listings[out_dir] = names
        return listings[out_dir]

    jobs, skipped, folders = [], 0, set()
    for rel in rels:
        parent, name = os.path.split(rel)
        pairs = []
        for corruption in corruptions:
            for severity in severities:
                out_dir = dst / corruption / str(severity) / parent
                if name in finished(out_dir):
                    skipped += 1
                else:
                    pairs.append((corruption, severity))
                    folders.add(out_dir)
        if pairs:
            jobs.append((str(src / rel), rel, pairs, str(dst), int(seed), settings["size"], int(jpeg_quality)))
    listings.clear()
    for out_dir in sorted(folders):  # once per folder here, not once per file in the workers
        out_dir.mkdir(parents=True, exist_ok=True)

    run = CorruptionRun(dst=dst, corruptions=corruptions, severities=severities, images=len(rels),
                        written=0, skipped=skipped)
    if not jobs:
        return run
    n_workers = _available_cores() if workers is None else int(workers)
    n_workers = max(1, min(n_workers, len(jobs)))
    total = sum(len(job[2]) for job in jobs)
    results = _run_jobs(jobs, n_workers)
    try:
        with progress_bar(total=total, desc="corrupt", enabled=progress, unit="img") as bar:
            for written, redrawn, kind, message in results:
                run.written += written
                run.redrawn.update(redrawn)
                bar.update(written)
                if kind == "data":
                    raise DataError(message)
                if kind is not None:
                    raise RuntimeError(message)
    finally:
        results.close()  # stops the pool now if we leave early
        _fold_redraw_log(dst, manifest)
    run.redrawn = dict(sorted(run.redrawn.items()))
    return run
