"""Studies as jobs and the disk budget (issue 25 items 1-2), the quick part: what is refused and how, what each
job leaves behind, how a rerun reads it, what --keep deletes. Training is a stand-in here (as in
tests/test_study_cli.py); tests/test_study_executor.py trains real studies with submitit's local executor.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ventralkit.cli import main
from ventralkit.errors import ConfigError
from ventralkit.files import RunPaths
from ventralkit.studies import disk, executor, progress
from ventralkit.studies.jobs import JobFiles, hold_lock, lock_held

SMALL = ["--outer_times", "1", "2", "--designs", "gated", "--seeds", "0", "--epochs", "1", "--imsize", "16",
         "--batch_size", "8", "--max_steps_per_epoch", "1", "--no_inside"]


@pytest.fixture
def trained(monkeypatch):
    """The engine's ``train`` replaced by one that leaves what a finished run leaves: ``last.pt`` marked finished,
    a ``best.pt`` (a real, small torch file), ``metrics.csv``. Returns the configs it was called with."""
    import ventralkit.engine.train as engine_train

    calls = []

    def fake_train(cfg):
        calls.append(cfg)
        run = RunPaths(cfg.output_path)
        run.checkpoints.mkdir(parents=True, exist_ok=True)
        torch.save({"finished": True, "w": torch.zeros(1000)}, run.last)
        torch.save({"w": torch.zeros(10)}, run.best)
        (run.root / "metrics.csv").write_text("epoch,val_top1\n1,0.5\n")
        return SimpleNamespace(trained=[])

    monkeypatch.setattr(engine_train, "train", fake_train)
    monkeypatch.setattr("ventralkit.studies.feedback.run_macs", lambda run, size, classes: 10 ** 8 * run.outer_times)
    return calls


def _study(out, *argv):
    try:
        return main(["study", "feedback", "-o", str(out), *SMALL, *argv])
    except SystemExit as exit_:  # argparse's own refusals (a choice not offered)
        return exit_.code


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# ---- refusals: one line, exit 2, nothing written ---------------------------------------------------------------
def test_executor_without_submitit_names_the_extra(tmp_path, capsys, monkeypatch, trained):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit raises ImportError
    out = tmp_path / "study"
    for kind in ("local", "slurm"):
        assert _study(out, "--executor", kind) == 2
        line = _one_error_line(capsys)
        assert f"--executor {kind} needs submitit" in line and "pip install 'ventralkit[cluster]'" in line
    assert not out.exists() and not trained


@pytest.mark.parametrize("argv, says", [
    (["--jobs", "2"], "--jobs needs --executor local or --executor slurm"),
    (["--executor", "local", "--partition", "gpu"], "--partition is a SLURM option"),
    (["--executor", "local", "--jobs", "0"], "--jobs must be a positive integer"),
    (["--executor", "slurm", "--sbatch", "qos="], "--sbatch qos=: give an sbatch option as KEY=VALUE"),
    (["--keep", "some"], "invalid choice"),
])
def test_bad_executor_flags_are_one_line(tmp_path, capsys, trained, argv, says):
    out = tmp_path / "study"
    assert _study(out, *argv) == 2
    assert says in capsys.readouterr().err
    assert not out.exists() and not trained


def _fake_slurm(tmp_path: Path, monkeypatch, sbatch_says: str) -> None:
    """``srun`` (submitit looks for it) and an ``sbatch`` that refuses, first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("srun", "exit 0"), ("sbatch", f"echo '{sbatch_says}' >&2; exit 1")):
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_options_sbatch_refuses_are_its_error_in_one_line(tmp_path, capsys, monkeypatch, trained):
    pytest.importorskip("submitit", reason="submitit is the cluster extra: pip install 'ventralkit[cluster]'")
    _fake_slurm(tmp_path, monkeypatch, "sbatch: error: invalid partition specified: nope")
    out = tmp_path / "study"
    assert _study(out, "--executor", "slurm", "--partition", "nope", "--time", "30") == 2
    line = _one_error_line(capsys)
    assert "sbatch refused the study's jobs: sbatch: error: invalid partition specified: nope" in line
    assert not out.exists() and not trained  # nothing half-written: no study.json, no job records

    # a study that already ran here keeps its folder as it was
    assert _study(out) == 0 and len(trained) == 2

    def files():  # the lock files say who held them last
        return {p.relative_to(out): p.read_bytes() for p in out.rglob("*")
                if p.is_file() and not p.name.endswith(".lock")}

    before = files()
    assert _study(out, "--seeds", "0", "1", "--executor", "slurm", "--partition", "nope") == 2
    assert "invalid partition" in _one_error_line(capsys)
    assert files() == before


def test_disk_check_refuses_a_study_that_does_not_fit(tmp_path, capsys, monkeypatch, trained):
    out = tmp_path / "study"
    monkeypatch.setattr(disk, "free_bytes", lambda path: 300 * 2**20)  # 300 MB free
    assert _study(out) == 2
    line = _one_error_line(capsys)
    # CORnet-S100: last.pt ~405 MB while a run trains, best.pt ~203 MB kept per run
    assert f"--output {out}: the study's runs need ~" in line and "300 MB are free" in line
    assert "--keep none" not in line  # even keeping nothing, one run training needs more than 300 MB
    assert not out.exists() and not trained

    monkeypatch.setattr(disk, "free_bytes", lambda path: 1100 * 2**20)
    assert _study(out) == 2
    line = _one_error_line(capsys)
    assert "or --keep none (~" in line  # the advice, followed:
    assert _study(out, "--keep", "none") == 0 and len(trained) == 2
    printed = capsys.readouterr().out
    assert "disk: 2 runs to train need ~" in printed and "1.1 GB free" in printed
    assert not list((out / "runs").rglob("*.pt"))  # --keep none: no checkpoint left


def test_disk_need_counts_what_stays_and_what_trains_at_once():
    run = disk.RunDisk(last=400, best=200)
    # each run keeps best.pt (200); 2 training at once hold 2 x (2 x 400 + 200 - 200) more
    assert disk.study_need([run] * 4, [0] * 4, "best", 2) == 4 * 200 + 2 * 800
    assert disk.study_need([run] * 4, [0] * 4, "last", 1) == 4 * 600 + 1 * 400
    assert disk.study_need([run] * 4, [0] * 4, "none", 4) == 4 * 1000
    assert disk.study_need([run] * 2, [600, 0], "best", 1) == 2 * 200 + 800 - 600  # a partial run's files


def test_keep_deletes_last_only_when_best_is_intact(tmp_path):
    run = RunPaths(tmp_path / "run")
    run.checkpoints.mkdir(parents=True)

    def lay():
        torch.save({"w": torch.zeros(100)}, run.last)
        torch.save({"w": torch.ones(10)}, run.best)

    lay()
    assert disk.apply_keep(run.root, "last") is None and run.last.is_file() and run.best.is_file()
    assert disk.apply_keep(run.root, "best") is None and not run.last.exists() and run.best.is_file()
    lay()
    assert disk.apply_keep(run.root, "none") is None and not any(run.checkpoints.iterdir())
    lay()
    data = bytearray(run.best.read_bytes())
    data[data.index(b"\x00\x00\x80\x3f" * 10) + 5] ^= 0xFF  # one flipped bit of the weights: their CRC fails
    run.best.write_bytes(bytes(data))
    note = disk.apply_keep(run.root, "best")
    assert note and "kept" in note and "missing or damaged" in note and run.last.is_file()


# ---- the executor's settings ------------------------------------------------------------------------------
def test_threads_per_job_split_the_cores(monkeypatch):
    monkeypatch.setattr(executor, "available_cores", lambda: 8)
    assert executor.ExecutorOptions("local", jobs=2).threads_per_job() == 4
    assert executor.ExecutorOptions("local", jobs=3).threads_per_job() == 2
    assert executor.ExecutorOptions("local", jobs=16).threads_per_job() == 1
    assert executor.ExecutorOptions("local", jobs=2, threads=3).threads_per_job() == 3
    assert executor.ExecutorOptions("local").threads_per_job() == 8
    assert executor.ExecutorOptions("slurm", cpus_per_job=6).threads_per_job() == 6


def test_sbatch_options_become_submitit_parameters():
    assert executor.sbatch_parameters(["qos=high", "--account=lab", "exclusive", "mail-type=END"]) == {
        "qos": "high", "account": "lab", "exclusive": None, "mail_type": "END"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        executor.sbatch_parameters(["=x"])


# ---- what a rerun reads --------------------------------------------------------------------------------------
def test_progress_tells_running_killed_stopped_failed_and_queued(tmp_path):
    study = tmp_path / "study"
    run_dir = study / "runs" / "r"
    run_dir.mkdir(parents=True)
    files = JobFiles(study, "r")
    log = tmp_path / "r.err"
    log.write_text("epoch 1/3: train loss 2.3\n\nlast words of the run\n")
    files.folder.mkdir(parents=True)
    files.record.write_text(json.dumps({"executor": "local", "job_id": "123", "stderr": str(log)}))
    (run_dir / "metrics.csv").write_text("epoch,val_top1\n1,0.1\n")

    files.write_state("running")
    with hold_lock(files.lock, "run r"):
        assert lock_held(files.lock)
        p = progress.run_progress(study, "r", run_dir, finished=False, epochs=3)
        assert p.state == "running" and f"process {os.getpid()}" in p.detail and "1 of 3 epochs done" in p.detail
    assert not lock_held(files.lock)
    p = progress.run_progress(study, "r", run_dir, finished=False)
    assert p.state == "failed" and "killed?" in p.detail and "last words of the run" in p.detail
    assert p.log == str(log) and str(log) in p.line()

    files.write_state("stopped", message="stopped by SIGTERM at epoch 2, step 1")
    p = progress.run_progress(study, "r", run_dir, finished=False)
    assert (p.state, p.detail) == ("stopped", "stopped by SIGTERM at epoch 2, step 1")
    files.write_state("failed", message="CUDA out of memory")
    assert progress.run_progress(study, "r", run_dir, finished=False).detail == "CUDA out of memory"
    assert progress.run_progress(study, "r", run_dir, finished=True).state == "done"

    files.state.unlink()  # submitted, not started: a local job's controller that runs here is starting
    import socket

    files.record.write_text(json.dumps({"executor": "local", "job_id": str(os.getpid()),
                                        "host": socket.gethostname(), "stderr": str(log)}))
    assert progress.run_progress(study, "r", run_dir, finished=False).state == "queued"
    files.record.write_text(json.dumps({"executor": "local", "job_id": "999999999", "host": socket.gethostname(),
                                        "stderr": str(log)}))
    p = progress.run_progress(study, "r", run_dir, finished=False)
    assert p.state == "failed" and "ended before the run started" in p.detail
    files.record.write_text(json.dumps({"executor": "slurm", "job_id": "77_1", "stderr": str(log)}))
    p = progress.run_progress(study, "r", run_dir, finished=False)
    assert p.state in ("queued", "failed")  # queued unless a squeue here says the job is gone
    text = progress.progress_text([p, progress.RunProgress("s", "done")])
    assert text.startswith("2 runs: 1 done, 1 ") and "  r: " in text and "  s:" not in text


def test_a_study_running_elsewhere_is_reported_not_started_again(tmp_path, capsys, trained):
    out = tmp_path / "study"
    assert _study(out, "--seeds", "0") == 0 and len(trained) == 2
    with hold_lock(out / ".lock", "study"):
        assert _study(out, "--seeds", "0", "1") == 0
    printed = capsys.readouterr().out
    assert f"the study in {out} is being run by process {os.getpid()}" in printed
    assert "4 runs: 2 done, 2 new" in printed and "the table is written when every run has ended" in printed
    assert len(trained) == 2  # nothing trained by the second invocation


def test_slurm_job_writes_the_table_once_no_run_is_left(tmp_path, trained):
    from ventralkit.studies.feedback import finish_study_if_done

    out = tmp_path / "study"
    assert _study(out, "--keep", "last") == 0
    (out / "feedback_study.csv").unlink()
    records = list((out / "runs").glob("*/study_run.json"))
    moved = records[0].with_suffix(".bak")
    records[0].rename(moved)  # one run not done (new): no table yet
    finish_study_if_done(str(out), inside=False)
    assert not (out / "feedback_study.csv").exists()
    moved.rename(records[0])
    finish_study_if_done(str(out), inside=False)
    assert (out / "feedback_study.csv").is_file()


def test_local_jobs_with_gpus_need_one_set_per_job(tmp_path, capsys, monkeypatch, trained):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    out = tmp_path / "study"
    assert _study(out, "--executor", "local", "--jobs", "2", "--gpus_per_job", "1") == 2
    line = _one_error_line(capsys)
    assert "--executor local --jobs 2 --gpus_per_job 1 needs 2 GPUs and this machine has 1" in line
    assert not out.exists() and not trained
    executor.ExecutorOptions("local", jobs=1, gpus_per_job=1).validate()  # one job on the one GPU: fine
