"""Downloading published weights into the weights folder and checking them, the way ``torch.hub`` does.

- The file is fetched (``urllib``, a timeout on every read, a progress bar) into a hidden ``.<name>.part``
  beside its final name and renamed only after its hash was checked: a final name never holds a partial or
  refused file. A download that stops (a cut connection, a timeout) keeps the part; the next attempt asks
  the server for the rest (an HTTP ``Range`` request) and starts again when the server cannot resume.
- Two processes fetching the same file take turns on a lock file (``fcntl.flock``, a bounded wait): the
  second waits, then finds the finished file and checks it instead of downloading it again.
- Hash policy (the table, ``weights_table.json``): a full sha256 measured on the real file refuses a file
  that differs (the file is moved aside to ``<name>.rejected``, never loaded); a prefix taken only from the
  published file name warns in one line, since it was never measured on the file, and the file's actual
  sha256 is recorded in ``<weights folder>/hashes.json``, so that later loads notice a file that changed.
- ``VENTRALKIT_OFFLINE=1`` never touches the network; ``VENTRALKIT_WEIGHTS_URL`` replaces the host.

A file already recorded in ``hashes.json`` with the same size and modification time is not hashed again on
every load (a CORnet-S file is 200 MB); ``ventralkit weights verify`` always hashes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import json
import os
import shutil
import socket
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from ..errors import CheckpointError, ConfigError
from ..settings import positive_seconds
from .weights_table import MIRROR_ENV, WeightsEntry, download_url

try:
    import fcntl
except ImportError:  # Windows: no flock; downloads of one file by two processes are then not coordinated
    fcntl = None

OFFLINE_ENV = "VENTRALKIT_OFFLINE"
TIMEOUT_ENV = "VENTRALKIT_DOWNLOAD_TIMEOUT"  # seconds without data before a download gives up
WAIT_ENV = "VENTRALKIT_DOWNLOAD_WAIT"  # seconds to wait for another process downloading the same file
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_WAIT_S = 1800.0
HASHES_FILE = "hashes.json"
_CHUNK = 1 << 20
NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class WeightsWarning(UserWarning):
    """A weights file that could not be confirmed (prefix-only hash, changed since recorded)."""


class DownloadError(CheckpointError):
    """A download that failed, stopped or timed out; what was fetched is kept for the next attempt."""


@dataclass(frozen=True)
class FileCheck:
    """A file's hashes against its table entry. ``status``: ``confirmed`` (full sha256 equal), ``mismatch``
    (full sha256 differs: refused), ``prefix ok`` / ``prefix differs`` (file-name prefix, unconfirmed),
    ``no hash`` (nothing published to compare with)."""

    path: Path
    sha256: str
    status: str
    detail: str = ""

    @property
    def refused(self) -> bool:
        return self.status == "mismatch"


# -- settings ---------------------------------------------------------------------------------------------


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def timeout_s() -> float:
    return positive_seconds(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)


def wait_s() -> float:
    return positive_seconds(WAIT_ENV, DEFAULT_WAIT_S)


def weights_dir() -> Path:
    """The weights folder: ``$VENTRALKIT_WEIGHTS``, else ``$XDG_CACHE_HOME/ventralkit/weights`` (``~/.cache``)."""
    env = os.environ.get("VENTRALKIT_WEIGHTS")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "ventralkit" / "weights"


def _no_progress() -> bool:
    return os.environ.get("VENTRALKIT_NO_PROGRESS") == "1"


def megabytes(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.1f} MB"


# -- the lock ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def file_lock(path: Path, wait: float, busy: str):
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the block; wait at most ``wait`` s.

    The holder removes the lock file when done; a waiter that then gets the lock on the removed file sees
    that its descriptor no longer matches the path and takes the lock again on the new file, so two
    processes never both hold it. ``busy`` ends the one-line error after the wait."""
    if fcntl is None:
        yield
        return
    deadline = time.monotonic() + wait
    fd = _acquire(path, deadline, busy)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _acquire(path: Path, deadline: float, busy: str) -> int:
    pause = 0.02
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o666)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise CheckpointError(f"{busy} (lock file {path})") from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.5)
            try:
                current = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
        except BaseException:
            os.close(fd)
            raise
        if current:
            return fd
        os.close(fd)  # the previous holder removed this lock file: lock the new one


# -- hashes -----------------------------------------------------------------------------------------------


def hash_file(path: Path, sha1: bool = False) -> tuple[str, str | None]:
    """The file's sha256 (and sha1 if asked), in one pass."""
    h256 = hashlib.sha256()
    h1 = hashlib.sha1() if sha1 else None
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h256.update(chunk)
            if h1 is not None:
                h1.update(chunk)
    return h256.hexdigest(), (h1.hexdigest() if h1 is not None else None)


def evaluate(entry: WeightsEntry, path: Path, sha256: str, sha1: str | None = None) -> FileCheck:
    """The hash policy applied to measured hashes (no side effects)."""
    if entry.sha256:
        ok = sha256 == entry.sha256.lower()
        return FileCheck(path, sha256, "confirmed" if ok else "mismatch",
                         "" if ok else f"expected sha256 {entry.sha256.lower()}, the file has {sha256}")
    extra = ""
    want_sha1 = (entry.other_hashes or {}).get("sha1")
    if want_sha1 and sha1:
        extra = ("; its sha1 equals Brain-Score's copy" if sha1 == want_sha1.lower()
                 else "; its sha1 differs from Brain-Score's copy")
    if entry.sha256_prefix:
        prefix = entry.sha256_prefix.lower()
        if sha256.startswith(prefix):
            return FileCheck(path, sha256, "prefix ok", f"starts with the file name's {prefix}{extra}")
        return FileCheck(path, sha256, "prefix differs",
                         f"does not start with the file name's {prefix}{extra}")
    return FileCheck(path, sha256, "no hash", f"no published hash to compare with{extra}")


def check_file(entry: WeightsEntry, path: Path) -> FileCheck:
    """Hash ``path`` now and apply the policy."""
    sha256, sha1 = hash_file(path, sha1=bool((entry.other_hashes or {}).get("sha1")))
    return evaluate(entry, path, sha256, sha1)


def hashes_path(folder: Path) -> Path:
    return folder / HASHES_FILE


def read_records(folder: Path) -> dict:
    """``hashes.json``'s records by file name (empty when missing or unreadable: it is only a cache and log)."""
    try:
        with open(hashes_path(folder), encoding="utf-8") as fh:
            data = json.load(fh)
        return dict(data.get("files") or {})
    except (OSError, ValueError, AttributeError):
        return {}


def _stat_key(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def recorded_check(entry: WeightsEntry, path: Path) -> FileCheck | None:
    """The check from ``hashes.json`` when the file is unchanged since it was recorded (same size and mtime)."""
    rec = read_records(path.parent).get(path.name)
    if not rec or not rec.get("sha256"):
        return None
    with contextlib.suppress(OSError):
        if {k: rec.get(k) for k in ("size", "mtime_ns")} == _stat_key(path):
            return evaluate(entry, path, rec["sha256"])
    return None


def record(check: FileCheck, url: str | None = None) -> bool:
    """Write the file's sha256 into its folder's ``hashes.json`` (atomically, under a lock); False when the
    folder cannot be written (a shared read-only folder: the file is then hashed on every load)."""
    from ..files import write_json

    folder = check.path.parent
    try:
        with file_lock(folder / f".{HASHES_FILE}.lock", 30.0, f"another process holds {hashes_path(folder)}"):
            records = read_records(folder)
            now = datetime.now(timezone.utc).isoformat(timespec="seconds")
            records[check.path.name] = {"sha256": check.sha256, **_stat_key(check.path), "status": check.status,
                                        "url": url, "recorded": now}
            write_json(hashes_path(folder), {
                "about": "sha256 of the weights files used from this folder, measured by ventralkit on the files",
                "files": dict(sorted(records.items()))})
        return True
    except (OSError, CheckpointError):
        return False


def known_sha256(path: str | os.PathLike) -> str | None:
    """A file's sha256 for provenance: the recorded one when unchanged, else measured now (None if unreadable)."""
    path = Path(path)
    rec = read_records(path.parent).get(path.name)
    with contextlib.suppress(OSError):
        if rec and rec.get("sha256") and {k: rec.get(k) for k in ("size", "mtime_ns")} == _stat_key(path):
            return rec["sha256"]
        return hash_file(path)[0]
    return None


# -- fetching ---------------------------------------------------------------------------------------------


def _part_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.part")


def lock_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.lock")


def _request(url: str, start: int) -> Request:
    from ..version import __version__

    headers = {"User-Agent": f"ventralkit/{__version__}"}
    if start:
        headers["Range"] = f"bytes={start}-"
    return Request(url, headers=headers)


def _open(url: str, part: Path, timeout: float, label: str):
    """The response for the rest of ``part`` (the whole file when there is no part or it cannot be resumed)."""
    start = part.stat().st_size if part.is_file() else 0
    try:
        return urlopen(_request(url, start), timeout=timeout)
    except HTTPError as err:
        if err.code == 416 and start:  # the part is not a prefix the server can continue: start again
            part.unlink()
            return _open(url, part, timeout, label)
        raise DownloadError(f"downloading {label} from {url} failed: HTTP {err.code} {err.reason}; "
                            f"{_refused_advice(label)}") from None
    except (URLError, OSError, http.client.HTTPException, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        if isinstance(reason, (TimeoutError, socket.timeout)):
            reason = f"no answer within {timeout:g} s"
        raise DownloadError(f"downloading {label} from {url} failed ({reason}); {_advice(part, mirror=True)}") from None


def _refused_advice(label: str) -> str:
    """What to do when the server answered but refused (a wrong mirror path, a file that moved, no access)."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if mirror:
        return f"check that the mirror {MIRROR_ENV}={mirror} holds the file under the original path"
    return (f"get {label} by hand and `ventralkit weights import FILE`, or set {MIRROR_ENV} to a mirror that "
            "holds it")


def _advice(part: Path, mirror: bool = False) -> str:
    kept = part.stat().st_size if part.is_file() else 0
    tail = f" (the {megabytes(kept)} fetched so far are kept and the download continues from there)" if kept else ""
    where = f", or set {MIRROR_ENV} to a mirror" if mirror else ""
    return f"check the network and run the command again{where}{tail}"


def _resume_point(resp, part: Path) -> tuple[int, int | None]:
    """Where this response starts in the file and the file's total size (None when the server does not say):
    a 206 answer that starts at the part's end continues it; anything else starts again from byte 0."""
    have = part.stat().st_size if part.is_file() else 0
    status = getattr(resp, "status", None) or 200
    length = resp.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if have and status == 206:
        span = (resp.headers.get("Content-Range") or "").replace("bytes", "").strip()
        first, _, total = span.partition("/")
        if first.split("-")[0].strip() == str(have):
            total = int(total) if total.strip().isdigit() else (have + length if length is not None else None)
            return have, total
    return 0, length


def _write_chunk(fh, chunk: bytes) -> None:
    """One write (separate so that a test can make the disk full)."""
    fh.write(chunk)


def fetch(url: str, final: Path, timeout: float, label: str) -> Path:
    """Download ``url`` into ``final``'s part file (continuing a part already there); return the part."""
    part = _part_path(final)
    resp = _open(url, part, timeout, label)
    with resp:
        start, total = _resume_point(resp, part)
        if start:
            print(f"continuing {label} from {megabytes(start)} of {megabytes(total)}", file=sys.stderr)
        got = _stream(resp, part, start, total, timeout, label)
    if total is not None and got != total:
        if got > total:  # more bytes than announced: the part is unusable
            part.unlink()
        raise DownloadError(f"downloading {label} from {url} stopped after {got} of {total} bytes (the connection "
                            f"ended early); {_advice(part)}")
    return part


def _stream(resp, part: Path, start: int, total: int | None, timeout: float, label: str) -> int:
    """Copy the response into the part file with a progress bar; the part's size at the end."""
    from tqdm.auto import tqdm

    got = start
    with open(part, "ab" if start else "wb") as fh, tqdm(
            total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
            disable=_no_progress(), file=sys.stderr, leave=False) as bar:
        while True:
            try:
                chunk = resp.read(_CHUNK)
            except (TimeoutError, socket.timeout):
                fh.flush()
                raise DownloadError(f"downloading {label} timed out: no data for {timeout:g} s after {got} of "
                                    f"{total if total is not None else '?'} bytes; run the command again to continue "
                                    f"(or set {TIMEOUT_ENV} to wait longer)") from None
            except (OSError, http.client.HTTPException) as err:
                fh.flush()
                raise DownloadError(f"downloading {label} stopped after {got} bytes ({err or type(err).__name__}); "
                                    "run the command again to continue") from None
            if not chunk:
                break
            _write_part(fh, chunk, part, got, total, label)
            got += len(chunk)
            bar.update(len(chunk))
        _write_part(fh, None, part, got, total, label)
    return got


def _write_part(fh, chunk: bytes | None, part: Path, got: int, total: int | None, label: str) -> None:
    """Write a chunk (or flush and sync with ``None``); a full disk removes the part and says what is needed."""
    try:
        if chunk is None:
            fh.flush()
            os.fsync(fh.fileno())
        else:
            _write_chunk(fh, chunk)
    except OSError as err:
        if err.errno not in NO_SPACE:
            raise CheckpointError(f"cannot write {part} while downloading {label} ({err.strerror or err}); set "
                                  "VENTRALKIT_WEIGHTS to another folder") from None
        with contextlib.suppress(OSError):
            fh.close()
        part.unlink(missing_ok=True)
        need = f"free {megabytes(total)} there" if total else "free space there"
        raise CheckpointError(f"no space left in {part.parent} while downloading {label} ({megabytes(got)} of "
                              f"{megabytes(total)} written, removed); {need} or set VENTRALKIT_WEIGHTS to a folder "
                              "with room") from None


# -- the weights folder -----------------------------------------------------------------------------------


def _reject(check: FileCheck, shown_as: Path) -> CheckpointError:
    """Move a refused file aside (never under its final name again) and say so in one line."""
    aside = shown_as.with_name(f"{shown_as.name}.rejected")
    try:
        os.replace(check.path, aside)
        where = f"moved aside to {aside}"
    except OSError:
        where = "left where it is (the folder is read-only), not loaded"
    return CheckpointError(f"{shown_as.name} is not the published file: {check.detail}; {where}; run the command "
                           "again to download it afresh, or `ventralkit weights import FILE` a good copy")


def _warn(check: FileCheck, recorded: bool, before: str | None = None) -> None:
    """One line for a file whose hash could not confirm it (first use, or changed since it was recorded)."""
    if check.status == "confirmed":
        return
    where = f"recorded in {hashes_path(check.path.parent)}" if recorded else "not recorded (folder is read-only)"
    changed = f"changed since it was recorded (sha256 was {before}); " if before else ""
    unconfirmed = " (a prefix from a published file name, never measured on the file)" if "prefix" in check.status \
        else ""
    sep = " " if "prefix" in check.status else ": "
    warnings.warn(f"{check.path.name}: {changed}sha256 {check.sha256}{sep}{check.detail}{unconfirmed}; {where}",
                  WeightsWarning, stacklevel=3)


def use_file(entry: WeightsEntry, path: Path, url: str | None = None) -> FileCheck:
    """Check a file under its final name before it is loaded: the recorded hash when the file is unchanged,
    else hash it, record it and warn once; a refused file is moved aside and an error raised."""
    check = recorded_check(entry, path)
    if check is None:
        before = read_records(path.parent).get(path.name, {}).get("sha256")
        check = check_file(entry, path)
        if check.refused:
            raise _reject(check, path)
        recorded = record(check, url or entry.url)
        if before != check.sha256:
            _warn(check, recorded, before=before)
    elif check.refused:  # recorded before the table knew the file's full hash
        raise _reject(check, path)
    return check


def missing_message(entry: WeightsEntry, folder: Path) -> str:
    """Where to put the file by hand (offline mode, a gated file)."""
    how = entry.gated or f"download {entry.url} on a machine with internet"
    return (f"{entry.filename} ({entry.name}) is not in {folder}: {how}, then `ventralkit weights import FILE` "
            f"(or copy it to {folder / entry.filename}; VENTRALKIT_WEIGHTS sets the folder)")


def ensure_weights(entry: WeightsEntry, folder: Path | None = None) -> FileCheck:
    """The checked file for ``entry`` in the weights folder, downloaded first when missing."""
    folder = Path(folder) if folder is not None else weights_dir()
    final = folder / entry.filename
    if final.is_file():
        return use_file(entry, final)
    if offline():
        raise CheckpointError(f"{OFFLINE_ENV}=1: {missing_message(entry, folder)}")
    if entry.gated and not os.environ.get(MIRROR_ENV, "").strip():
        raise CheckpointError(missing_message(entry, folder))
    url = download_url(entry)
    make_writable_folder(folder)
    busy = (f"another process has been downloading {entry.filename} into {folder} for over {wait_s():g} s; "
            f"run again when it is done (or raise {WAIT_ENV})")
    with file_lock(lock_path(final), wait_s(), busy):
        if final.is_file():  # another process finished it while this one waited
            return use_file(entry, final)
        print(f"downloading {url} to {final}", file=sys.stderr)
        part = fetch(url, final, timeout_s(), entry.filename)
        check = check_file(entry, part)
        if check.refused:
            raise _reject(check, final)
        os.replace(part, final)
        check = FileCheck(final, check.sha256, check.status, check.detail)
        _warn(check, record(check, url))
    return check


def make_writable_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise CheckpointError(f"cannot write to the weights folder {folder} ({err.strerror or err}); set "
                              "VENTRALKIT_WEIGHTS to a folder you can write") from None


# -- import and verify ------------------------------------------------------------------------------------


def verify_file(path: str | os.PathLike, entry: WeightsEntry | None) -> FileCheck:
    """Hash a file now (never the recorded value) and apply its entry's policy; record it when it is in a
    weights folder under its registered name. A refused file is reported, not moved (the next load does)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; give a weights file (see `ventralkit weights list`)")
    if entry is None:
        return FileCheck(path, hash_file(path)[0], "not in table", "not a published weights file ventralkit knows")
    check = check_file(entry, path)
    if path.name == entry.filename and not check.refused:
        record(check, entry.url)
    return check
