"""`--help` teaches: every option grouped, with a human metavar, help text and its default, all
derived from the config (cli/options.py); choices are the config's Literal values."""

from __future__ import annotations

import argparse
import re
import typing

import pytest

from unetkit.cli import build_parser, main
from unetkit.cli.options import flag_table, help_text
from unetkit.config import LossName


def help_of(capsys, *command: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def option_entries(help_text: str) -> dict[str, str]:
    """flag -> its whole (unwrapped) entry in --help."""
    entries = re.split(r"\n  (?=-)", help_text)
    return {entry.split()[0].rstrip(","): " ".join(entry.split()) for entry in entries[1:]}


def test_every_config_option_has_help_and_names_its_default(capsys):
    entries = option_entries(help_of(capsys, "train"))
    missing_help = [f"{flag} ({path})" for _, flag, path in flag_table() if not help_text(path)]
    assert not missing_help, f"give these config fields a comment in config.py (it is their --help): {missing_help}"
    without_default = [flag for _, flag, _ in flag_table() if "(default " not in entries.get(flag, "")]
    assert not without_default, f"--help names no default for {without_default}"
    # Values as Config() holds them, written out by hand.
    for flag, default in {"--epochs": "20", "--batch-size": "4", "--lr": "0.001", "--tile-size": "512",
                          "--tta": "off", "--loss": "bce+dice", "--val-data": "none", "--max-pixels": "200000000"}.items():
        assert f"(default {default})" in entries[flag], entries[flag]


def test_help_is_grouped_with_human_metavars(capsys):
    text = help_of(capsys, "train")
    titles = [line for line in text.splitlines() if line and not line.startswith(" ") and line.endswith(":")]
    assert titles[-5:] == ["data:", "model:", "training:", "inference (validation, predict, evaluate):", "execution:"]
    entries = option_entries(text)
    assert entries["--epochs"].startswith("--epochs N ") and entries["--image-size"].startswith("--image-size SIZE ")
    assert entries["--lr"].startswith("--lr LR ") and entries["--val-data"].startswith("--val-data DIR ")
    assert "TRAIN." not in text and "DATA." not in text and "PREDICT." not in text


@pytest.mark.parametrize("command", ["train", "predict", "evaluate", "export", "demo"])
def test_every_option_of_every_command_explains_itself(command):
    subcommands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = subcommands.choices[command]
    for action in parser._actions:
        assert action.help, f"{command} {action.option_strings or action.dest}: no help text"
        if action.option_strings and action.nargs != 0 and action.choices is None:
            assert action.metavar and "." not in action.metavar, f"{command} {action.option_strings}: metavar"


def test_choices_are_the_configs_literal_values(capsys, tmp_path):
    entries = option_entries(help_of(capsys, "train"))
    assert "{" + ",".join(typing.get_args(LossName)) + "}" in entries["--loss"]
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", str(tmp_path), "--out", str(tmp_path), "--loss", "focal"])
    assert exit_info.value.code == 2 and "invalid choice: 'focal'" in capsys.readouterr().err


