"""Train the runs of a study that are not done: here one after another, as local jobs, or as SLURM jobs.

A study hands over its grid as ``PlannedRun``s (a name, a run folder, the module-level function that trains that
run, resuming its ``last.pt``, and writes its records, and the run's checkpoint sizes) and says which run folders
are done. ``train_runs`` then looks at where every run stands (``progress``), leaves alone what is done, running
or queued, checks the disk for the rest (``disk``) and trains them with the chosen executor (``executor``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..files import RunPaths
from .disk import check_disk, held_bytes
from .executor import ExecutorOptions, run_local, submit_slurm
from .jobs import StudyJob, hold_lock, lock_held, lock_owner
from .progress import RunProgress, progress_text, run_progress

STUDY_LOCK = ".lock"


class StartRefused(ConfigError):
    """The study could not start (not enough disk, options the scheduler refuses): no run has trained, so the
    caller may put the study folder back as it was."""


@contextlib.contextmanager
def refusing_start():
    """A ConfigError in the block is a ``StartRefused``."""
    try:
        yield
    except StartRefused:
        raise
    except ConfigError as err:
        raise StartRefused(str(err)) from None


@dataclass
class PlannedRun:
    name: str
    run_dir: Path
    fn: Callable  # fn(**kwargs) trains the run (resuming its last.pt) and writes its records
    kwargs: dict
    disk: object  # disk.RunDisk


@dataclass
class Outcome:
    """Where the runs stand after this invocation; ``complete``: every run has ended (done or failed), so the
    study's table can be written."""

    progress: list[RunProgress] = field(default_factory=list)
    complete: bool = True
    busy_elsewhere: str | None = None  # the process that runs this study now, when it is not this one


def progress_of(study: Path, runs: list[PlannedRun], is_done: Callable[[Path], bool], epochs=None):
    return [run_progress(study, r.name, r.run_dir, is_done(r.run_dir), epochs) for r in runs]


def say_now(text: str) -> None:
    print(text, flush=True)


def train_runs(study: Path, runs: list[PlannedRun], opts: ExecutorOptions, keep: str, is_done: Callable,
               epochs: int | None = None, finalize: Callable | None = None, say=say_now) -> Outcome:
    """Train what is not done, running nor queued; the progress after. One invocation at a time per study:
    another one finds the study's lock held and only reports the progress."""
    lock = Path(study) / STUDY_LOCK
    if lock_held(lock):
        progress = progress_of(study, runs, is_done, epochs)
        return Outcome(progress, complete=False, busy_elsewhere=lock_owner(lock))
    with hold_lock(lock, f"study {study}"):
        return _train(study, runs, opts, keep, is_done, epochs, finalize, say)


def _train(study, runs, opts, keep, is_done, epochs, finalize, say) -> Outcome:
    progress = progress_of(study, runs, is_done, epochs)
    state = {p.name: p.state for p in progress}
    busy = [r.name for r in runs if state[r.name] in ("running", "queued")]
    todo = [r for r in runs if state[r.name] in ("new", "failed", "stopped")]
    if opts.kind is not None and any(s != "new" for s in state.values()) and (todo or opts.kind == "local"):
        say("progress: " + progress_text(progress))  # (else the caller reports the progress, unchanged)
    with refusing_start():
        check_disk(study, [r.disk for r in todo], [held_bytes(r.run_dir) for r in todo], keep,
                   opts.concurrency, say=say)
    if opts.kind is None:
        _train_here(runs, is_done, say)
    elif opts.kind == "local":
        jobs = [StudyJob(str(study), r.name, r.fn, r.kwargs, threads=opts.threads_per_job()) for r in todo]
        run_local(jobs, opts, study, waiting_for=busy, say=say)
    elif todo:
        jobs = [StudyJob(str(study), r.name, r.fn, r.kwargs, threads=opts.threads_per_job(), finalize=finalize)
                for r in todo]
        with refusing_start():
            ids = submit_slurm(jobs, opts, study)
        say(f"submitted {len(ids)} SLURM job{'s' if len(ids) != 1 else ''} ({ids[0].split('_')[0]}); rerun this "
            "command to see their progress; the last job to end writes the study's table")
    progress = progress_of(study, runs, is_done, epochs)
    return Outcome(progress, complete=not any(p.state in ("running", "queued") for p in progress))


def _train_here(runs: list[PlannedRun], is_done: Callable, say) -> None:
    """One run after another in this process (what ``study`` did before executors), each run's line first."""
    for i, r in enumerate(runs, 1):
        if is_done(r.run_dir):
            say(f"[{i}/{len(runs)}] {r.name}: finished, skipped")
            continue
        partial = RunPaths(r.run_dir).last.is_file()
        say(f"[{i}/{len(runs)}] {r.name}: " + ("resuming" if partial else "training"))
        r.fn(**r.kwargs)

