"""What a run takes from the user and what is left to the plan: the presets and what they imply, the
budget when none is given, and the values the user fixed (the plan keeps them, "set by you").

Light to import (no torch): the command line reads the presets' names while it builds ``--help``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from unetkit.config import Config
from unetkit.config.flags import get_path, with_values
from unetkit.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_BUDGET = 30 * 60.0  # seconds, when neither a budget nor a length is given
LENGTH_PATHS = frozenset({"train.time", "train.steps", "train.epochs"})  # any of them sets the run's length

PRESETS: dict[str, dict[str, Any]] = {
    # Ronneberger et al. 2015: unpadded convs, no norm, 64..1024, transposed up, dropout, He init,
    # SGD momentum 0.99, batch 1 of large tiles, border-weighted softmax CE, elastic deformation.
    "paper": {
        "model.padding": "valid", "model.norm": "none", "model.base_width": 64, "model.depth": 4,
        "model.upsample": "transpose", "model.dropout": 0.5, "model.init": "he",
        "train.optimizer": "sgd", "train.momentum": 0.99, "train.lr": 0.01, "train.weight_decay": 0.0,
        "train.batch_size": 1, "train.loss": "weighted-ce", "train.scheduler": "none",
        "data.patch_size": 572, "data.augment": "paper", "data.weight_map": True,
        "predict.tile_size": 572,
    },
}  # fmt: skip
# The classes a preset implies where the user names none: the paper's softmax over cell and border.
PRESET_CLASSES = {"paper": 2}


def configured(data: str | Path, values: Mapping[str, Any], config: str | Path | Config | None = None,
               preset: str | None = None) -> Config:  # fmt: skip
    """The run's config before the data is read: dataclass defaults < ``config`` (a YAML file or a
    Config) < ``preset`` < ``values`` (config path -> value), the data folder set."""
    base = Config.load(config) if isinstance(config, (str, Path)) else config or Config()
    preset_values = preset_settings(preset)
    return with_values(base, {**preset_values, "data.path": str(data), **values})


def preset_settings(preset: str | None) -> dict[str, Any]:
    """config path -> value of a named preset (None: none)."""
    if preset is None:
        return {}
    if preset not in PRESETS:
        raise ConfigError(f"preset {preset!r}: choose one of {sorted(PRESETS)}")
    return dict(PRESETS[preset])


def classes_for(classes: int | None, preset: str | None) -> int | None:
    """The classes the user named, else those the preset implies (None: the masks decide)."""
    return classes or PRESET_CLASSES.get(preset or "")


def fixed_values(config: Config, values: Mapping[str, Any], preset: str | None = None) -> dict[str, Any]:
    """Config paths the user set (``values``, the preset) with their values in ``config``: the plan
    keeps them. Epochs set mean the steps follow them (steps 0 is fixed too)."""
    paths = {*preset_settings(preset), *values}
    if "train.epochs" in paths:
        paths.add("train.steps")
    return {path: get_path(config, path) for path in paths}


def budget_seconds(config: Config, fixed: Mapping[str, Any]) -> float:
    """The plan's time budget: ``train.time`` where the user set the run's length (a time, steps or
    epochs), else DEFAULT_BUDGET."""
    if LENGTH_PATHS & fixed.keys():
        return config.train.time
    log.info("no --time, --steps or --epochs: a budget of %.0f minutes (set --time)", DEFAULT_BUDGET / 60)
    return DEFAULT_BUDGET
