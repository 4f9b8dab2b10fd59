"""The user-facing settings of the config tree: each one a flag (``--base-width``) and the config path it
sets (``model.base_width``). The command line builds its options from this table, and the Python API
reads its keywords through it (``base_width=16`` is ``--base-width 16``), so both name a setting alike.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from typing import Any, Mapping

from unetkit.config.parsing import coerce
from unetkit.config.schema import Config
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
        "--inference-memory-layout": "predict.memory_layout",
    },
    "execution": {
        "--precision": "train.precision",
        "--compile": "train.compile",
        "--memory-layout": "train.memory_layout",
        "--seed": "train.seed",
        "--deterministic": "train.deterministic",
        "--workers": "train.workers",
        "--sync-batchnorm": "train.sync_batchnorm",
    },
}


def flag_table(flags: Mapping[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(group, flag, config path) for ``flags`` (default: every config flag)."""
    return [(group, flag, path) for group, table in FLAGS.items() for flag, path in table.items()
            if flags is None or flag in flags]  # fmt: skip


def config_flags(*names: str) -> dict[str, str]:
    """flag -> config path for the named flags (every one must be a config flag)."""
    every = {flag: path for table in FLAGS.values() for flag, path in table.items()}
    return {name: every[name] for name in names}


def get_path(config: Config, path: str) -> Any:
    """The value at a config path (``"model.base_width"``)."""
    value: Any = config
    for part in path.split("."):
        value = getattr(value, part)
    return value


def set_path(config: Config, path: str, value: Any) -> None:
    """Set the value at a config path in place."""
    *parents, name = path.split(".")
    target: Any = config
    for parent in parents:
        target = getattr(target, parent)
    setattr(target, name, value)


def setting_path(name: str) -> str:
    """The config path a setting's name stands for: a path itself (``"model.base_width"``) or a
    flag's name written as a keyword (``base_width``, ``--base-width``)."""
    if "." in name:
        try:
            field_owner(name)
        except (KeyError, TypeError):
            raise ConfigError(f"{name}: no such config path (see config.yaml in any run folder)") from None
        return name
    flag = "--" + name.lstrip("-").replace("_", "-")
    every = {flag: path for table in FLAGS.values() for flag, path in table.items()}
    if flag not in every:
        names = ", ".join(sorted(known[2:].replace("-", "_") for known in every))
        raise ConfigError(f"{name}: no such setting; use one of {names}, or a config path (model.base_width)")
    return every[flag]


def setting_paths(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` keyed by config path (names resolved by ``setting_path``), None values left out."""
    return {setting_path(name): value for name, value in settings.items() if value is not None}


def with_values(config: Config, values: Mapping[str, Any]) -> Config:
    """A copy of ``config`` with ``values`` (config path -> value) set, each checked against its
    field's type as a config file's would be."""
    changed = copy.deepcopy(config)
    for path, value in values.items():
        owner, name = field_owner(path)
        set_path(changed, path, coerce(typing.get_type_hints(owner)[name], value, f"config.{path}"))
    return changed


def field_owner(path: str) -> tuple[type, str]:
    """The dataclass that declares the field at ``path``, and the field's name."""
    *parents, name = path.split(".")
    owner: Any = Config
    for parent in parents:
        owner = typing.get_type_hints(owner)[parent]
    if name not in {field.name for field in dataclasses.fields(owner)}:
        raise KeyError(f"{path}: no such config field")
    return owner, name
