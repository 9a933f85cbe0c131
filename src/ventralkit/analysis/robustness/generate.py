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
* Never hangs: workers fork from a server that never ran a thread pool (``_fork_safe``); each reports every
  output before starting it, and one that makes no progress for ``stall_limit`` seconds, or dies, stops the
  run with one line naming what it was on (``CorruptionPoolError``); Ctrl-C kills the workers.
* A failed start leaves nothing: source headers are checked before any output, and a run that fails before
  finishing an output removes what it made.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import posixpath
import re
import shutil
import signal
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ...engine.progress import progress_bar
from ...errors import ConfigError, DataError, VentralkitError
from ...files import ensure_writable_dir, write_json
from ...data.imagenet_c import ALL, resolve_corruptions, resolve_severities
from ...data.listing import VAL_NAMES, is_image, open_rgb, scan_classes
from .shards import SHARD_DIR, Shard, check_against_records, new_record, parse_shard, read_records, write_record

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
_TEMP_OF = re.compile(r"^\.(.+)\.\d+\.tmp$")  # group 1: the output's name


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


def _corrupt_one(job: tuple, on_output=None) -> tuple[int, dict[str, int], str | None, str | None]:
    """Worker: all pending outputs of one source image -> (written, redrawn, error kind, message).

    on_output(k): called before the k-th pending output is begun (a pool worker's heartbeat)."""
    src_path, rel, pairs, dst, seed, size, quality = job[:7]
    log = job[7] if len(job) > 7 else REDRAW_LOG  # a shard's own log (shards.Shard.redraw_log)
    try:
        arr = _load_source(src_path, size)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        return 0, {}, "data", f"cannot read image {src_path} ({err}); fix or delete it"
    h, w = arr.shape[:2]
    if min(h, w) < MIN_SIZE:
        return 0, {}, "data", _too_small(src_path, w, h)
    written, redrawn = 0, {}
    for k, (corruption, severity) in enumerate(pairs):
        if on_output is not None:
            on_output(k)
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
            _log_redraw(dst, key, redraws, log)
        save_image_atomic(out, out_path, quality)
        written += 1
    return written, redrawn, None, None


def _too_small(path, w: int, h: int, resumed_without_size: bool = False) -> str:
    advice = ("resize or remove it (DST was made without --size, so its images are used as they are; "
              f"or pass --size {MIN_SIZE} or more with a new DST)" if resumed_without_size
              else f"pass --size {MIN_SIZE} or more to resize the images first")
    return f"{path} is {w}x{h} pixels; corruptions need at least {MIN_SIZE}x{MIN_SIZE} ({advice})"


def _log_redraw(dst: str, key: str, redraws: int, log: str = REDRAW_LOG) -> None:
    """One line appended in a single write (workers share the file; short appends do not interleave)."""
    fd = os.open(os.path.join(dst, log), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps({key: redraws}) + "\n").encode())
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# the worker pool


#: a worker that spends longer than this on one output (or on starting) is stuck: the pool is stopped. The
#: slowest corruptions (zoom_blur, glass_blur) take under 1 s for a 512 x 512 image on one core, so the base
#: (for images up to ~0.1 megapixels) and the allowance per megapixel of the largest image leave a margin of
#: about 100 for a loaded machine and for a worker's start (imports, glass_blur's compiled kernel)
STALL_BASE_S = 180.0
STALL_PER_MEGAPIXEL_S = 120.0
#: environment override of the stall limit, in seconds (used by the tests to stop a stalled pool quickly)
STALL_ENV = "VENTRALKIT_CORRUPT_STALL_S"
#: seconds workers get to exit after the last chunk before they are killed
_EXIT_GRACE_S = 10.0


class CorruptionPoolError(VentralkitError):
    """The worker pool stopped: a worker hung (no progress within the stall limit) or died (killed, e.g. by
    the out-of-memory killer). The message is one line naming what the worker was on; outputs already written
    are complete and kept, so re-running resumes. Exit code 1 from the CLI (not a mistake in the input)."""

    exit_code = 1

    def __init__(self, message: str, starting: bool = False, exitcode: int | None = None):
        super().__init__(message)
        self.starting = starting  # the worker had not begun any image
        self.exitcode = exitcode  # of a dead worker: negative = killed by that signal


def _pool_context(warm: bool = False):
    """Workers are forked from a fresh single-threaded server (forkserver), never from the caller: forking a
    process with other threads running (OpenCV's pool, which frost, snow and spatter use; torch; numba) can
    leave the child deadlocked on a lock copied in the held state; plain fork hung here in testing. The server
    itself must stay single-threaded too: ``_fork_safe`` (one OpenCV thread) is imported before anything that
    could run OpenCV there (the warm-up)."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        preload = [f"{__package__}._fork_safe", __name__, "imagecorruptions"]  # imported once in the server
        if warm:
            preload.append(f"{__package__}._warm_numba")
        ctx.set_forkserver_preload(preload)  # no effect once the server runs
        return ctx
    return multiprocessing.get_context("spawn")


def _start_forkserver_deaf_to_ctrl_c() -> None:
    """Start the forkserver with SIGINT ignored from its first instruction (an ignored signal stays ignored
    across exec), so a Ctrl-C while it imports and warms up (seconds of numba compilation) reaches only the
    command, which stops the pool. Python's forkserver ignores SIGINT itself only after its preloads, so such a
    Ctrl-C printed the server's KeyboardInterrupt traceback under the command's ``interrupted``. The server
    exits when the command closes its end, as before."""
    from multiprocessing import forkserver

    try:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals are not ours to set, start it as it comes
        forkserver.ensure_running()
        return
    try:
        forkserver.ensure_running()  # spawns the server (a no-op when it runs); a Ctrl-C of these ms is lost
    finally:
        signal.signal(signal.SIGINT, old)


def _limit_threads() -> None:
    try:
        import cv2

        cv2.setNumThreads(1)  # one process per core already (a no-op in a forkserver child: _fork_safe did it)
    except Exception:  # pragma: no cover - cv2 is a dependency of imagecorruptions
        pass


def _worker_loop(conn) -> None:
    """A pool worker: runs the chunks of jobs it is sent until it gets None or the parent is gone.

    Messages to the parent: ("ready",) once started, ("on", job index, output index) before each output (the
    watchdog's heartbeat and what a stall or death message names), ("done", results) after each chunk.
    Ctrl-C is ignored here: the parent stops the pool (a worker's KeyboardInterrupt would only print a traceback).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _limit_threads()
    try:
        conn.send(("ready",))
        while True:
            chunk = conn.recv()
            if chunk is None:
                return
            results = []
            for index, job in chunk:
                try:
                    results.append(_corrupt_one(job, lambda k, index=index: conn.send(("on", index, k))))
                except (BrokenPipeError, ConnectionResetError):
                    raise
                except Exception:  # e.g. a full disk while saving: the parent raises it with this traceback
                    results.append((0, {}, "bug", f"{job[0]}:\n{traceback.format_exc()}"))
                if results[-1][2] is not None:
                    break
            conn.send(("done", results))
    except (EOFError, BrokenPipeError, ConnectionResetError):  # the parent went away; nothing to report to
        return


@dataclass
class _Worker:
    process: object
    conn: object
    started: float  # time.monotonic() of the last sign of life (start, heartbeat, chunk sent or done)
    ready: bool = False
    chunk: list | None = None  # job indices being done
    on: tuple[int, int] | None = None  # (job index, output index) begun last


class _Pool:
    """Process pool for the corruption jobs, with a watchdog.

    Unlike ``concurrent.futures.ProcessPoolExecutor`` it knows what each worker is on (a heartbeat before every
    output), so a worker that makes no progress for ``stall_limit`` seconds, or dies, stops the run with one
    line naming the corruption and image; and it can kill its workers, so Ctrl-C or an error leaves no process.
    """

    def __init__(self, jobs: list[tuple], n_workers: int, stall_limit: float):
        self.jobs = jobs
        self.stall_limit = float(stall_limit)
        chunk = max(1, min(16, len(jobs) // (n_workers * 8)))
        self.todo = [list(range(i, min(i + chunk, len(jobs)))) for i in range(0, len(jobs), chunk)]
        self.todo.reverse()  # popped from the end: first chunk first
        warm = any(c in ("glass_blur", "frost") for job in jobs for c, _ in job[2])
        self.ctx = _pool_context(warm)
        self.n_workers = n_workers
        self.workers: list[_Worker] = []

    def start(self) -> None:
        if self.ctx.get_start_method() == "forkserver":
            _start_forkserver_deaf_to_ctrl_c()
        for _ in range(self.n_workers):
            parent_conn, child_conn = self.ctx.Pipe()
            process = self.ctx.Process(target=_worker_loop, args=(child_conn,), daemon=True,
                                       name="ventralkit-corrupt")
            self.workers.append(_Worker(process, parent_conn, time.monotonic()))
            process.start()
            child_conn.close()
            self.workers[-1].started = time.monotonic()

    def results(self):
        """Results of ``_corrupt_one`` as chunks finish; raises CorruptionPoolError on a stall or a death."""
        from multiprocessing.connection import wait

        while self.todo or any(w.chunk is not None for w in self.workers):
            for w in self.workers:
                if w.ready and w.chunk is None and self.todo:
                    w.chunk = self.todo.pop()
                    w.on, w.started = (w.chunk[0], 0), time.monotonic()
                    try:
                        w.conn.send([(i, self.jobs[i]) for i in w.chunk])
                    except OSError:  # it died since its last message
                        self._died(w)
            by_handle = {w.conn: w for w in self.workers}
            by_handle.update({w.process.sentinel: w for w in self.workers})
            for handle in wait(list(by_handle), timeout=min(1.0, self.stall_limit / 4)):
                w = by_handle[handle]
                if handle is w.conn:
                    yield from self._read(w)
                else:
                    self._died(w)
            self._check_stalls()

    def _read(self, w: _Worker):
        try:
            while w.conn.poll():
                message = w.conn.recv()
                w.started = time.monotonic()
                if message[0] == "ready":
                    w.ready = True
                elif message[0] == "on":
                    w.on = message[1:]
                else:
                    w.chunk = w.on = None
                    yield from message[1]
        except (EOFError, OSError):
            self._died(w)

    def _what(self, w: _Worker) -> str:
        if not w.ready:
            return "while starting, before its first image"
        if w.chunk is None or w.on is None:
            return "while waiting for work"
        job = self.jobs[w.on[0]]
        corruption, severity = job[2][w.on[1]]
        return f"on {corruption} severity {severity} of {job[0]}"

    def _died(self, w: _Worker) -> None:
        with contextlib.suppress(EOFError, OSError):  # what it said before it died (sentinel seen first)
            while w.conn.poll():
                message = w.conn.recv()
                if message[0] == "on":
                    w.on = message[1:]
        w.process.join(timeout=5)
        code = w.process.exitcode
        how = (f"was killed by signal {-code} ({_signal_name(-code)})" if code is not None and code < 0
               else f"exited with code {code}")
        resume = "run the same command again to resume (finished images are kept)"
        if code is not None and code < 0:
            advice = f"{resume}, with fewer workers (-j) if memory is short (the out-of-memory killer sends SIGKILL)"
        elif not w.ready:
            advice = ("when calling corrupt_dataset from a Python script, put the call under "
                      "`if __name__ == \"__main__\":` (workers start by importing the script), or pass workers=0")
        else:
            advice = f"its error is printed above; {resume}, or with -j 0 to work in this process"
        raise CorruptionPoolError(f"a corruption worker (pid {w.process.pid}) {how} {self._what(w)}; {advice}",
                                  starting=not w.ready, exitcode=code)

    def _check_stalls(self) -> None:
        now = time.monotonic()
        for w in self.workers:
            busy = w.chunk is not None or not w.ready
            if busy and now - w.started > self.stall_limit:
                raise CorruptionPoolError(
                    f"a corruption worker (pid {w.process.pid}) made no progress for {self.stall_limit:.0f} s "
                    f"{self._what(w)}, so the run was stopped; run the same command again to resume (finished "
                    f"images are kept), or with -j 0 to work in this process",
                    starting=not w.ready)

    def stop(self, graceful: bool) -> None:
        """Ends every worker: graceful (the work is done): asked to exit, killed after a grace period;
        otherwise killed at once. Nothing is left running either way (a second Ctrl-C during the grace period
        still reaches the kill)."""
        try:
            if graceful:
                for w in self.workers:
                    with contextlib.suppress(OSError):
                        w.conn.send(None)
                deadline = time.monotonic() + _EXIT_GRACE_S
                for w in self.workers:
                    w.process.join(timeout=max(0.0, deadline - time.monotonic()))
        finally:
            started = [w for w in self.workers if w.process.pid is not None]
            for w in started:
                if w.process.exitcode is None:
                    w.process.kill()
            for w in started:
                w.process.join(timeout=5)
            for w in self.workers:
                w.conn.close()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


def _run_jobs(jobs: list[tuple], n_workers: int, stall_limit: float = STALL_BASE_S):
    """Results of ``_corrupt_one`` for every job, in this process or in a process pool (as they finish)."""
    if n_workers <= 1:
        yield from map(_corrupt_one, jobs)
        return
    pool = _Pool(jobs, n_workers, stall_limit)
    finished = False
    try:
        pool.start()
        yield from pool.results()
        finished = True
    finally:
        pool.stop(graceful=finished)


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


def _read_manifest(dst: Path, settings: dict) -> dict:
    """The manifest of an earlier run into DST ({} if none); refuses a DST made with other settings (before
    anything is written, so the refusal changes nothing)."""
    path = dst / MANIFEST
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    for key, value in settings.items():
        if key in manifest and manifest[key] != value:
            flag = {"seed": "--seed", "size": "--size", "jpeg_quality": "--jpeg_quality"}[key]
            made = f"{key}={manifest[key]}" + (f" (no {flag})" if manifest[key] is None else "")
            # the advice must work when followed: there is no "--size None", leaving the flag out gives None
            advice = f"leave out {flag}" if manifest[key] is None else f"pass {flag} {manifest[key]}"
            raise ConfigError(f"{dst} was made with {made} but this run has {key}={value}; "
                              f"{advice} to resume it, or choose a new DST")
    return manifest


def _record_manifest(dst: Path, manifest: dict, settings: dict, corruptions: list[str], severities: list[int],
                     src: Path, version: str | None = None) -> dict:
    """Record this run's settings and what it adds in DST's manifest (returns the manifest). ``version``: the
    imagecorruptions that made the outputs (a merge passes the shards'), default this process's."""
    manifest = dict(manifest)
    manifest.update(settings)
    manifest["source"] = str(src)
    manifest["imagecorruptions"] = version or _imagecorruptions_version()
    manifest["corruptions"] = [c for c in ALL if c in set(manifest.get("corruptions", [])) | set(corruptions)]
    manifest["severities"] = sorted(set(manifest.get("severities", [])) | set(severities))
    manifest.setdefault("redrawn", {})
    write_json(dst / MANIFEST, manifest)
    return manifest


def _check_sources(src: Path, rels: list[str], size: int | None, resumed_without_size: bool) -> float:
    """Reads the header (not the pixels) of each source image to do, before anything is written: a file that
    is not an image, or, without ``size``, one under 32 px, stops the run as a failed start would. Returns the
    largest image in megapixels, which the stall limit scales with."""
    largest = 0
    for rel in rels:
        path = src / rel
        try:
            with Image.open(path) as img:
                w, h = img.size
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
            raise DataError(f"cannot read image {path} ({err}); fix or delete it") from None
        if size is None and min(w, h) < MIN_SIZE:
            raise DataError(_too_small(path, w, h, resumed_without_size))
        largest = max(largest, w * h)
    return (int(size) ** 2 if size else largest) / 1e6


def stall_limit(megapixels: float, stall_timeout: float | None = None) -> float:
    """Seconds a pool worker may go without progress: ``stall_timeout`` if given, else the environment's
    ``VENTRALKIT_CORRUPT_STALL_S`` (for tests), else ``STALL_BASE_S`` plus ``STALL_PER_MEGAPIXEL_S`` per
    megapixel of the largest image."""
    if stall_timeout is None and os.environ.get(STALL_ENV):
        try:
            stall_timeout = float(os.environ[STALL_ENV])
        except ValueError:
            raise ConfigError(f"{STALL_ENV}={os.environ[STALL_ENV]!r} is not a number of seconds") from None
        if not stall_timeout > 0:
            raise ConfigError(f"{STALL_ENV}={os.environ[STALL_ENV]!r} must be a positive number of seconds")
    if stall_timeout is not None:
        if not float(stall_timeout) > 0:
            raise ConfigError(f"stall_timeout {stall_timeout} must be a positive number of seconds")
        return float(stall_timeout)
    return STALL_BASE_S + STALL_PER_MEGAPIXEL_S * megapixels


def _has_outputs(folder: Path) -> bool:
    """Whether ``folder`` holds a finished output (anything but the manifest, the redraw log, temporary files)."""
    for _, _, names in os.walk(folder):
        if any(n not in (MANIFEST, REDRAW_LOG) and not _TEMP.match(n) for n in names):
            return True
    return False


def _undo_failed_start(dst: Path, created: bool, had_manifest: bool, new_tops: list[Path]) -> None:
    """After a run that failed before any output was finished, remove what it made (a failed start leaves
    nothing: a half-made DST would pin its settings, e.g. size=None, on the next run). A run that finished
    some outputs keeps them, to be resumed."""
    if created:
        if not _has_outputs(dst):
            shutil.rmtree(dst, ignore_errors=True)
        return
    if had_manifest or any(_has_outputs(top) for top in new_tops):
        return
    for top in new_tops:
        shutil.rmtree(top, ignore_errors=True)
    (dst / MANIFEST).unlink(missing_ok=True)
    (dst / REDRAW_LOG).unlink(missing_ok=True)


def _fold_redraw_log(dst: Path, manifest: dict, path: Path | None = None, log_name: str = REDRAW_LOG) -> None:
    """Move the workers' redraw records into the manifest (when no worker runs); a shard folds its own log into
    its record (``path``)."""
    log = dst / log_name
    if not log.is_file():
        return
    found = {}
    for line in log.read_text().splitlines():
        try:
            found.update(json.loads(line))
        except ValueError:  # a line cut short by a kill; that output is drawn (and logged) again on resume
            continue
    manifest["redrawn"] = dict(sorted({**manifest.get("redrawn", {}), **found}.items()))
    write_json(path or dst / MANIFEST, manifest)
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
    stall_timeout: float | None = None,
    shard: str | tuple[int, int] | Shard | None = None,
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
    stall_timeout: seconds a worker may go without finishing an output (or starting) before the run stops
        with ``CorruptionPoolError``; None = ``stall_limit``'s default, a few minutes scaled to the image size.
    shard: ``"I/N"`` (or ``(I, N)``): only the source images at positions I, I + N, ... (``shards.py``); the
        shard keeps its record in ``DST/.ventralkit_shards/`` instead of the manifest, which
        ``merge_shards`` writes once every shard is done. Same bytes as one unsharded run.

    Outputs keep the source file name and format (JPEG in, JPEG out; PNG stays lossless).
    Existing outputs are kept, so an interrupted run resumes where it stopped. Outputs whose first
    draws gave non-finite pixels are listed, with their number of redraws, in the manifest's
    ``redrawn`` and in the returned ``CorruptionRun.redrawn``. A run that fails before finishing any output
    leaves nothing behind (a DST it created is removed), so its error's advice can be followed as it is.
    """
    src, dst = Path(src), Path(dst)
    shard = parse_shard(shard)
    corruptions = resolve_corruptions(corruptions)
    severities = resolve_severities(severities)
    settings = _check_settings(seed, size, jpeg_quality, workers)
    rels = _source_images(src)
    src_abs, dst_abs = src.resolve(), dst.resolve()
    if dst_abs == src_abs or src_abs in dst_abs.parents:
        raise ConfigError(f"DST {dst} is inside SRC {src}; write the corrupted copy somewhere else")
    earlier = _read_manifest(dst, settings) if dst.is_dir() else {}
    record = None
    if shard is None and read_records(dst):
        raise ConfigError(f"{dst} holds the records of a sharded run ({SHARD_DIR}/); run `ventralkit corrupt --merge "
                          f"{dst}` once every shard is done, or run this with --shard I/N like the others")
    if shard is not None:
        record = new_record(shard, settings, corruptions, severities, src_abs, rels, _imagecorruptions_version())
        check_against_records(dst, record)
    stall_limit(0.0, stall_timeout)  # a bad value (argument or environment) fails here, before DST is made
    had_manifest = (dst / MANIFEST).is_file() if shard is None else shard.record_path(dst).is_file()
    created = ensure_writable_dir(dst, flag="DST")
    new_tops = [dst / c for c in corruptions if not (dst / c).exists()]
    try:
        return _corrupt_into(src, dst, rels, corruptions, severities, settings, earlier, workers, progress,
                             stall_timeout, shard, record)
    except BaseException:
        if shard is None:
            _undo_failed_start(dst, created, had_manifest, new_tops)
        else:
            _undo_failed_shard_start(dst, shard, had_manifest, rels, corruptions, severities)
        raise


def _check_settings(seed, size, jpeg_quality, workers) -> dict:
    """The one-line errors for bad option values; the settings an output's bytes depend on."""
    if size is not None and int(size) < MIN_SIZE:
        raise ConfigError(f"--size {size} is below {MIN_SIZE}; imagecorruptions needs images of at least "
                          f"{MIN_SIZE}x{MIN_SIZE} pixels")
    if not 1 <= int(jpeg_quality) <= 100:
        raise ConfigError(f"--jpeg_quality {jpeg_quality} is outside 1..100")
    if workers is not None and int(workers) < 0:
        raise ConfigError(f"--workers {workers} is negative")
    return {"seed": int(seed), "size": None if size is None else int(size), "jpeg_quality": int(jpeg_quality)}


def _undo_failed_shard_start(dst: Path, shard: Shard, had_record: bool, rels: list[str], corruptions: list[str],
                             severities: list[int]) -> None:
    """A shard that failed before finishing any of its outputs removes its record (which would pin its settings)
    and its redraw log; folders stay, as other shards may be writing into them."""
    if had_record:
        return
    for rel in shard.select(rels):
        if any((dst / c / str(s) / rel).is_file() for c in corruptions for s in severities):
            return
    shard.record_path(dst).unlink(missing_ok=True)
    (dst / shard.redraw_log).unlink(missing_ok=True)
    for folder in (dst / shard.redraw_log).parent, dst:  # only when empty: another shard may hold them
        with contextlib.suppress(OSError):
            folder.rmdir()


def _plan(src: Path, dst: Path, rels: list[str], corruptions: list[str], severities: list[int], settings: dict,
          log: str) -> tuple[list[tuple], int, set[Path]]:
    """(jobs, outputs already there, output folders to create) for the source images ``rels``. Temporary files an
    interrupted run left are removed; a shard (``log`` is its own) removes only those of its images, as the
    other shards may be writing beside them."""
    listings: dict[Path, set[str]] = {}
    own = None if log == REDRAW_LOG else set(rels)

    def finished(out_dir: Path, parent: str) -> set[str]:
        if out_dir not in listings:
            names = set(os.listdir(out_dir)) if out_dir.is_dir() else set()
            for name in [n for n in names if _TEMP.match(n)]:
                if own is None or posixpath.join(parent, _TEMP_OF.match(name).group(1)) in own:
                    (out_dir / name).unlink(missing_ok=True)
                names.discard(name)
            listings[out_dir] = names
        return listings[out_dir]

    seed, size, quality = settings["seed"], settings["size"], settings["jpeg_quality"]
    jobs, skipped, folders = [], 0, set()
    for rel in rels:
        parent, name = posixpath.split(rel)
        pairs = []
        for corruption in corruptions:
            for severity in severities:
                out_dir = dst / corruption / str(severity) / parent
                if name in finished(out_dir, parent):
                    skipped += 1
                else:
                    pairs.append((corruption, severity))
                    folders.add(out_dir)
        if pairs:
            job = (str(src / rel), rel, pairs, str(dst), seed, size, quality)
            jobs.append(job if log == REDRAW_LOG else job + (log,))
    return jobs, skipped, folders


def _corrupt_into(src: Path, dst: Path, rels: list[str], corruptions: list[str], severities: list[int],
                  settings: dict, earlier: dict, workers: int | None, progress: bool,
                  stall_timeout: float | None, shard: Shard | None = None, record: dict | None = None) -> CorruptionRun:
    """corrupt_dataset once its arguments are checked and DST exists."""
    mine = rels if shard is None else shard.select(rels)
    log = REDRAW_LOG if shard is None else shard.redraw_log
    jobs, skipped, folders = _plan(src, dst, mine, corruptions, severities, settings, log)
    megapixels = _check_sources(src, [job[1] for job in jobs], settings["size"],
                                resumed_without_size=bool(earlier) and earlier.get("size", 0) is None)
    if shard is None:
        manifest, manifest_path = _record_manifest(dst, earlier, settings, corruptions, severities, src.resolve()), None
    else:  # a shard's progress and redraws go to its own record; the merge writes the manifest
        manifest_path = shard.record_path(dst)
        manifest = {**record, "redrawn": _previous_redraws(manifest_path)}
        write_record(dst, shard, manifest)
    _fold_redraw_log(dst, manifest, manifest_path, log)
    for out_dir in sorted(folders):  # once per folder here, not once per file in the workers
        out_dir.mkdir(parents=True, exist_ok=True)

    run = CorruptionRun(dst=dst, corruptions=corruptions, severities=severities, images=len(mine),
                        written=0, skipped=skipped)
    if jobs:
        _run_all(jobs, workers, progress, stall_limit(megapixels, stall_timeout), run, dst, manifest, manifest_path,
                 log)
    if shard is not None:
        manifest["finished"] = True
        write_record(dst, shard, manifest)
    run.redrawn = dict(sorted(run.redrawn.items()))
    return run


def _previous_redraws(record_path: Path) -> dict:
    """The redraws an earlier run of this shard recorded (its outputs are kept, so their records must be)."""
    try:
        return dict(json.loads(record_path.read_text()).get("redrawn", {}))
    except (OSError, ValueError, AttributeError):
        return {}


def _run_all(jobs: list[tuple], workers: int | None, progress: bool, limit: float, run: CorruptionRun, dst: Path,
             manifest: dict, manifest_path: Path | None, log: str) -> None:
    """Every job, in this process or the pool, counted into ``run``; the redraw log is folded at the end."""
    n_workers = _available_cores() if workers is None else int(workers)
    n_workers = max(1, min(n_workers, len(jobs)))
    total = sum(len(job[2]) for job in jobs)
    results = _run_jobs(jobs, n_workers, limit)
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
        _fold_redraw_log(dst, manifest, manifest_path, log)
