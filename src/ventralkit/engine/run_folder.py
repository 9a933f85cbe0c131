"""A run folder belongs to one run: ownership checks, a lock while a run writes, no debris on a failed start.

- A new run refuses a folder that already holds a run (``--overwrite`` replaces it, ``--resume``
  continues it), so two runs never share ``config.json``, ``metrics.jsonl`` or checkpoints.
- While a run writes, it holds an ``fcntl`` lock on ``.lock`` in the folder; a second process is
  refused with the owner's pid and host. The operating system drops the lock when its holder dies,
  so a lock left by a killed job is simply taken over (the requeued job can start at once).
- Until the run has committed (its first checkpoint is written), a failure removes what the run
  created, so a failed start leaves the folder as it found it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import time
from pathlib import Path

from ..errors import ConfigError
from ..files import RunPaths

LOCK_NAME = ".lock"
#: files and folders a run writes; their presence means the folder holds a run
RUN_ENTRIES = ("config.json", "metrics.jsonl", "metrics.csv", "checkpoints", "plots", "tensorboard", "skipped.txt")


def holds_run(path: Path) -> bool:
    run = RunPaths(path)
    return run.config.is_file() or any(run.checkpoints.glob("*.pt"))


def check_writable(path: Path) -> None:
    """Fail before any work if the run folder cannot be created or written."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"--output_path {path} cannot be written ({probe} is not a writable folder); "
                          "choose another folder")


def check_ownership(path: Path, resuming: bool, overwrite: bool) -> None:
    """A new run may not write into a folder that holds another run (checked before any work)."""
    if resuming or overwrite or not holds_run(path):
        return
    raise ConfigError(f"--output_path {path} already holds a run; continue it with --resume {RunPaths(path).last} "
                      f"(or --resume auto), replace it with --overwrite, or choose another folder")


class RunFolder:
    """``with RunFolder(path, overwrite) as rf:`` ... ``rf.commit()`` once the run is under way."""

    def __init__(self, path: Path, overwrite: bool = False, enabled: bool = True):
        self.path = Path(path)
        self.overwrite = overwrite
        self.enabled = enabled  # only rank 0 owns the folder
        self.created_dir = False
        self.before: set[str] = set()
        self.committed = False
        self._lock_fh = None

    def __enter__(self) -> "RunFolder":
        if not self.enabled:
            return self
        try:
            self.created_dir = not self.path.exists()
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"--output_path {self.path} cannot be written ({err.strerror}); "
                              "choose another folder") from None
        self._lock()
        if self.overwrite:
            for name in RUN_ENTRIES:
                target = self.path / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        self.before = {p.name for p in self.path.iterdir()}
        RunPaths(self.path).checkpoints.mkdir(exist_ok=True)
        return self

    def commit(self) -> None:
        """From now on what the run wrote stays, whatever happens."""
        self.committed = True

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.enabled:
            return
        if exc_type is not None and not self.committed:
            for entry in self.path.iterdir():
                if entry.name not in self.before and entry.name != LOCK_NAME:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            ckpts = RunPaths(self.path).checkpoints
            if "checkpoints" not in self.before and ckpts.is_dir() and not any(ckpts.iterdir()):
                ckpts.rmdir()
        self._unlock()
        if exc_type is not None and not self.committed and self.created_dir:
            with contextlib.suppress(OSError):
                self.path.rmdir()  # only when empty

    # ---- the lock ---------------------------------------------------------------------------------
    def _lock(self) -> None:
        import fcntl

        lock = self.path / LOCK_NAME
        fh = open(lock, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            fh.seek(0)
            try:
                owner = json.loads(fh.read() or "{}")
            except json.JSONDecodeError:
                owner = {}
            fh.close()
            who = f"process {owner.get('pid', '?')} on {owner.get('host', '?')}" if owner else "another process"
            raise ConfigError(f"--output_path {self.path} is in use by {who} (a run is writing there); wait for it "
                              "to end or choose another folder") from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}))
        fh.flush()
        self._lock_fh = fh

    def _unlock(self) -> None:
        if self._lock_fh is None:
            return
        import fcntl

        with contextlib.suppress(OSError):
            (self.path / LOCK_NAME).unlink()
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
        self._lock_fh.close()
        self._lock_fh = None
