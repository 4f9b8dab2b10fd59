"""The training batches: one endless loader over the training records (sharded by rank), started
at any optimizer step, mid-epoch included."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

from torch.utils.data import DataLoader, Dataset, DistributedSampler

from unetkit.config import Config
from unetkit.data.dataset import SegmentationDataset, StepBatches, build_loader
from unetkit.data.volume_dataset import VolumePatches
from unetkit.data.volumes import is_volume_record
from unetkit.errors import ConfigError, TrainingError, UnetkitError
from unetkit.model.unet import UNet
from unetkit.device.distributed import DistributedContext
from unetkit.data.prepare import PreparedData


def train_loader(prepared: PreparedData, context: DistributedContext) -> DataLoader:
    """The endless training loader of this process (its share of every epoch, in whole batches)."""
    config = prepared.config
    if config.model.dims == 3:
        check_3d_training(config, prepared.train)
        dataset: Dataset = VolumePatches(prepared.train, config.data, config.model.in_channels)
    else:
        input_size, output_size = tile_sizes(config)
        dataset = SegmentationDataset(
            prepared.train, config.data, config.model.in_channels, train=True,
            input_size=input_size, output_size=output_size, instance_maps=config.model.instance_maps,
        )
    order = DistributedSampler(dataset, num_replicas=context.world_size, rank=context.rank, shuffle=True,
                               seed=config.train.seed)  # fmt: skip
    batch_size = min(config.train.batch_size, len(order))
    batches = StepBatches(order, batch_size, config.train.seed)
    return build_loader(dataset, batch_size, shuffle=False, workers=config.train.workers, batch_sampler=batches)


def check_3d_training(config: Config, records: list) -> None:
    """A 3D model trains on volumes, and what it cannot do yet says so in one line, before any
    loader worker starts."""
    if records and not is_volume_record(records[0]):
        raise ConfigError(f"model.dims 3 trains on volumes, but {records[0].image} is a 2D image; use --dims 2")
    unsupported = [
        (config.data.weight_map, "the border weight map (data.weight_map)"),
        (bool(config.model.instance_maps), f"instance maps (model.instance_target {config.model.instance_target})"),
        (bool(config.data.image_size), "resizing (data.image_size)"),
    ]
    for used, feature in unsupported:
        if used:
            raise ConfigError(f"{feature} is 2D-only; a 3D model (model.dims 3) trains without it")


def steps_per_epoch(loader: DataLoader) -> int:
    return loader.batch_sampler.steps_per_epoch


def tile_sizes(config: Config) -> tuple[int | None, int | None]:
    """Network input and output tile sizes for valid-padding models (None for same padding)."""
    if config.model.padding == "same":
        return None, None
    size = config.data.patch_size or config.data.image_size
    if not size:
        raise TrainingError("--padding valid trains on tiles: pass --patch-size N (the network input tile, e.g. 572)")
    return size, UNet(dataclasses.replace(config.model, base_width=1)).output_size(size)


def batch_stream(loader: DataLoader, step: int) -> Iterator[dict[str, Any]]:
    """The training batches from optimizer step ``step`` on (mid-epoch included), endlessly."""
    loader.batch_sampler.start = step
    yield from own_errors(loader)


def own_errors(loader: DataLoader) -> Iterator[dict[str, Any]]:
    """The loader's batches. A unetkit error raised in a loader worker reaches the main process with
    the worker's whole traceback as its message; it is raised again with its own one-line message."""
    try:
        yield from loader
    except UnetkitError as error:
        last_line = str(error).strip().splitlines()[-1]
        raise type(error)(last_line.split(f"{type(error).__name__}: ", 1)[-1]) from None
