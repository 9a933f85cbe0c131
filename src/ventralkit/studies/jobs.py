"""One run of a study as one job: the callable submitit pickles, and the files that say how each job went.

Every study run that is trained as a job (``ventralkit study ... --executor local|slurm``) is a ``StudyJob``: a
picklable callable that runs the study's own function for that run (which trains with ``--resume auto``, so a
job started again continues the run's ``last.pt``). Beside the study's runs, ``<study>/jobs/`` keeps per run

* ``<run>.json``: where the job went (executor, job id, its stdout / stderr logs), written when it is submitted;
* ``<run>.state.json``: what the job says about itself (running on which host and pid, done, stopped, failed
  with the error's line), written by the job;
* ``<run>.lock``: held (``fcntl.flock``) while the job runs. The operating system drops it when the process
  dies, so "the state says running but nobody holds the lock" is how a killed job (out of memory, ``kill -9``,
  a lost node) shows.

Timeouts and preemption: submitit asks a job to stop with SIGUSR2 (SLURM's ``--signal``, the local executor's
timeout). During training that signal reaches the engine's ``StopRequest``, which finishes the step, writes
``last.pt`` and stops; the job then hands the signal back to submitit, whose handler calls ``checkpoint`` (the
same job, unchanged: ``--resume auto`` finds ``last.pt``) and requeues it. A SIGTERM or SIGINT (``scancel``,
Ctrl-C) also saves ``last.pt`` but is not requeued: the run resumes when the study is run again.

Nothing here knows which study it runs: the study passes its per-run function (module level, so pickles by
reference), and a later study type reuses the whole layer.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, TrainingInterrupted, one_line
from ..files import write_json

JOBS_DIR = "jobs"
#: the signal submitit sends before a timeout or on preemption (its SUBMITIT_PREEMPT_SIGNAL, USR2 by default)
REQUEUE_SIGNAL_ENV = "SUBMITIT_PREEMPT_SIGNAL"


class JobFiles:
    """The bookkeeping files of one run's job in ``<study>/jobs/`` (named in one place)."""

    def __init__(self, study: str | os.PathLike, name: str):
        self.folder = Path(study) / JOBS_DIR
        self.name = name

    @property
    def record(self) -> Path:
        return self.folder / f"{self.name}.json"

    @property
    def state(self) -> Path:
        return self.folder / f"{self.name}.state.json"

    @property
    def lock(self) -> Path:
        return self.folder / f"{self.name}.lock"

    def read_record(self) -> dict | None:
        return _read_json(self.record)

    def read_state(self) -> dict | None:
        return _read_json(self.state)

    def write_state(self, state: str, **extra) -> None:
        write_json(self.state, {"state": state, "host": socket.gethostname(), "pid": os.getpid(),
                                "time": round(time.time(), 3), **extra})


def _read_json(path: Path) -> dict | None:
    """A bookkeeping file, or None when it is absent or not readable (a torn file counts as absent)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# ---- locks -----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def hold_lock(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` for the block; a holder elsewhere is a one-line ConfigError."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise ConfigError(f"{what} is in use by {lock_owner(path)}; wait for it to end") from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": round(time.time(), 3)}))
        fh.flush()
        yield
    finally:
        fh.close()  # closing drops the lock


def lock_held(path: Path) -> bool:
    """Whether some process holds ``path``'s lock now (False when the file is absent)."""
    import fcntl

    try:
        fh = open(path, "r")
    except OSError:
        return False
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            return err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def lock_owner(path: Path) -> str:
    """"process PID on HOST" from a lock file's contents (as the holder wrote them)."""
    owner = _read_json(path) or {}
    return f"process {owner.get('pid', '?')} on {owner.get('host', '?')}" if owner else "another process"


# ---- the job ---------------------------------------------------------------------------------------------------
@dataclass
class StudyJob:
    """``fn(**kwargs)`` for the run ``name`` of the study in ``study``, as one job.

    ``threads``: torch's CPU threads in the job (the machine's cores split between the jobs that run at once).
    ``finalize``: called after the run's job has ended (its lock released), e.g. to write the study's table
    once every run has ended; its failure never fails the run."""

    study: str
    name: str
    fn: Callable
    kwargs: dict = field(default_factory=dict)
    threads: int | None = None
    finalize: Callable | None = None

    def __call__(self):
        files = JobFiles(self.study, self.name)
        stop: TrainingInterrupted | None = None
        with hold_lock(files.lock, f"study run {self.name}"):
            files.write_state("running", job_id=_job_id())
            if self.threads:
                import torch

                torch.set_num_threads(self.threads)
            try:
                with _sigterm_outside_training():
                    result = self.fn(**self.kwargs)
            except TrainingInterrupted as err:
                files.write_state("stopped", message=one_line(err), signal=err.exit_code - 128)
                stop = err
            except BaseException as err:
                files.write_state("failed", message=one_line(err) if str(err) else type(err).__name__)
                raise
            else:
                files.write_state("done")
        if stop is not None:  # the lock is free: a requeued job may take it at once
            _hand_back_to_submitit(stop)
            raise stop
        if self.finalize is not None:
            try:
                self.finalize()
            except Exception as err:  # the run is done whatever the table does; a rerun writes it
                print(f"the study's table was not written ({one_line(err)}); rerun the study command", flush=True)
        return result

    def checkpoint(self, *args, **kwargs):
        """submitit's requeue hook: the same job again (the run resumes from its ``last.pt``)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self)


def _job_id() -> str | None:
    """The scheduler's id of this job (submitit's job environment), None outside submitit."""
    try:
        import submitit

        return str(submitit.JobEnvironment().job_id)
    except Exception:
        return None


def _requeue_signal() -> int:
    return getattr(signal, "SIG" + os.environ.get(REQUEUE_SIGNAL_ENV, "USR2"), signal.SIGUSR2)


def _hand_back_to_submitit(stop: TrainingInterrupted) -> None:
    """Training stopped on submitit's timeout / preemption signal and saved ``last.pt``: let submitit's own
    handler (installed before the job ran; the engine's was removed when training stopped) checkpoint and
    requeue the job. Its handler exits the process; any other stop just ends the job."""
    signum = stop.exit_code - 128
    if signum != _requeue_signal() or not callable(signal.getsignal(signum)):
        return
    signal.raise_signal(signum)


@contextlib.contextmanager
def _sigterm_outside_training() -> Iterator[None]:
    """SIGTERM ends the job also outside training (loading data, writing the run's records), where submitit
    only logs it; inside training the engine's ``StopRequest`` takes it over and saves ``last.pt``."""
    def stop(signum, frame):
        raise TrainingInterrupted(f"stopped by {signal.Signals(signum).name} outside training", signum)

    old = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
