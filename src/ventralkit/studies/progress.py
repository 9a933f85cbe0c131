"""Where each run of a study stands: done, running, queued, stopped, failed (with its log's last line), new.

Read from the files alone (the run's finished marker, ``<study>/jobs/<run>.*`` that ``jobs.StudyJob`` writes, the
locks a job or a training run holds), so any invocation, on any machine that sees the study folder, can tell:
rerunning a study command shows this instead of starting over.
"""

from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..engine.run_folder import LOCK_NAME
from .jobs import JobFiles, lock_held, lock_owner

#: the order states are listed in
STATES = ("done", "running", "queued", "stopped", "failed", "new")
#: seconds one ``squeue`` may take
SQUEUE_TIMEOUT_S = 20


@dataclass
class RunProgress:
    name: str
    state: str  # one of STATES
    detail: str = ""  # running: where and how far; failed / stopped: why
    log: str | None = None  # the job's log file (stderr), when the run went to a job

    def line(self) -> str:
        text = f"  {self.name}: {self.state}"
        if self.detail:
            text += f" ({self.detail})" if self.state in ("running", "queued") else f": {self.detail}"
        if self.log and self.state in ("failed", "stopped", "running", "queued"):
            text += f"; log {self.log}"
        return text


def run_progress(study: Path, name: str, run_dir: Path, finished: bool, epochs: int | None = None) -> RunProgress:
    """One run's state; ``finished``: the study's own verdict on the run folder (its marker)."""
    files = JobFiles(study, name)
    record, state = files.read_record() or {}, files.read_state() or {}
    log = record.get("stderr")
    if finished:
        return RunProgress(name, "done")
    for lock in (files.lock, run_dir / LOCK_NAME):  # a job, or a study trained in one process
        if lock_held(lock):
            return RunProgress(name, "running", f"{lock_owner(lock)}, {epochs_done(run_dir, epochs)}", log)
    said = state.get("state")
    if said in ("failed", "stopped"):
        return RunProgress(name, said, state.get("message") or last_log_line(log), log)
    if said in ("running", "done"):  # the job said so, yet holds no lock: it was killed
        why = f"its job ended without a word (killed?); last log line: {last_log_line(log) or '(empty)'}"
        return RunProgress(name, "failed", why, log)
    if record:
        return _submitted(name, record, log)
    return RunProgress(name, "new")


def _submitted(name: str, record: dict, log: str | None) -> RunProgress:
    """A job submitted that has not started: queued, unless the scheduler no longer knows it (or a local job's
    controller is gone), which is a failure to start."""
    job_id = record.get("job_id", "?")
    if record.get("executor") == "slurm":
        queued = slurm_job_known(job_id)
        if queued is not False:
            return RunProgress(name, "queued", f"SLURM job {job_id}", log)
    elif record.get("host") == socket.gethostname() and _process_alive(job_id):
        return RunProgress(name, "queued", f"local job {job_id}, starting", log)
    why = f"its job {job_id} ended before the run started; last log line: {last_log_line(log) or '(empty)'}"
    return RunProgress(name, "failed", why, log)


def _process_alive(pid) -> bool:
    """Whether the process ``pid`` (a local job's controller) runs on this machine."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # another user's process with that number
        return True
    return True


def slurm_job_known(job_id: str) -> bool | None:
    """Whether SLURM still lists the job (pending or running); None when ``squeue`` cannot say."""
    if shutil.which("squeue") is None:
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True,
                             timeout=SQUEUE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return False if "invalid job id" in out.stderr.lower() else None
    return bool(out.stdout.strip())


def epochs_done(run_dir: Path, epochs: int | None) -> str:
    """"epoch E of N done", from the run's metrics.csv (rows are finished epochs)."""
    try:
        with (run_dir / "metrics.csv").open(newline="") as fh:
            done = sum(1 for _ in csv.DictReader(fh))
    except OSError:
        done = 0
    return f"{done} of {epochs} epochs done" if epochs else f"{done} epochs done"


def last_log_line(log: str | None, max_bytes: int = 65536) -> str:
    """The last non-empty line of a log file (read from its end), '' when there is none."""
    if not log:
        return ""
    try:
        with open(log, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - max_bytes))
            tail = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in tail.replace("\r", "\n").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def progress_text(progress: list[RunProgress]) -> str:
    """A count per state, then a line for every run that is not done."""
    counts = Counter(p.state for p in progress)
    head = f"{len(progress)} runs: " + ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s])
    return "\n".join([head, *(p.line() for p in progress if p.state != "done")])
