"""The command line starts fast: commands that need no torch do not import it, `models` reads stored counts."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ventralkit.cli import COMMAND_MODULES, build_parser
from ventralkit.models import summary

#: run in a fresh interpreter: prints whether torch was imported after ventralkit.cli.main(argv)
PROBE = """
import sys
from ventralkit.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print("TORCH" if "torch" in sys.modules else "NO-TORCH", code)
"""


def _imports_torch(*argv) -> tuple[bool, str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *map(str, argv)], capture_output=True, text=True, timeout=120)
    last = done.stdout.strip().splitlines()[-1]
    return last.startswith("TORCH"), done.stdout + done.stderr


@pytest.mark.parametrize("argv", [["--help"], ["corrupt", "--help"], ["plot", "--help"], ["compare", "--help"],
                                  ["prepare", "--help"], ["models"], ["models", "cornet_*"], ["weights", "list"]])
def test_torch_free_commands_do_not_import_torch(argv):
    torch, out = _imports_torch(*argv)
    assert not torch, out
    assert out.strip()  # the command printed something (help or the table)


def test_corrupt_runs_without_torch(tmp_path):
    from PIL import Image

    (tmp_path / "val/a").mkdir(parents=True)
    Image.new("RGB", (32, 32), (120, 90, 60)).save(tmp_path / "val/a/x.png")
    torch, out = _imports_torch("corrupt", tmp_path / "val", tmp_path / "c", "--corruptions", "contrast",
                                "--severities", "1", "-j", "0", "--quiet")
    assert (tmp_path / "c/contrast/1/a/x.png").is_file(), out
    assert not torch, out


def test_a_torch_command_still_builds_its_parser():
    torch, out = _imports_torch("train", "--help")
    assert "--model" in out


def test_command_table_matches_the_modules():
    """The stub help listed by `ventralkit --help` is the help each module registers, under the same name."""
    parser = build_parser()  # every module
    sub = next(a for a in parser._actions if a.dest == "command")
    registered = {a.dest: a.help for a in sub._choices_actions}
    table = {e[0]: e[2] for e in COMMAND_MODULES if not isinstance(e, str)}
    assert {k: registered.get(k) for k in table} == table


def test_parser_errors_name_the_program_once(capsys):
    from ventralkit.cli import main

    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("ventralkit: error: argument COMMAND: invalid choice: 'no-such-command'"), err
    with pytest.raises(SystemExit):
        main(["corrupt"])
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("ventralkit corrupt: error: the following")


def _meta_buildable(name: str) -> bool:
    import torch

    from ventralkit.models import create_model

    try:
        with torch.device("meta"):
            create_model(name)
        return True
    except (NotImplementedError, RuntimeError):
        return False


def test_stored_model_table_matches_the_registry():
    """model_table.json lists every registered model with its metadata and the parameter count of the model
    built on the meta device (the V1 front ends that cannot be built there are checked in the slow test).
    If this fails: python -m ventralkit.models.summary"""
    from ventralkit.models import list_models

    stored = {r["name"]: r for r in summary.stored_rows()}
    assert sorted(stored) == list_models()
    for name in list_models():
        if _meta_buildable(name):
            assert stored[name] == summary.describe_model(name), name


@pytest.mark.slow
def test_stored_parameter_counts_are_those_of_the_built_models():
    from ventralkit.models import count_parameters, create_model

    for row in summary.stored_rows():
        assert row["params"] == count_parameters(create_model(row["name"])), row["name"]


def test_models_command_prints_the_stored_table(cli):
    code, out, _ = cli("models", "cornet_z")
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("cornet_z"))
    assert "2,071,656" in row  # CORnet-Z's parameter count (matches the built model, see the tests above)


def test_the_entry_point_tunes_the_collector_for_one_command():
    """`ventralkit ...` as a process (main() with no argv) collects garbage less often while the command runs
    (its start imports ~400,000 objects that are no garbage) and freezes the collector when the command is
    done, so the interpreter's shutdown does not spend a second collecting torch's objects; main(argv), as
    tests and notebooks call it, leaves the collector as it was. Both return the command's exit code."""
    from ventralkit.cli import COMMAND_GC_THRESHOLDS

    probe = ("import gc, sys\nfrom ventralkit.cli import main\nsys.argv = ['ventralkit', 'models']\n"
             "default = gc.get_threshold()\ncode = main({argv})\n"
             "print(code, gc.get_freeze_count() > 0, gc.get_threshold() == default, list(gc.get_threshold()))\n")
    for argv, entry in (("", True), ("['models']", False)):
        done = subprocess.run([sys.executable, "-c", probe.format(argv=argv)], capture_output=True, text=True,
                              timeout=120)
        code, frozen, untouched, thresholds = done.stdout.strip().splitlines()[-1].split(" ", 3)
        assert (code, frozen, untouched) == ("0", str(entry), str(not entry)), done.stdout + done.stderr
        if entry:
            assert thresholds == str(list(COMMAND_GC_THRESHOLDS))
