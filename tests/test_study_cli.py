"""``ventralkit study feedback`` as a command: --report_only, settings kept in study.json, dataset spellings.

Training is replaced by a stand-in that writes what a finished run leaves (a ``last.pt`` marked finished
and ``metrics.csv``), so these tests check which runs the command trains, with which settings, and what
it writes or refuses, in seconds; ``tests/test_feedback.py`` trains a real study end to end.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ventralkit.cli import main
from ventralkit.data.embedded import canonical_dataset
from ventralkit.errors import ConfigError

SMALL = ["--outer_times", "1", "2", "--designs", "gated", "--seeds", "0", "--epochs", "1", "--imsize", "16",
         "--batch_size", "8", "--max_steps_per_epoch", "1"]


@pytest.fixture
def trained(monkeypatch):
    """Replaces the engine's ``train``; returns the list of configs it was called with."""
    import ventralkit.engine.train as engine_train

    calls = []

    def fake_train(cfg):
        calls.append(cfg)
        run = Path(cfg.output_path)
        (run / "checkpoints").mkdir(parents=True)
        torch.save({"finished": True}, run / "checkpoints" / "last.pt")
        (run / "metrics.csv").write_text("epoch,val_top1\n" + "".join(f"{e},0.{e}\n" for e in range(1, cfg.epochs + 1)))
        return SimpleNamespace(trained=[])  # as a TrainResult: no figure to draw for this stand-in

    monkeypatch.setattr(engine_train, "train", fake_train)
    # the compute column builds a 53M-parameter CORnet-S100 per row: not what these tests are about
    monkeypatch.setattr("ventralkit.studies.feedback.run_macs",
                        lambda run, size, classes: 10 ** 8 * run.outer_times)
    return calls


def _study(out, *argv):
    """The command; ``--no_inside`` always (the stand-in runs have no weights to look inside)."""
    return main(["study", "feedback", "-o", str(out), "--no_inside", *argv])


def test_report_only_without_a_study_says_so_and_writes_nothing(tmp_path, capsys, trained):
    new = tmp_path / "new"
    assert _study(new, "--report_only") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--output {new}: no study here (no study.json) to report" in err[0], err
    assert not new.exists() and not trained
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _study(empty, "--report_only", *SMALL) == 2
    assert list(empty.iterdir()) == []
    assert "without --report_only" in err[0]  # the advice, followed:
    assert _study(new, *SMALL) == 0 and [c.seed for c in trained] == [0, 0]


def test_settings_come_from_study_json_for_report_only_and_reruns(tmp_path, capsys, trained):
    out = tmp_path / "study"
    assert _study(out, *SMALL) == 0
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["feedforward-o1-s0", "gated-o2-s0"]
    stored = (out / "study.json").read_bytes()
    capsys.readouterr()

    assert _study(out, "--report_only") == 0  # no flag repeated
    printed = capsys.readouterr().out
    assert f"from {out / 'study.json'}: --dataset digits-occluded:0.5, --outer_times 1 2, --designs gated" in printed
    assert printed.count("finished, skipped") == 2 and "Left out" not in printed
    assert "| gated | 2 | 1 | 1 |" in printed and "| feedforward | 1 | 1 | 1 |" in printed
    assert (out / "study.json").read_bytes() == stored and len(trained) == 2

    assert _study(out) == 0  # continuing: nothing left to train
    assert capsys.readouterr().out.count("finished, skipped") == 2 and len(trained) == 2

    assert _study(out, "--seeds", "0", "1") == 0  # a larger grid: only the new runs, with the stored settings
    new = trained[2:]
    assert sorted((c.model_kwargs.get("feedback", "ff"), c.seed) for c in new) == [("ff", 1), ("gated", 1)]
    assert {(c.epochs, c.image_size, c.batch_size, c.max_steps_per_epoch) for c in new} == {(1, 16, 8, 1)}
    assert json.loads((out / "study.json").read_text())["seeds"] == [0, 1]
    assert _study(out, "--seeds", "2") == 0 and len(trained) == 6  # one more seed, in a call of its own
    assert json.loads((out / "study.json").read_text())["seeds"] == [0, 1, 2]  # the study: all of them
    capsys.readouterr()
    assert _study(out, "--report_only") == 0
    printed = capsys.readouterr().out
    assert "| gated | 2 | 3 | 1 |" in printed and "| feedforward | 1 | 3 | 1 |" in printed

    assert _study(out, "--epochs", "2") == 2  # a different setting is still refused, in one line
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds a study with --epochs 1 (this one: 2)" in err


def test_equivalent_dataset_spellings_are_one_dataset(tmp_path, capsys, trained):
    for spelling in ("digits-occluded", "digits-occluded:0.5", "digits-occluded:0.50", "digits-occluded:5e-1"):
        assert canonical_dataset(spelling) == "digits-occluded:0.5"
    assert canonical_dataset("digits-occluded:-0") == canonical_dataset("digits-occluded:0") == "digits-occluded:0.0"
    assert canonical_dataset("digits-occluded:1") == "digits-occluded:1.0"
    assert canonical_dataset("digits") == "digits"
    assert canonical_dataset("digits-occluded:0.123456789") != canonical_dataset("digits-occluded:0.123457")
    with pytest.raises(ConfigError, match="occlusion level"):
        canonical_dataset("digits-occluded:2")

    out = tmp_path / "study"
    assert _study(out, *SMALL, "--dataset", "digits-occluded") == 0
    assert json.loads((out / "study.json").read_text())["dataset"] == "digits-occluded:0.5"
    assert {c.dataset for c in trained} == {"digits-occluded:0.5"}
    assert _study(out, "--dataset", "digits-occluded:0.5", "--report_only") == 0
    assert _study(out, "--dataset", "digits-occluded:0.50") == 0 and len(trained) == 2
    capsys.readouterr()
    assert _study(out, "--dataset", "digits-occluded:0.7", "--report_only") == 2
    assert "holds a study with --dataset digits-occluded:0.5 (this one: digits-occluded:0.7)" in capsys.readouterr().err

    # a study.json written before the spellings were made one keeps working
    legacy = json.loads((out / "study.json").read_text())
    (out / "study.json").write_text(json.dumps({**legacy, "dataset": "digits-occluded"}))
    assert _study(out, "--dataset", "digits-occluded:0.5", "--report_only") == 0


def test_unreadable_study_json_is_one_line(tmp_path, capsys):
    out = tmp_path / "study"
    out.mkdir()
    (out / "study.json").write_text('{"dataset": "digits-occ')
    assert _study(out, "--report_only") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{out / 'study.json'}: not a readable study file" in err
    (out / "study.json").write_text('{"dataset": "digits", "seeds": 3}')
    assert _study(out, "--report_only") == 2
    assert f"{out / 'study.json'}: not a study file" in capsys.readouterr().err
