"""Measured training speed on this machine: a few real optimizer steps of a U-Net on random
tensors of the run's patch and batch (forward, backward, AdamW step, under a precision and memory
format), after a warm-up step (``device.timing``: about a second per setting, at least one step).
The plan times its candidates with it, and ``auto`` precision and memory layout the run's own step
in float32 and bfloat16, channels-last and contiguous (``step_execution``)."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import torch

from unetkit.config import Config, UNetConfig, dice_loss_for
from unetkit.data.volume_dataset import DEFAULT_PATCH
from unetkit.device import Execution, autocast, memory_format, resolve_execution
from unetkit.device.timing import calls_per_second
from unetkit.losses import build_loss
from unetkit.model import UNet

WHOLE_IMAGE_SIDE = 256  # px: the side a run on whole images (no patch size, no resize) is timed at


def measure_steps_per_second(
    model: UNetConfig, patch: int | Sequence[int], batch: int, device: torch.device, dtype: torch.dtype | None,
    channels_last: bool = True,
) -> float:
    """Optimizer steps per second of ``model`` on ``batch`` random ``patch`` x ``patch`` images
    (a 3D model: ``patch`` volumes, (depth, height, width)),
    from the median step time (a step stalled by another job on a shared CPU does not count);
    the caller's random state is left as it was."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        return network_steps_per_second(UNet(model), model, patch, batch, device, dtype, channels_last)


def network_steps_per_second(
    net: UNet, model: UNetConfig, patch: int | Sequence[int], batch: int, device: torch.device, dtype: torch.dtype | None,
    channels_last: bool = True,
) -> float:
    """``measure_steps_per_second`` for a network already built (``model`` gives its channels); the
    target has the network's output size (smaller than the patch with `valid` padding)."""
    layout = memory_format(channels_last, model.dims)
    net = net.to(device, memory_format=layout)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    loss_fn = build_loss(dice_loss_for(model.classes), model.classes, instance_maps=model.instance_maps)
    shape = (patch,) * model.dims if isinstance(patch, int) else tuple(patch)
    images = torch.randn(batch, model.in_channels, *shape, device=device).contiguous(memory_format=layout)
    sides = tuple(net.output_size(side) for side in shape)
    target = torch.randint(0, max(2, model.classes), (batch, *sides), device=device)
    maps = torch.rand(batch, len(model.instance_maps), *sides, device=device) if model.instance_maps else None

    def step() -> None:
        with autocast(device, dtype):
            logits = net(images)
        loss = loss_fn(logits.float(), target, None, maps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return calls_per_second(step, device)


def training_subject(model: UNetConfig, patch: int | Sequence[int], batch: int, channels_last: bool) -> dict[str, Any]:
    """What a training step's measurements are cached under (besides the machine)."""
    return {"kind": "training step", "model": dataclasses.asdict(model), "patch": patch, "batch": batch,
            "channels_last": channels_last}  # fmt: skip


def step_execution(config: Config, device: torch.device, processes: int = 1) -> Execution:
    """The memory layout and precision of the training step ``config`` describes (each of
    ``processes`` takes its share of the batch): ``auto`` times this step (cached per machine)."""
    patch: int | tuple[int, ...] = config.data.patch_size or config.data.image_size or WHOLE_IMAGE_SIDE
    if config.model.dims == 3:
        patch = tuple(config.data.patch_shape or DEFAULT_PATCH)
    batch = max(1, config.train.batch_size // processes)
    rate = lambda dtype, channels_last: measure_steps_per_second(config.model, patch, batch, device, dtype, channels_last)  # noqa: E731
    subject = functools.partial(training_subject, config.model, patch, batch)
    train = config.train
    return resolve_execution(device, train.precision, train.memory_layout, rate, subject, config.model.dims)
