"""Real studies through submitit's local executor (the library itself, no mock; issue 25's must-shows).

* A 4-run feedback study trained 2 jobs at a time gives the same table as the study trained in one process,
  one run after another; one job killed mid-run (SIGTERM, what ``kill`` and ``scancel`` send) saves its
  ``last.pt``, is listed with its log, and the rerun resumes it from there to the same numbers; another job sent
  submitit's timeout signal (SIGUSR2) is requeued by submitit and finishes in the same invocation. ``--keep best``
  leaves one ``best.pt`` per finished run, as large as the disk check said.
* Ctrl-C of a study stops every job (each saves its ``last.pt``) and leaves no process behind; a second
  invocation meanwhile only reports the progress.

Each run is CORnet-S100 at 16 px, 3 steps and one validation on one thread: ~25-40 s on 2 cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ventralkit.files import RunPaths
from ventralkit.studies.jobs import JobFiles, lock_held

pytest.importorskip("submitit", reason="submitit is the cluster extra: pip install 'ventralkit[cluster]'")

GRID = ["--outer_times", "1", "2", "--designs", "gated", "--seeds", "0", "1", "--epochs", "1", "--imsize", "16",
        "--batch_size", "32", "--max_steps_per_epoch", "3", "--no_inside", "--threads", "1"]
RUNS = ["feedforward-o1-s0", "feedforward-o1-s1", "gated-o2-s0", "gated-o2-s1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "VENTRALKIT_NO_PROGRESS": "1"}


def _command(out: Path, *argv) -> list[str]:
    return [sys.executable, "-m", "ventralkit.cli", "study", "feedback", "-o", str(out), *argv]


def _run(out: Path, *argv, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(_command(out, *argv), capture_output=True, text=True, env=ENV, timeout=timeout)


def _start(out: Path, *argv, log: Path) -> subprocess.Popen:
    """The study in its own process group (as a terminal's foreground job), its output in ``log``."""
    with log.open("w") as fh:
        return subprocess.Popen(_command(out, *argv), stdout=fh, stderr=subprocess.STDOUT, env=ENV,
                                start_new_session=True)


def _wait_until(what, timeout: float, process: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return
        if process is not None and process.poll() is not None:
            pytest.fail(f"the study ended before the test could act: {log.read_text() if log else ''}")
        time.sleep(0.05)
    pytest.fail(f"not reached within {timeout} s")


def _training(out: Path, name: str) -> bool:
    """The run's training loop holds its folder (past data loading and model building)."""
    return lock_held(out / "runs" / name / ".lock")


def _task_pid(out: Path, name: str) -> int:
    return int(JobFiles(out, name).read_state()["pid"])


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except OSError:
        return False


def _job_pids(out: Path) -> set[int]:
    """Every job's controller (its local job id) and task (the pid its state file names)."""
    pids = set()
    for name in RUNS:
        files = JobFiles(out, name)
        record, state = files.read_record() or {}, files.read_state() or {}
        pids |= {int(p) for p in (record.get("job_id"), state.get("pid")) if p}
    return pids


def _no_process_left(out: Path) -> None:
    pids = _job_pids(out)
    assert pids
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)]


@pytest.mark.slow
@pytest.mark.time_limit(1500)
def test_two_jobs_at_a_time_equal_one_process_and_a_killed_job_resumes(tmp_path):
    here, jobs = tmp_path / "here", tmp_path / "jobs"
    done = _run(here, *GRID)
    assert done.returncode == 0, done.stderr
    expected_csv, expected_md = (here / "feedback_study.csv").read_bytes(), (here / "feedback_study.md").read_bytes()
    for name in RUNS:  # --keep best: one best.pt per finished run
        assert sorted(p.name for p in RunPaths(here / "runs" / name).checkpoints.iterdir()) == ["best.pt"]

    log = tmp_path / "first.log"
    study = _start(jobs, *GRID, "--executor", "local", "--jobs", "2", log=log)
    killed, requeued = RUNS[0], RUNS[1]  # the first two jobs start at once
    _wait_until(lambda: _training(jobs, killed) and _training(jobs, requeued), 300, study, log)
    time.sleep(0.5)
    os.kill(_task_pid(jobs, killed), signal.SIGTERM)
    os.kill(_task_pid(jobs, requeued), signal.SIGUSR2)
    assert study.wait(timeout=900) == 1, log.read_text()  # a run did not finish
    printed = log.read_text()
    record = JobFiles(jobs, killed).read_record()
    assert "1 run did not finish (rerun the command to resume them from their last.pt):" in printed
    assert f"  {killed}: stopped: stopped by SIGTERM" in printed and f"log {record['stderr']}" in printed
    assert RunPaths(jobs / "runs" / killed).last.is_file()
    assert f"Left out (not finished): {killed}." in (jobs / "feedback_study.md").read_text()
    requeued_log = Path(JobFiles(jobs, requeued).read_record()["stdout"]).read_text()
    assert "SIGUSR2 received" in requeued_log and "resuming from" in requeued_log  # requeued by submitit
    assert (JobFiles(jobs, requeued).read_state() or {}).get("state") == "done"

    again = _run(jobs, *GRID, "--executor", "local", "--jobs", "2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "progress: 4 runs: 3 done, 1 stopped" in again.stdout and f"{killed}: started" in again.stdout
    resumed_log = Path(JobFiles(jobs, killed).read_record()["stdout"]).read_text()
    assert f"resuming from {RunPaths(jobs / 'runs' / killed).last}" in resumed_log
    assert (jobs / "feedback_study.csv").read_bytes() == expected_csv
    assert (jobs / "feedback_study.md").read_bytes() == expected_md
    _check_kept_and_estimated(jobs)
    _no_process_left(jobs)


def _check_kept_and_estimated(out: Path) -> None:
    """One best.pt per run, each as large as the disk check's estimate (which adds at most 1 MB per file)."""
    from ventralkit.studies.feedback import plan_study, planned_runs

    plan = plan_study(out, {}, train_missing=False)
    for planned in planned_runs(plan, inside=False, keep="best"):
        files = sorted(RunPaths(planned.run_dir).checkpoints.iterdir())
        assert [p.name for p in files] == ["best.pt"]
        size = files[0].stat().st_size
        assert size <= planned.disk.best < size + 2**20
        assert json.loads((planned.run_dir / "study_run.json").read_text())["finished"] is True


@pytest.mark.slow
def test_ctrl_c_stops_every_job_and_leaves_no_process(tmp_path):
    out, log = tmp_path / "study", tmp_path / "study.log"
    grid = [*GRID[:2], *GRID[3:]]  # outer_times 1 only: two runs
    names = RUNS[:2]
    study = _start(out, *grid, "--executor", "local", "--jobs", "2", log=log)
    _wait_until(lambda: all(_training(out, n) for n in names), 300, study, log)

    other = _run(out, *grid, "--executor", "local", "--jobs", "2", timeout=300)
    assert other.returncode == 0, other.stderr
    assert f"the study in {out} is being run by process {study.pid}" in other.stdout
    assert "2 runs: 2 running" in other.stdout

    os.killpg(study.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole foreground process group
    assert study.wait(timeout=180) == 130, log.read_text()
    printed = log.read_text()
    assert "stopping 2 job(s): each saves its run's last.pt" in printed and printed.rstrip().endswith("interrupted")
    for name in names:
        assert RunPaths(out / "runs" / name).last.is_file()
        assert (JobFiles(out, name).read_state() or {}).get("state") == "stopped"
    _no_process_left(out)
