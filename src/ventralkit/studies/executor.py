"""Where a study's runs are trained: in this process, as local jobs N at a time, or as SLURM jobs (submitit).

``--executor local --jobs N`` runs N jobs at once on this machine (submitit's local executor: each job is a
subprocess, its stdout / stderr in ``<study>/jobs/logs/``), with the cores split between them (torch threads per
job = cores // N, unless ``--threads`` says otherwise), and waits for all of them. ``--executor slurm`` submits
every run as one job of a SLURM array (partition, GPUs and CPUs per job, time limit, extra ``sbatch`` options;
``--jobs N`` caps how many run at once) and returns; rerunning the study command shows their progress, and the
last job to end writes the study's table.

This layer does not queue work of its own: submitit starts and watches the processes (local) or hands them to
SLURM, which requeues a preempted or timed-out job (``jobs.StudyJob``); here are only the throttle of the local
executor (N at a time, bounded polls) and a Ctrl-C that stops every job it started: SIGTERM (each run saves its
``last.pt``), a bounded wait, then SIGKILL for what is left. The jobs' controllers are started with SIGINT
ignored, so a terminal's Ctrl-C reaches them only through this process.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, one_line
from ..files import write_json
from .jobs import JOBS_DIR, JobFiles, StudyJob, lock_held

EXECUTORS = ("local", "slurm")
#: seconds between two looks at the local jobs
POLL_S = 0.2
#: seconds a stopped job has to save its last.pt and exit before it is killed
STOP_WAIT_S = 60.0
#: a local job's time limit when --time is not given (submitit's own default is 2 minutes)
LOCAL_NO_LIMIT_MIN = 60 * 24 * 365


@dataclass(frozen=True)
class ExecutorOptions:
    """How a study's runs are trained (the ``--executor`` flags); ``kind=None``: here, one after another."""

    kind: str | None = None
    jobs: int | None = None  # local: at once (default 1); slurm: at most at once (default: no cap)
    threads: int | None = None  # torch threads per run (default: cores // jobs for local jobs, torch's here)
    partition: str | None = None
    gpus_per_job: int = 0
    cpus_per_job: int | None = None
    time_min: int | None = None
    sbatch: tuple[str, ...] = ()  # extra sbatch options, KEY=VALUE (or a bare KEY for a switch)

    def validate(self) -> "ExecutorOptions":
        """Every flag checked before anything runs (one-line ConfigErrors)."""
        if self.kind is not None and self.kind not in EXECUTORS:
            raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got {self.kind}")
        for flag, value in (("jobs", self.jobs), ("threads", self.threads), ("cpus_per_job", self.cpus_per_job),
                            ("time", self.time_min)):
            if value is not None and int(value) <= 0:
                raise ConfigError(f"--{flag} must be a positive integer, got {value}")
        if self.gpus_per_job < 0:
            raise ConfigError(f"--gpus_per_job must be 0 or more, got {self.gpus_per_job}")
        if self.kind is None:
            given = [f for f, v in (("jobs", self.jobs), ("partition", self.partition), ("time", self.time_min),
                                    ("cpus_per_job", self.cpus_per_job), ("sbatch", self.sbatch),
                                    ("gpus_per_job", self.gpus_per_job)) if v]
            if given:
                raise ConfigError(f"--{given[0]} needs --executor local or --executor slurm")
        if self.kind == "local":
            given = [f for f, v in (("partition", self.partition), ("cpus_per_job", self.cpus_per_job),
                                    ("sbatch", self.sbatch)) if v]
            if given:
                raise ConfigError(f"--{given[0]} is a SLURM option; use it with --executor slurm")
        sbatch_parameters(self.sbatch)
        if self.kind == "local":
            check_local_gpus(self)
        return self

    @property
    def concurrency(self) -> int:
        """Runs training at the same time (what the disk must hold at once)."""
        return 1 if self.kind is None else int(self.jobs or (1 if self.kind == "local" else 1 << 30))

    def threads_per_job(self) -> int | None:
        """torch threads of each job: ``--threads``, else (local) the cores split between the jobs, else
        (slurm) the CPUs the job was given."""
        if self.threads:
            return int(self.threads)
        if self.kind == "local":
            return max(1, available_cores() // int(self.jobs or 1))
        return self.cpus_per_job


def available_cores() -> int:
    """The cores this process may run on (its affinity mask: a job's allocation, a ``taskset``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def sbatch_parameters(items) -> dict:
    """``--sbatch KEY=VALUE`` items as submitit's ``slurm_additional_parameters`` (a bare KEY: a switch)."""
    params = {}
    for item in items or ():
        key, sep, value = str(item).lstrip("-").partition("=")
        if not key or (sep and not value):
            raise ConfigError(f"--sbatch {item}: give an sbatch option as KEY=VALUE (e.g. --sbatch qos=high), "
                              "without the leading --")
        params[key.replace("-", "_")] = value if sep else None
    return params


def require_submitit(kind: str):
    """The submitit module, or a one-line error naming the extra that installs it."""
    try:
        import submitit
    except ImportError:
        raise ConfigError(f"--executor {kind} needs submitit, which is not installed; install it with: "
                          "pip install 'ventralkit[cluster]'") from None
    return submitit


def logs_folder(study: Path) -> Path:
    """Where submitit writes this invocation's job logs and pickles: ``<study>/jobs/logs/<time>-<pid>``
    (local job ids are process ids, which a later invocation may see again)."""
    return Path(study) / JOBS_DIR / "logs" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def make_executor(opts: ExecutorOptions, folder: Path, job_name: str = "ventralkit"):
    """A submitit executor for ``opts`` writing into ``folder`` (checked: a refused parameter is one line)."""
    submitit = require_submitit(opts.kind)
    try:
        if opts.kind == "local":
            ex = submitit.LocalExecutor(folder=folder)
            ex.update_parameters(timeout_min=opts.time_min or LOCAL_NO_LIMIT_MIN, gpus_per_node=opts.gpus_per_job)
            return ex
        ex = submitit.SlurmExecutor(folder=folder)
        params = {"job_name": job_name, "time": opts.time_min or 60, "gpus_per_node": opts.gpus_per_job or None,
                  "cpus_per_task": opts.cpus_per_job, "partition": opts.partition,
                  "additional_parameters": sbatch_parameters(opts.sbatch) or None}
        if opts.jobs:
            params["array_parallelism"] = int(opts.jobs)
        ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
        return ex
    except (RuntimeError, ValueError) as err:  # no srun on this machine; a parameter submitit refuses
        raise ConfigError(f"--executor {opts.kind}: {one_line(err)}") from None


def check_local_gpus(opts: ExecutorOptions) -> None:
    """Local jobs with GPUs each get their own: the machine must have ``--jobs x --gpus_per_job`` of them."""
    if not opts.gpus_per_job:
        return
    import torch

    need, have = opts.gpus_per_job * int(opts.jobs or 1), torch.cuda.device_count()
    if need > have:
        raise ConfigError(f"--executor local --jobs {opts.jobs or 1} --gpus_per_job {opts.gpus_per_job} needs {need} "
                          f"GPUs and this machine has {have}; lower --jobs or --gpus_per_job")


def write_record(job: StudyJob, kind: str, submitted) -> None:
    """``<study>/jobs/<run>.json``: where the run's job went and where its logs are (an earlier job's own state
    goes: it no longer describes the run)."""
    paths, files = submitted.paths, JobFiles(job.study, job.name)
    write_json(files.record, {"run": job.name, "executor": kind, "job_id": str(submitted.job_id),
                              "host": socket.gethostname(), "stdout": str(paths.stdout), "stderr": str(paths.stderr),
                              "submitted": round(time.time(), 3)})
    files.state.unlink(missing_ok=True)


# ---- SLURM -----------------------------------------------------------------------------------------------------
def submit_slurm(jobs: list[StudyJob], opts: ExecutorOptions, study: Path) -> list[str]:
    """Every job as one task of a SLURM array; the job ids. What sbatch refuses is one line (its error)."""
    ex = make_executor(opts, logs_folder(study), job_name=f"ventralkit-{Path(study).name}")
    quiet = io.StringIO()  # submitit also prints sbatch's complaint on stderr; it goes into the one line instead
    try:
        with contextlib.redirect_stderr(quiet), ex.batch():
            submitted = [ex.submit(job) for job in jobs]
    except Exception as err:
        if type(err).__name__ not in ("FailedJobError", "FailedSubmissionError", "CalledProcessError"):
            raise
        raise ConfigError(f"sbatch refused the study's jobs: {refusal_line(err)}; fix the SLURM options "
                          "(--partition, --gpus_per_job, --time, --sbatch)") from None
    for job, sub in zip(jobs, submitted):
        write_record(job, "slurm", sub)
    return [str(s.job_id) for s in submitted]


def refusal_line(err: BaseException) -> str:
    """sbatch's own line from a refused submission (``sbatch: error: ...``), else the error's last line."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    said = [ln for ln in lines if "error" in ln.lower()]
    return (said or lines or [type(err).__name__])[0]


# ---- local jobs ------------------------------------------------------------------------------------------------
@dataclass
class LocalOutcome:
    """How each job run here ended: names of the runs whose job ended, and of those that stopped early."""

    ended: list[str]
    interrupted: bool = False


def run_local(jobs: list[StudyJob], opts: ExecutorOptions, study: Path, waiting_for=(), say=print) -> LocalOutcome:
    """Run ``jobs`` N at a time with submitit's local executor and wait for every one (and for the runs in
    ``waiting_for``, trained by jobs that an earlier invocation left running). Ctrl-C / SIGTERM stop them all.

    Each of the N slots has its own GPUs (slot k: ``k * g`` to ``k * g + g - 1`` with ``--gpus_per_job g``)."""
    ex = make_executor(opts, logs_folder(study))
    pending, active, ended = list(jobs), {}, []
    others = {name: JobFiles(study, name) for name in waiting_for}
    slots = list(range(int(opts.jobs or 1)))
    reserved, free = slots[:len(others)], slots[len(others):]  # the earlier invocation's jobs hold the first
    try:
        with _sigterm_as_interrupt():
            while pending or active or others:
                while pending and free:
                    job, slot = pending.pop(0), free.pop(0)
                    active[job.name] = (_submit_local(ex, job, slot, opts.gpus_per_job), slot)
                    say(started_line(job, active[job.name][0], slot, opts.gpus_per_job))
                for name in [n for n, (j, _) in active.items() if j.done()]:
                    free.append(active.pop(name)[1])
                    ended.append(name)
                for name in [n for n, f in others.items() if not lock_held(f.lock)]:
                    del others[name]
                    free.extend(reserved[-1:])
                    del reserved[-1:]
                    ended.append(name)
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        stop_local_jobs([j for j, _ in active.values()], study, say)
        raise
    return LocalOutcome(ended)


def started_line(job: StudyJob, submitted, slot: int, gpus: int) -> str:
    threads = f"{job.threads} torch thread{'s' if job.threads != 1 else ''}"
    on = f", GPU {', '.join(map(str, range(slot * gpus, slot * gpus + gpus)))}" if gpus else ""
    return f"{job.name}: started (job {submitted.job_id}, {threads}{on})"


def _submit_local(ex, job: StudyJob, slot: int, gpus: int):
    """One job in its slot: the slot's GPUs; its controller starts with SIGINT ignored (a terminal's Ctrl-C
    reaches the study only)."""
    if gpus:
        ex.update_parameters(visible_gpus=tuple(range(slot * gpus, slot * gpus + gpus)))
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        submitted = ex.submit(job)
    finally:
        signal.signal(signal.SIGINT, old)
    write_record(job, "local", submitted)
    return submitted


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """A SIGTERM to the study (a scheduler, ``kill``) stops its jobs as a Ctrl-C does."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def stop_local_jobs(active: list, study: Path, say=print, wait_s: float | None = None) -> None:
    """SIGTERM to every job (each run saves ``last.pt``), a bounded wait, then SIGKILL for what is left.

    A second Ctrl-C during the wait kills at once. The controllers forward SIGTERM to their job; a job whose
    controller is gone is signalled by the process id its state file names."""
    if not active:
        return
    wait_s = STOP_WAIT_S if wait_s is None else wait_s
    say(f"stopping {len(active)} job(s): each saves its run's last.pt (up to {wait_s:.0f} s; Ctrl-C again to kill)")
    for job in active:
        _signal(job, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    try:
        with _sigterm_as_interrupt():
            while time.monotonic() < deadline and not all(job.done() for job in active):
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        pass
    for job in active:
        if not job.done():
            _kill_job(job, study)


def _signal(job, signum: int) -> None:
    process = getattr(job, "_process", None)
    if process is not None and process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)


def _kill_job(job, study: Path) -> None:
    """SIGKILL the job's task (its pid from the state file it wrote) and its controller; reap the controller."""
    for name in _job_runs(job, study):
        state = JobFiles(study, name).read_state() or {}
        pid = state.get("pid")
        if state.get("state") == "running" and isinstance(pid, int) and pid != os.getpid():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    _signal(job, signal.SIGKILL)
    process = getattr(job, "_process", None)
    if process is not None:
        with contextlib.suppress(Exception):
            process.wait(timeout=10)


def _job_runs(job, study: Path) -> list[str]:
    """The study runs whose record names this job's id."""
    folder = Path(study) / JOBS_DIR
    names = []
    for record in folder.glob("*.json"):
        if record.name.endswith(".state.json"):
            continue
        data = JobFiles(study, record.stem).read_record() or {}
        if data.get("job_id") == str(job.job_id):
            names.append(record.stem)
    return names
