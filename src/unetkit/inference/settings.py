"""Prediction settings a model can run: checked once, when a Predictor is built from its settled
config (the checkpoint's, post-processing kept or dropped, the caller's settings set)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from unetkit.config import Config
from unetkit.config.flags import with_values
from unetkit.data.volume_dataset import DEFAULT_PATCH
from unetkit.errors import ConfigError
from unetkit.inference.postprocess import without_postprocessing
from unetkit.model.sizes import valid_input_size, valid_output_size


def settled(config: Config, postprocess: bool = True, settings: Mapping[str, Any] | None = None) -> Config:
    """A copy of a checkpoint's config as a predictor runs it: its post-processing kept or dropped,
    then ``settings`` (config path -> value) set."""
    if not postprocess:
        config = dataclasses.replace(config, predict=without_postprocessing(config))
    return with_values(config, settings or {})


def window_shape(config: Config) -> tuple[int, ...]:
    """The network input of one tile (images) or window (volumes: ``predict.window``, else the
    training patch)."""
    if config.model.dims == 2:
        return (config.predict.tile_size,) * 2
    return tuple(config.predict.window or config.data.patch_shape or DEFAULT_PATCH)


def valid_tile_output(config: Config) -> tuple[int, int]:
    """(output side of one tile, step between tiles) for a ``valid`` model.

    Max pooling makes the network shift-equivariant only for shifts by multiples of
    2**depth, so tiles advance by the largest such multiple that fits in the output: then
    every tile sees the pooling grid the whole image would, and stitching is exact.
    """
    depth = config.model.depth
    output_size = valid_output_size(config.predict.tile_size, depth)
    step = output_size - output_size % 2**depth
    if step < 1:
        smallest = valid_input_size(2**depth, depth)
        raise ConfigError(
            f"predict.tile_size {config.predict.tile_size} gives only {output_size} output px "
            f"per tile at depth {depth}; use tile_size {smallest} or more"
        )
    return output_size, step

def check_predict_settings(config: Config) -> None:
    """Raise ConfigError for prediction settings this model cannot run (overlap, batch, tile or window)."""
    settings, model = config.predict, config.model
    if not 0 <= settings.overlap < 1:
        raise ConfigError(f"predict.overlap {settings.overlap} must be in [0, 1); 0.25 is a good default")
    if settings.batch_size < 1:
        raise ConfigError(f"predict.batch_size {settings.batch_size} must be at least 1")
    if model.padding == "valid":
        try:
            valid_tile_output(config)
        except ConfigError as exc:
            raise ConfigError(f"predict.tile_size: {exc}") from None
    elif model.dims == 3:
        _check_window(config)
    elif settings.tile_size < 1 or settings.tile_size % 2**model.depth:
        multiple = 2**model.depth
        below, above = settings.tile_size // multiple * multiple, -(-settings.tile_size // multiple) * multiple
        nearest = f"{below} or {above}" if below else f"{max(above, multiple)}"
        raise ConfigError(
            f"predict.tile_size {settings.tile_size} must be a multiple of {multiple} for a depth-{model.depth} "
            f"U-Net (tiles must share the pooling grid); use {nearest}"
        )

def _check_window(config: Config) -> None:
    """A volume's window: 3 sides, each a multiple of what that axis's poolings divide by."""
    window, multiples = window_shape(config), config.model.size_multiple
    if len(window) != 3 or any(side < 1 or side % multiple for side, multiple in zip(window, multiples)):
        raise ConfigError(
            f"predict.window {list(window)} must be 3 sides that are multiples of {list(multiples)} for this "
            "3D U-Net (windows must share the pooling grid)"
        )
