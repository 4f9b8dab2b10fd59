"""One optimizer step, and what it needs: model, optimizer, grad scaler, loss, autocast dtype.

Mixed precision, the measured memory layout and fused optimizers are the default path; non-finite steps are
skipped on the device (the grad scaler's found-inf flag) and only counted at logging steps, so the
training step never waits for the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from unetkit.config import Config
from unetkit.device import EagerFallback, LayoutChoice, autocast, maybe_compile, memory_format
from unetkit.errors import TrainingError
from unetkit.losses import build_loss
from unetkit.model.unet import UNet
from unetkit.device import distributed
from unetkit.device.distributed import DistributedContext
from unetkit.training.speed import step_execution


@dataclass
class Components:
    model: UNet  # the plain module: checkpoints and validation use it
    train_model: EagerFallback  # compiled (where asked) and/or DDP-wrapped, for the training step
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module
    dtype: torch.dtype | None
    precision: str  # what the step runs in and why (auto measured it): config.yaml records it
    layout: LayoutChoice  # the memory layout and why (auto measured it): config.yaml records it


def build_components(config: Config, context: DistributedContext) -> Components:
    train = config.train
    # auto (a planned run has decided already): this step timed, rank 0's choice for all.
    execution = distributed.from_main(step_execution(config, context.device, context.world_size) if context.is_main else None,
                                      context)  # fmt: skip
    model = UNet(config.model).to(context.device, memory_format=memory_format(execution.layout.channels_last, config.model.dims))
    if train.sync_batchnorm and context.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    wrapped: nn.Module = model
    if context.enabled:
        device_ids = [context.device.index] if context.device.type == "cuda" else None
        wrapped = DistributedDataParallel(model, device_ids=device_ids)
    dtype = execution.precision.dtype
    return Components(
        model=model,
        train_model=maybe_compile(wrapped, train.compile),
        optimizer=build_optimizer(model, config),
        # float16 needs loss scaling; for bf16/fp32 the scaler stays at scale 1 (see train_step) and
        # only supplies the on-device found-inf flag that makes fused optimizers skip a non-finite step.
        scaler=torch.amp.GradScaler(context.device.type, init_scale=2.0**16 if dtype == torch.float16 else 1.0),
        loss_fn=build_loss(train.loss, config.model.classes, config.data.labels.ignore_index, config.model.instance_maps),
        dtype=dtype,
        precision=str(execution.precision),
        layout=execution.layout,
    )


def build_optimizer(model: nn.Module, config: Config) -> torch.optim.Optimizer:
    """AdamW or SGD with momentum (the paper: 0.99), fused kernels where the build has them."""
    train = config.train
    params = [p for p in model.parameters() if p.requires_grad]
    if train.optimizer == "sgd":
        make = lambda **kw: torch.optim.SGD(params, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay, **kw)  # noqa: E731
    else:
        make = lambda **kw: torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay, **kw)  # noqa: E731
    try:
        return make(fused=True)
    except (RuntimeError, TypeError, ValueError):
        return make(foreach=True)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def train_step(
    parts: Components, batch: dict[str, Any], config: Config, device: torch.device, buffers: list[torch.Tensor]
) -> torch.Tensor:
    """Forward, backward and update for one batch; returns the detached loss.

    A non-finite step changes nothing: the optimizer skips it (the scaler's found-inf flag), and the
    batch-norm statistics (``buffers``) its forward pass wrote are put back. All on the device.
    """
    train = config.train
    images = batch["image"].to(device, non_blocking=True).contiguous(memory_format=memory_format(parts.layout.channels_last, config.model.dims))
    masks = batch["mask"].to(device, non_blocking=True)
    weights = batch["weight"].to(device, non_blocking=True) if "weight" in batch else None
    maps = batch["maps"].to(device, non_blocking=True) if "maps" in batch else None
    saved = [buffer.clone() for buffer in buffers]

    def forward_backward(model: nn.Module) -> torch.Tensor:
        with autocast(device, parts.dtype):
            logits = model(images)
        loss = parts.loss_fn(logits.float(), masks, weights, maps)
        parts.optimizer.zero_grad(set_to_none=True)
        parts.scaler.scale(loss).backward()
        return loss

    def restore_buffers() -> None:
        for buffer, before in zip(buffers, saved):
            buffer.copy_(before)

    loss = parts.train_model.run(forward_backward, undo=restore_buffers)
    if train.grad_clip > 0:
        parts.scaler.unscale_(parts.optimizer)
        torch.nn.utils.clip_grad_norm_(parts.model.parameters(), train.grad_clip, foreach=True)
    parts.scaler.step(parts.optimizer)
    # Only float16 needs a dynamic scale; elsewhere a skipped step must not halve it for good.
    parts.scaler.update(None if parts.dtype == torch.float16 else 1.0)
    loss = loss.detach()
    finite = torch.isfinite(loss)
    for buffer, before in zip(buffers, saved):
        buffer.copy_(torch.where(finite, buffer, before))
    return loss


class LossTracker:
    """Mean loss over finite steps and the longest streak of non-finite ones, kept on the device so
    that no step waits for the host; read only at logging and validation steps."""

    def __init__(self, device: torch.device, loss_sum: float = 0.0, good_steps: int = 0) -> None:
        self.device = device
        self.reset(loss_sum, good_steps)

    def reset(self, loss_sum: float = 0.0, good_steps: int = 0) -> None:
        """Start a new mean (from the totals a resumed run saved in the middle of one)."""
        zero = lambda: torch.zeros((), device=self.device)  # noqa: E731
        self.loss_sum = torch.tensor(loss_sum, device=self.device)
        self.good_steps = torch.tensor(float(good_steps), device=self.device)
        self.streak, self.worst_streak = zero(), zero()

    def totals(self) -> tuple[float, int]:
        """(loss sum, finite steps) since the last reset, for a checkpoint taken between validations."""
        return float(self.loss_sum), int(self.good_steps)

    def add(self, loss: torch.Tensor) -> None:
        finite = torch.isfinite(loss)
        self.loss_sum += torch.where(finite, loss, 0.0)
        self.good_steps += finite
        self.streak = (self.streak + 1) * (~finite)
        self.worst_streak = torch.maximum(self.worst_streak, self.streak)

    def take_worst_streak(self) -> torch.Tensor:
        """The worst streak since the last call (the current streak carries over)."""
        worst, self.worst_streak = self.worst_streak, self.streak.clone()
        return worst

    def mean(self) -> torch.Tensor:
        return self.loss_sum / self.good_steps.clamp(min=1)


def check_streak(streak: int, limit: int, dtype: torch.dtype | None) -> None:
    if streak < limit:
        return
    fp16 = " AMP float16 overflow (try --precision bf16 or 32);" if dtype == torch.float16 else ""
    raise TrainingError(
        f"{streak} consecutive training steps had a non-finite loss; likely causes: a learning rate "
        f"too high (lower --lr, add --grad-clip 1.0);{fp16} masks with unexpected values (check with "
        "`unetkit data inspect`)"
    )
