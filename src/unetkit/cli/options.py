"""Command-line options derived from the config dataclasses, so the config is the one home of each
option's type, allowed values, default and help text (the comment beside the field).

A config option is one line in ``config.flags.FLAGS``: its flag and the config path it sets. Flags
left unset keep the value of the preset or the config file.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import io
import tokenize
import typing
from typing import Any, Callable, Literal

from unetkit.config import Config, parse_duration
from unetkit.config.flags import field_owner, flag_table, get_path
from unetkit.data.layouts import LAYOUTS
from unetkit.errors import ConfigError

GROUP_TITLES = {
    "data": "data",
    "model": "model",
    "training": "training",
    "inference": "inference (validation, predict, evaluate)",
    "execution": "execution",
}
# Metavars by field name; the rest by type (int N, float FLOAT, text NAME).
METAVARS = {"val_path": "DIR", "image_size": "SIZE", "patch_size": "SIZE", "tile_size": "SIZE",
            "max_pixels": "PIXELS", "time": "DURATION", "lr": "LR"}  # fmt: skip
# Fields whose text is parsed by a function of their own rather than by their type.
def duration(text: str) -> float:
    """``parse_duration`` for argparse, whose usage error names the flag."""
    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


PARSERS: dict[str, Callable[[str], Any]] = {"train.time": duration}
TYPE_METAVARS = {int: "N", float: "FLOAT", str: "NAME"}
# Fields whose allowed values are a registry's names rather than a Literal.
REGISTRY_CHOICES: dict[str, tuple[str, ...]] = {"data.layout": ("auto", *LAYOUTS)}

Groups = dict[str, argparse._ArgumentGroup]


def add_groups(parser: argparse.ArgumentParser, note: str | None = None) -> Groups:
    """The option groups of a subcommand, in their --help order (empty ones are not shown);
    ``note`` heads the inference group."""
    return {name: parser.add_argument_group(title, note if name == "inference" else None)
            for name, title in GROUP_TITLES.items()}  # fmt: skip


def add_config_options(groups: Groups, flags: dict[str, str] | None = None) -> None:
    """Add config options (default: all of ``FLAGS``) to the groups their path belongs in."""
    for group, flag, path in flag_table(flags):
        groups[group].add_argument(flag, dest=path, **option_keywords(path))


def option_keywords(path: str) -> dict[str, Any]:
    """argparse keywords for the config field at ``path``: type or choices, metavar, help with default."""
    owner, name = field_owner(path)
    hint = typing.get_type_hints(owner)[name]
    default = default_of(path)
    text = f"{help_text(path)} (default {_shown(default)})".replace("%", "%%")
    if hint is bool:
        action = "store_true" if not default else argparse.BooleanOptionalAction
        return {"action": action, "default": None, "help": text}
    if typing.get_origin(hint) is Literal or path in REGISTRY_CHOICES:
        return {"choices": list(REGISTRY_CHOICES.get(path) or typing.get_args(hint)), "help": text}
    metavar = METAVARS.get(name, TYPE_METAVARS.get(hint, "VALUE"))
    return {"type": PARSERS.get(path, hint), "metavar": metavar, "help": text}


def help_text(path: str) -> str:
    """The comment beside the field in config.py ('' when it has none)."""
    owner, name = field_owner(path)
    return field_comments(owner).get(name, "")


@functools.cache
def field_comments(owner: type) -> dict[str, str]:
    """field name -> the comment on its line in the dataclass's source."""
    comments: dict[str, str] = {}
    tokens = tokenize.generate_tokens(io.StringIO(inspect.getsource(owner)).readline)
    line_start: tokenize.TokenInfo | None = None
    for token in tokens:
        if token.type in (tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT):
            line_start = None
        elif line_start is None and token.type != tokenize.COMMENT:
            line_start = token
        elif token.type == tokenize.COMMENT and line_start is not None and line_start.type == tokenize.NAME:
            comments[line_start.string] = token.string.lstrip("# ").replace("``", "")
    return comments


def default_of(path: str) -> Any:
    """The dataclass default of the field at ``path`` (``Config()``, before presets and files)."""
    return get_path(Config(), path)


def given_settings(args: argparse.Namespace, flags: dict[str, str] | None = None) -> dict[str, Any]:
    """config path -> value for the config flags given on the command line (default: any the parser has)."""
    return {path: getattr(args, path) for _, _, path in flag_table(flags) if getattr(args, path, None) is not None}


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if value == "":
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)
