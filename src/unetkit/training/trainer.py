"""Fitting a U-Net: one loop for one CPU, one GPU or many processes under torchrun.

fit() -> per epoch: train_one_epoch() then validate() -> metrics.csv, best.pt, last.pt, curves, samples.
Mixed precision, channels-last and fused optimizers are the default path; non-finite steps are
skipped on the device (the grad scaler's found-inf flag) and only counted at logging steps, so the
training step never waits for the host.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from unetkit.atomic import atomic_write_text
from unetkit.checkpoint import load_checkpoint, save_checkpoint
from unetkit.config import Config
from unetkit.data.dataset import SeededSampler, SegmentationDataset, build_loader
from unetkit.data.records import Record
from unetkit.data.splits import write_split
from unetkit.device import EagerFallback, autocast, autocast_dtype, maybe_compile, memory_format
from unetkit.errors import CheckpointError, Terminated, TrainingError, UnetkitError
from unetkit.inference.evaluate import evaluate_records
from unetkit.inference.predictor import Predictor
from unetkit.losses import build_loss
from unetkit.model.unet import UNet
from unetkit.training import distributed
from unetkit.training.distributed import DistributedContext
from unetkit.training.logs import MetricsLog, TensorBoardLog, plot_curves, save_sample_grid
from unetkit.training.setup import PreparedData

log = logging.getLogger(__name__)


@dataclass
class RunState:
    """What resume needs beyond the weights; saved in every checkpoint."""

    epoch: int = 0  # completed epochs
    best_dice: float = -1.0
    step: int = 0


@dataclass
class Components:
    model: UNet  # the plain module: checkpoints and validation use it
    train_model: EagerFallback  # compiled (where asked) and/or DDP-wrapped, for the training step
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module
    dtype: torch.dtype | None


def fit(prepared: PreparedData, out: Path, *, resume: bool = False, device: str = "auto") -> dict[str, Any]:
    """Train on ``prepared`` data into run folder ``out``; returns the last epoch's metrics row."""
    context = distributed.setup(device)
    try:
        with determinism(prepared.config.train.deterministic, context.device), sigterm_interrupts():
            return _fit(prepared, Path(out), resume, context)
    finally:
        distributed.teardown(context)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While training, SIGTERM raises Terminated in the main thread (the only place Python runs
    signal handlers, so elsewhere this does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the save short
        raise Terminated(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fit(prepared: PreparedData, out: Path, resume: bool, context: DistributedContext) -> dict[str, Any]:
    config = prepared.config
    train = config.train
    seed_everything(train.seed, 0, context.rank)
    loader = _train_loader(prepared, context)
    parts = build_components(config, context, steps_per_epoch=len(loader))
    state = RunState()
    if resume:
        state = restore(out / "last.pt", parts, context, steps_per_epoch=len(loader))
    if context.is_main:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)
        atomic_write_text(out / "config.yaml", config.to_yaml())
        write_split(out / "split.json", prepared.train, prepared.val, prepared.root)
    metrics = MetricsLog(out / "metrics.csv", resume_epoch=state.epoch)
    board = TensorBoardLog(out / "tensorboard", train.tensorboard and context.is_main)
    row: dict[str, Any] = {}
    try:
        for epoch in range(state.epoch + 1, train.epochs + 1):
            started = time.perf_counter()
            seed_everything(train.seed, epoch, context.rank)
            loader.sampler.set_epoch(epoch)
            train_loss = train_one_epoch(parts, loader, config, context, state, epoch)
            distributed.broadcast_buffers(parts.model, context)
            report = validate(parts.model, prepared.val, config, context, parts.loss_fn, out, epoch)
            row = {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": report.get("loss", float("nan")),
                "val_dice": report["dice"],
                "val_iou": report["iou"],
                "val_accuracy": report["pixel_accuracy"],
                "lr": parts.optimizer.param_groups[0]["lr"],
                "seconds": "" if train.deterministic else round(time.perf_counter() - started, 2),
            }
            if context.is_main:
                _log_epoch(row, train.epochs)
                metrics.append(row)  # before last.pt: a resume drops rows past the checkpoint
            state.epoch = epoch  # right after its row: Ctrl-C saves last.pt with the epochs metrics.csv has
            if context.is_main:
                board.scalars(row, epoch)
                plot_curves(metrics, out / "curves.png")
                save_epoch_checkpoints(out, config, parts, state, row["val_dice"])
            distributed.barrier(context)
    except KeyboardInterrupt as exc:
        if context.is_main:
            save(out / "last.pt", config, parts, state)
            log.warning("%s: saved %s after %d complete epoch(s); continue with --resume",
                        "terminated" if isinstance(exc, Terminated) else "interrupted", out / "last.pt", state.epoch)
        raise
    finally:
        board.close()
    return row


def remove_stale_temporaries(out: Path) -> None:
    """Delete the temporary files of atomic writes that a killed run left half-written."""
    for leftover in out.rglob(".*.tmp"):
        leftover.unlink(missing_ok=True)


@contextlib.contextmanager
def determinism(enabled: bool, device: torch.device) -> Iterator[None]:
    """Deterministic kernels (or not) for one run; torch's global flags are put back afterwards,
    so fit() called from a program leaves the process as it found it."""
    cudnn = torch.backends.cudnn
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             cudnn.benchmark, cudnn.deterministic)
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    if device.type == "cuda":
        cudnn.benchmark = not enabled  # fixed patch shapes: let cuDNN pick kernels
        cudnn.deterministic = enabled
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        cudnn.benchmark, cudnn.deterministic = saved[2], saved[3]


def seed_everything(seed: int, epoch: int, rank: int) -> None:
    """Seed every generator from (seed, epoch, rank): an epoch's randomness (shuffle, augmentation,
    dropout) is the same whether the run was resumed or not, whatever the number of processes."""
    value = seed + 1_000_003 * epoch + 7919 * rank
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)


def _train_loader(prepared: PreparedData, context: DistributedContext) -> DataLoader:
    config = prepared.config
    input_size, output_size = _tile_sizes(config)
    dataset = SegmentationDataset(
        prepared.train, config.data, config.model.in_channels, train=True,
        input_size=input_size, output_size=output_size,
    )
    shuffled = DistributedSampler(
        dataset, num_replicas=context.world_size, rank=context.rank, shuffle=True, seed=config.train.seed
    )
    sampler = SeededSampler(shuffled, config.train.seed)
    per_rank = math.ceil(len(dataset) / context.world_size)
    batch_size = min(config.train.batch_size, per_rank)
    return build_loader(dataset, batch_size, shuffle=False, workers=config.train.workers, sampler=sampler, drop_last=True)


def _tile_sizes(config: Config) -> tuple[int | None, int | None]:
    """Network input and output tile sizes for valid-padding models (None for same padding)."""
    if config.model.padding == "same":
        return None, None
    size = config.data.patch_size or config.data.image_size
    if not size:
        raise TrainingError("--padding valid trains on tiles: pass --patch-size N (the network input tile, e.g. 572)")
    return size, UNet(dataclasses.replace(config.model, base_width=1)).output_size(size)


def build_components(config: Config, context: DistributedContext, steps_per_epoch: int) -> Components:
    train = config.train
    model = UNet(config.model).to(context.device, memory_format=memory_format(train.channels_last))
    if train.sync_batchnorm and context.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    wrapped: nn.Module = model
    if context.enabled:
        device_ids = [context.device.index] if context.device.type == "cuda" else None
        wrapped = DistributedDataParallel(model, device_ids=device_ids)
    optimizer = build_optimizer(model, config)
    dtype = autocast_dtype(context.device, train.precision)
    return Components(
        model=model,
        train_model=maybe_compile(wrapped, train.compile),
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, config, steps_per_epoch),
        # float16 needs loss scaling; for bf16/fp32 the scaler stays at scale 1 (see train_step) and
        # only supplies the on-device found-inf flag that makes fused optimizers skip a non-finite step.
        scaler=torch.amp.GradScaler(context.device.type, init_scale=2.0**16 if dtype == torch.float16 else 1.0),
        loss_fn=build_loss(train.loss, config.model.classes, config.data.labels.ignore_index),
        dtype=dtype,
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


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: Config, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule: linear warm-up, then cosine decay to zero (or constant)."""
    train = config.train
    total = max(1, train.epochs * steps_per_epoch)
    warmup = train.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if train.scheduler == "none":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_one_epoch(
    parts: Components, loader: DataLoader, config: Config, context: DistributedContext, state: RunState, epoch: int
) -> float:
    """One pass over the training loader; returns the mean loss over finite steps (all ranks).

    Streaks of non-finite steps are counted on the device and read only at logging steps, so no
    step waits for the host.
    """
    train = config.train
    parts.model.train()
    buffers = list(parts.model.buffers())
    device = context.device
    loss_sum = torch.zeros((), device=device)
    good_steps = torch.zeros((), device=device)
    streak = torch.zeros((), device=device)
    worst_streak = torch.zeros((), device=device)  # since the last logging step
    bar = tqdm(_own_errors(loader), total=len(loader), desc=f"epoch {epoch}/{train.epochs}",
               disable=not (context.is_main and log.isEnabledFor(logging.INFO)), leave=False, dynamic_ncols=True)
    for step, batch in enumerate(bar, start=1):
        loss = train_step(parts, batch, config, device, buffers)
        finite = torch.isfinite(loss)
        loss_sum += torch.where(finite, loss, 0.0)
        good_steps += finite
        streak = (streak + 1) * (~finite)
        worst_streak = torch.maximum(worst_streak, streak)
        state.step += 1
        if step % train.log_every == 0 or step == len(loader):
            # The worst streak of any rank: all ranks stop together, none is left waiting in a collective.
            worst = distributed.all_reduce_max(worst_streak, context)
            _check_streak(int(worst.item()), train.max_bad_steps, parts.dtype)
            worst_streak = streak.clone()
            bar.set_postfix(loss=f"{(loss_sum / good_steps.clamp(min=1)).item():.4f}")
    totals = distributed.all_reduce_sum(torch.stack([loss_sum, good_steps]), context)
    return float(totals[0] / totals[1].clamp(min=1))


def _own_errors(loader: DataLoader) -> Iterator[dict[str, Any]]:
    """The loader's batches. A unetkit error raised in a loader worker reaches the main process with
    the worker's whole traceback as its message; it is raised again with its own one-line message."""
    try:
        yield from loader
    except UnetkitError as error:
        last_line = str(error).strip().splitlines()[-1]
        raise type(error)(last_line.split(f"{type(error).__name__}: ", 1)[-1]) from None


def train_step(
    parts: Components, batch: dict[str, Any], config: Config, device: torch.device, buffers: list[torch.Tensor]
) -> torch.Tensor:
    """Forward, backward and update for one batch; returns the detached loss.

    A non-finite step changes nothing: the optimizer skips it (the scaler's found-inf flag), and the
    batch-norm statistics (``buffers``) its forward pass wrote are put back. All on the device.
    """
    train = config.train
    images = batch["image"].to(device, non_blocking=True).contiguous(memory_format=memory_format(train.channels_last))
    masks = batch["mask"].to(device, non_blocking=True)
    weights = batch["weight"].to(device, non_blocking=True) if "weight" in batch else None
    saved = [buffer.clone() for buffer in buffers]

    def forward_backward(model: nn.Module) -> torch.Tensor:
        with autocast(device, parts.dtype):
            logits = model(images)
        loss = parts.loss_fn(logits.float(), masks, weights)
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
    parts.scheduler.step()
    loss = loss.detach()
    finite = torch.isfinite(loss)
    for buffer, before in zip(buffers, saved):
        buffer.copy_(torch.where(finite, buffer, before))
    return loss


def _check_streak(streak: int, limit: int, dtype: torch.dtype | None) -> None:
    if streak < limit:
        return
    fp16 = " AMP float16 overflow (try --precision bf16 or 32);" if dtype == torch.float16 else ""
    raise TrainingError(
        f"{streak} consecutive training steps had a non-finite loss; likely causes: a learning rate "
        f"too high (lower --lr, add --grad-clip 1.0);{fp16} masks with unexpected values (check with "
        "`unetkit data inspect`)"
    )


def validate(
    model: UNet, records: list[Record], config: Config, context: DistributedContext,
    loss_fn: nn.Module, out: Path, epoch: int,
) -> dict[str, Any]:
    """Full-resolution validation through the inference engine, sharded by rank, reduced exactly."""
    predictor = Predictor(model, config, device=context.device, precision=config.train.precision,
                          channels_last=config.train.channels_last)
    samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    wanted = config.train.samples if context.is_main else 0
    state = evaluate_records(
        predictor, distributed.shard(records, context), config, loss_fn=loss_fn,
        on_sample=lambda *sample: samples.append(sample), samples=wanted,
    )
    state.confusion.reduce_from_all_processes()
    totals = distributed.all_reduce_sum(torch.tensor([state.loss_sum, float(state.count)]), context)
    report = state.confusion.compute()
    report["loss"] = float(totals[0] / totals[1].clamp(min=1))
    if samples:
        save_sample_grid(out / "samples" / f"epoch_{epoch:03d}.png", samples, max(2, config.model.classes))
    return report


def save(path: Path, config: Config, parts: Components, state: RunState) -> None:
    save_checkpoint(
        path, config, parts.model.state_dict(),
        optimizer=parts.optimizer.state_dict(),
        scheduler=parts.scheduler.state_dict(),
        scaler=parts.scaler.state_dict(),
        **dataclasses.asdict(state),
    )


def save_epoch_checkpoints(out: Path, config: Config, parts: Components, state: RunState, dice: float) -> None:
    """best.pt if the epoch beat the best validation Dice, then last.pt. The best Dice moves only once
    best.pt holds the epoch: an interrupt in between must not leave a run without its best.pt."""
    if dice > state.best_dice:
        save(out / "best.pt", config, parts, dataclasses.replace(state, best_dice=dice))
        state.best_dice = dice
    save(out / "last.pt", config, parts, state)


def restore(path: Path, parts: Components, context: DistributedContext, steps_per_epoch: int) -> RunState:
    """Load weights and optimizer/scheduler/scaler state from ``path`` (any number of processes)."""
    if not path.exists():
        raise CheckpointError(f"{path}: --resume needs the last.pt of an earlier run in this --out folder")
    payload = load_checkpoint(path)
    parts.model.load_state_dict(payload["model"])
    parts.optimizer.load_state_dict(payload["optimizer"])
    parts.scheduler.load_state_dict(payload["scheduler"])
    parts.scaler.load_state_dict(payload["scaler"])
    state = RunState(**{f.name: payload[f.name] for f in dataclasses.fields(RunState)})
    # Continue the schedule from the completed epochs: the resumed run may have another number of
    # processes (so of steps per epoch), and Ctrl-C saves in the middle of an epoch.
    state.step = state.epoch * steps_per_epoch
    set_schedule_step(parts.scheduler, state.step)
    if context.is_main:
        log.info("resumed from %s after epoch %d (best val Dice %.4f)", path, state.epoch, state.best_dice)
    return state


def set_schedule_step(scheduler: torch.optim.lr_scheduler.LambdaLR, step: int) -> None:
    """Move a per-step LambdaLR schedule to ``step``, learning rates included."""
    scheduler.last_epoch = step
    for group, base_lr, factor in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base_lr * factor(step)


def _log_epoch(row: dict[str, Any], epochs: int) -> None:
    log.info(
        "epoch %d/%d  train loss %.4f  val loss %.4f  val Dice %.4f  IoU %.4f  acc %.4f  lr %.2e  %ss",
        row["epoch"], epochs, row["train_loss"], row["val_loss"], row["val_dice"], row["val_iou"],
        row["val_accuracy"], row["lr"], row["seconds"],
    )
