"""Command-line options derived from the config dataclasses, so the config is the one home of each
option's type, allowed values, default and help text (the comment beside the field).

A config option is one line in ``FLAGS``: its flag and the config path it sets. Flags left unset
keep the value of the preset or the config file.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import io
import tokenize
import typing
from typing import Any, Callable, Literal

from unetkit.config import Config, parse_duration
from unetkit.data.layouts import LAYOUTS
from unetkit.errors import ConfigError

# group -> flag -> config path. Groups appear in this order in --help.
FLAGS: dict[str, dict[str, str]] = {
    "data": {
        "--val-data": "data.val_path",
        "--val-fraction": "data.val_fraction",
        "--folds": "data.folds",
        "--fold": "data.fold",
        "--layout": "data.layout",
        "--strict": "data.strict",
        "--pets-mode": "data.pets_mode",
        "--ctc-truth": "data.ctc_truth",
        "--masks": "data.masks",
        "--image-size": "data.image_size",
        "--patch-size": "data.patch_size",
        "--augment": "data.augment",
        "--color-augment": "data.color_augment",
        "--foreground-oversample": "data.foreground_oversample",
        "--cache": "data.cache",
        "--normalize": "data.normalize.mode",
        "--weight-map": "data.weight_map",
        "--max-pixels": "data.max_pixels",
    },
    "model": {
        "--dims": "model.dims",
        "--base-width": "model.base_width",
        "--depth": "model.depth",
        "--norm": "model.norm",
        "--padding": "model.padding",
        "--upsample": "model.upsample",
        "--dropout": "model.dropout",
        "--init": "model.init",
        "--checkpoint-activations": "model.checkpoint_activations",
        "--instance-target": "model.instance_target",
    },
    "training": {
        "--time": "train.time",
        "--steps": "train.steps",
        "--epochs": "train.epochs",
        "--val-every": "train.val_every",
        "--batch-size": "train.batch_size",
        "--lr": "train.lr",
        "--optimizer": "train.optimizer",
        "--momentum": "train.momentum",
        "--weight-decay": "train.weight_decay",
        "--scheduler": "train.scheduler",
        "--warmup": "train.warmup",
        "--loss": "train.loss",
        "--grad-clip": "train.grad_clip",
        "--max-bad-steps": "train.max_bad_steps",
        "--log-every": "train.log_every",
        "--samples": "train.samples",
        "--tensorboard": "train.tensorboard",
    },
    "inference": {
        "--tile-size": "predict.tile_size",
        "--overlap": "predict.overlap",
        "--blend": "predict.blend",
        "--tta": "predict.tta",
        "--threshold": "predict.threshold",
    },
    "execution": {
        "--precision": "train.precision",
        "--compile": "train.compile",
        "--channels-last": "train.channels_last",
        "--seed": "train.seed",
        "--deterministic": "train.deterministic",
        "--workers": "train.workers",
        "--sync-batchnorm": "train.sync_batchnorm",
    },
}
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


def flag_table(flags: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(group, flag, config path) for ``flags`` (default: every config flag)."""
    return [(group, flag, path) for group, table in FLAGS.items() for flag, path in table.items()
            if flags is None or flag in flags]  # fmt: skip


def config_flags(*names: str) -> dict[str, str]:
    """flag -> config path for the named flags (every one must be a config flag)."""
    every = {flag: path for table in FLAGS.values() for flag, path in table.items()}
    return {name: every[name] for name in names}


def option_keywords(path: str) -> dict[str, Any]:
    """argparse keywords for the config field at ``path``: type or choices, metavar, help with default."""
    owner, name = _owner(path)
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
    owner, name = _owner(path)
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


def get_path(config: Config, path: str) -> Any:
    value: Any = config
    for part in path.split("."):
        value = getattr(value, part)
    return value


def set_path(config: Config, path: str, value: Any) -> None:
    *parents, name = path.split(".")
    target: Any = config
    for parent in parents:
        target = getattr(target, parent)
    setattr(target, name, value)


def apply_options(config: Config, args: argparse.Namespace, flags: dict[str, str] | None = None) -> Config:
    """Set the config fields whose flags were given (default: any config flag the parser has)."""
    for _, _, path in flag_table(flags):
        value = getattr(args, path, None)
        if value is not None:
            set_path(config, path, value)
    return config


def _owner(path: str) -> tuple[type, str]:
    """The dataclass that declares the field at ``path``, and the field's name."""
    *parents, name = path.split(".")
    owner: Any = Config
    for parent in parents:
        owner = typing.get_type_hints(owner)[parent]
    if name not in {field.name for field in dataclasses.fields(owner)}:
        raise KeyError(f"{path}: no such config field")
    return owner, name


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if value == "":
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)
