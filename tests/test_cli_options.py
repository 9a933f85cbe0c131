"""The command line's options (issue 22 item 4): an option several commands share is declared once (one set of
flags, one type, one default, one help text), every option and alias users type keeps working, and where the
commands used to differ in default, each still resolves the default it had."""

from __future__ import annotations

import argparse

import pytest

from ventralkit.cli import build_parser
from ventralkit.cli.common import SHARED_OPTIONS

#: the option strings each command accepted before the shared declarations (issue 22); scripts and the
#: original CORnet command lines use them, so none may disappear (new options are fine)
ACCEPTED = {
    "": "--version",
    "compare": "-o --output --no_plot",
    "corrupt": "--corruptions --severities --seed -j --workers --size --jpeg_quality --quiet",
    "demo": "-o --output_path --epochs --no_progress",
    "features": "--model --num_classes --ckpt_path --checkpoint --pretrained --random_init --trust_checkpoint "
                "--times --outer_times --feedback --model_kwargs --data_path --dataset -j --workers --batch_size "
                "--imsize --image_size --device --ngpus --amp --channels_last --on_bad_image --no_progress -o "
                "--output_path --layers --time_steps --time_step --format --transform --dtype --overwrite",
    "models": "--shapes",
    "neural": "--features --responses --responses_key --stimuli --groups --metrics --splits --seed --ceiling "
              "--no_ceiling --strict -o --output_path --no_figure --layers --model --num_classes --ckpt_path "
              "--checkpoint --pretrained --random_init --trust_checkpoint --times --outer_times --feedback "
              "--model_kwargs --data_path --dataset -j --workers --batch_size --imsize --image_size --device "
              "--ngpus --amp --channels_last --on_bad_image --no_progress",
    "plot": "-o --output --title --zoom",
    "prepare digits": "--imsize --per_class",
    "prepare miniimagenet": "--mode --val_from",
    "robustness": "--model --num_classes --ckpt_path --checkpoint --pretrained --random_init --trust_checkpoint "
                  "--times --outer_times --feedback --model_kwargs --data_path --clean_path --corruptions "
                  "--severities -j --workers --batch_size --imsize --image_size --preprocess --device --amp "
                  "--baseline --baseline_clean_error --name --compare --names -o --output_path --quiet",
    "study feedback": "-o --output --dataset --outer_times --designs --seeds --epochs --imsize --image_size "
                      "--batch_size --lr --max_steps_per_epoch -j --workers --threads --no_inside --report_only "
                      "--at_epoch --keep --executor --jobs --partition --gpus_per_job --cpus_per_job --time --sbatch",
    "test": "--model --num_classes --ckpt_path --checkpoint --pretrained --random_init --trust_checkpoint --times "
            "--outer_times --feedback --model_kwargs --data_path --dataset -j --workers --batch_size --imsize "
            "--image_size --device --ngpus --amp --channels_last --on_bad_image --no_progress -o --output_path "
            "--layer --sublayer --time_step --evaluate --transform --format --eval_transform --classes_path",
    "train": "--model --num_classes --ckpt_path --checkpoint --pretrained --trust_checkpoint --times --outer_times "
             "--feedback --model_kwargs --data_path --dataset -j --workers --batch_size --imsize --image_size "
             "--recipe --config -o --output_path --resume --restore_path --overwrite --list_recipes --epochs --lr "
             "--learning_rate --optimizer --momentum --weight_decay --scheduler --pct_start --clip_grad_value "
             "--clip_grad_norm --step_size --gamma --milestones --warmup_epochs --label_smoothing --mixup_alpha "
             "--cutmix_alpha --trainable --frozen_bn --augment --eval_transform --reset_classifier --no-pretrained "
             "--no_pretrained --on_nonfinite --ngpus --device --amp --channels_last --sync_bn --compile "
             "--data_backend --seed --log_every --val_every --save_every_minutes --keep_epochs "
             "--max_steps_per_epoch --on_bad_image --tensorboard --no_progress",
    "v1-probe": "--model --num_classes --ckpt_path --checkpoint --pretrained --random_init --trust_checkpoint "
                "--times --outer_times --feedback --model_kwargs --layer --time_step --positions --quick "
                "--visual_degrees --imsize --image_size --no_contrast --batch_size --device --reference --n_boot "
                "--seed --label --no_figures -o --output --compare",
}

#: flags spelled like a shared option that mean something else, each with why
NOT_THE_SHARED_OPTION = {
    ("corrupt", "--workers"): "processes that write corrupted images (default: every core), not DataLoader workers",
    ("prepare digits", "--imsize"): "the size of the image files written, not a model's input size",
}


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(command words, its parser) for every command and sub-command."""
    yield " ".join(prefix), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*prefix, name))


@pytest.fixture(scope="module")
def commands() -> dict[str, argparse.ArgumentParser]:
    return dict(_commands(build_parser()))


def test_every_option_and_alias_is_still_accepted(commands):
    for command, flags in ACCEPTED.items():
        have = {flag for action in commands[command]._actions for flag in action.option_strings}
        missing = [flag for flag in flags.split() if flag not in have]
        assert not missing, f"ventralkit {command} no longer accepts {missing}"


def test_a_shared_option_is_the_same_declaration_in_every_command(commands):
    """Flags, dest, type, choices, default and help all come from SHARED_OPTIONS, wherever the option is."""
    flag_to_spec = {flag: spec for spec in SHARED_OPTIONS.values() for flag in spec.flags}
    seen = {name: [] for name in SHARED_OPTIONS}
    for command, parser in commands.items():
        for action in parser._actions:
            shared = {flag_to_spec[f].dest for f in action.option_strings if f in flag_to_spec}
            if not shared or any((command, f) in NOT_THE_SHARED_OPTION for f in action.option_strings):
                continue
            (name,) = shared
            spec = SHARED_OPTIONS[name]
            got = (tuple(action.option_strings), action.dest, action.default, action.help, action.type,
                   list(action.choices) if action.choices else None)
            want = (spec.flags, spec.dest, None, spec.help, spec.kwargs.get("type"), spec.kwargs.get("choices"))
            assert got == want, f"ventralkit {command} {action.option_strings[-1]}: {got} != {want}"
            seen[spec.dest].append(command)
    for name, where in seen.items():  # "shared": each is taken by several commands
        assert len(where) >= 2, f"{name} is declared in {where} only"


def test_the_names_that_mean_something_else_exist_and_differ(commands):
    """The exceptions above are real (the list does not outlive them) and are not the shared declaration."""
    for (command, flag), _why in NOT_THE_SHARED_OPTION.items():
        (action,) = [a for a in commands[command]._actions if flag in a.option_strings]
        shared = next(spec for spec in SHARED_OPTIONS.values() if flag in spec.flags)
        assert action.help != shared.help, (command, flag)


#: which commands take which shared option (a bad value must fail the same way in each)
TAKES = {
    "-j": (["test"], ["features"], ["neural"], ["robustness"], ["train"], ["study", "feedback"]),
    "--batch_size": (["test"], ["features"], ["neural"], ["robustness"], ["train"], ["study", "feedback"],
                     ["v1-probe"]),
    "--imsize": (["test"], ["features"], ["neural"], ["robustness"], ["train"], ["study", "feedback"], ["v1-probe"]),
    "--amp": (["test"], ["features"], ["neural"], ["robustness"], ["train"]),
}


@pytest.mark.parametrize("flag, value, says", [("-j", "-1", "must be 0 or more, got -1"),
                                               ("--batch_size", "0", "must be a positive integer, got 0"),
                                               ("--imsize", "4", "must be at least"),
                                               ("--amp", "fp8", "invalid choice: 'fp8'")])
def test_a_bad_shared_value_is_refused_in_one_line_by_every_command(cli, flag, value, says):
    for command in TAKES[flag]:
        code, _, err = cli(*command, flag, value)
        assert code == 2 and says in err and err.strip().count("\n") == 0, (command, err)


def test_commands_resolve_the_defaults_they_had(cli, tmp_path, monkeypatch):
    """Not given, --batch_size is 128 and --amp none in robustness, and -j 0 in the feedback study."""
    import ventralkit.analysis.robustness as robustness
    import ventralkit.analysis.robustness.evaluate as rob_evaluate
    import ventralkit.studies.feedback as feedback
    from ventralkit.errors import ConfigError

    calls = {}

    def stop(name):
        def record(*args, **kw):
            calls[name] = kw
            raise ConfigError("stopped by the test")
        return record

    monkeypatch.setattr(robustness, "evaluate_robustness", stop("robustness"))
    monkeypatch.setattr(rob_evaluate, "scan_corruption_root", lambda *a, **k: None)
    monkeypatch.setattr(feedback, "run_feedback_study", stop("study"))
    argv = ["robustness", "--model", "Z", "--random_init", "--data_path", tmp_path, "-o", tmp_path / "o"]
    assert cli(*argv)[0] == 2
    assert calls["robustness"]["batch_size"] == 128 and calls["robustness"]["amp"] == "none"
    cli(*argv, "--batch_size", "7", "--amp", "bf16")
    assert calls["robustness"]["batch_size"] == 7 and calls["robustness"]["amp"] == "bf16"
    assert cli("study", "feedback", "-o", tmp_path / "s")[0] == 2
    assert calls["study"]["workers"] == 0 and calls["study"]["batch_size"] is None  # None: the study's own
    cli("study", "feedback", "-o", tmp_path / "s", "-j", "3")
    assert calls["study"]["workers"] == 3
