"""Fitting a U-Net: one loop for one CPU, one GPU or many processes under torchrun.

fit() -> optimizer steps over an endless, epoch-seeded stream of batches; every ``val_every`` steps
(or, with a time budget, when validation stays within its share of the budget) validate() ->
metrics.csv, best.pt, last.pt, curves, samples. The step is the run's clock: the learning rate is a
function of it, and a resumed run (even from the middle of an epoch) continues the same stream.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from unetkit.atomic import atomic_write_text
from unetkit.config import Config
from unetkit.config.flags import with_values
from unetkit.data.dataset import SegmentationDataset, stop_workers
from unetkit.data.volume_dataset import VolumePatches
from unetkit.data.splits import write_split
from unetkit.errors import Terminated
from unetkit.inference.tuning import tune_checkpoint
from unetkit.model.unet import UNet, start_sigmoids_at_
from unetkit.device import distributed
from unetkit.training.batches import batch_stream, steps_per_epoch, train_loader
from unetkit.training.run_state import RunState, repair_best, restore, save, save_checkpoints
from unetkit.training.control import StopSignals, determinism, seed_step
from unetkit.device.distributed import DistributedContext
from unetkit.training.logs import MetricsLog, TensorBoardLog, epochs_done, plot_curves
from unetkit.training.schedule import Budget, fixed_total_steps, learning_rate_factor
from unetkit.data.prepare import PreparedData, as_slices
from unetkit.training.validation import validate
from unetkit.training.step import Components, LossTracker, build_components, check_streak, set_learning_rate, train_step

log = logging.getLogger(__name__)

def fit(
    prepared: PreparedData, out: Path, *, resume: bool = False, device: str = "auto", tune: bool = True
) -> dict[str, Any]:
    """Train on ``prepared`` data into run folder ``out``, then (``tune``) choose best.pt's
    post-processing on the validation images; returns the last validation's metrics row."""
    context = distributed.setup(device)
    try:
        with determinism(prepared.config.train.deterministic, context.device), StopSignals() as signals:
            return _fit(prepared, Path(out), resume, context, signals, tune)
    finally:
        distributed.teardown(context)


@dataclass
class Training:
    """Everything one training process holds."""

    prepared: PreparedData
    out: Path
    context: DistributedContext
    signals: StopSignals
    loader: DataLoader
    parts: Components
    state: RunState
    budget: Budget
    metrics: MetricsLog
    board: TensorBoardLog
    losses: LossTracker

    @property
    def config(self) -> Config:
        return self.prepared.config

    @property
    def total_steps(self) -> int:
        """The schedule's length; before a budgeted run has measured its speed, the planned steps."""
        return self.state.total_steps or fixed_total_steps(self.config.train, self.state.steps_per_epoch)


def _fit(
    prepared: PreparedData, out: Path, resume: bool, context: DistributedContext, signals: StopSignals, tune: bool
) -> dict[str, Any]:
    prepared = as_slices(prepared)  # a 2D model on volumes: their slices
    config = prepared.config
    seed_step(config.train.seed, 0, context.rank)
    loader = train_loader(prepared, context)
    parts = build_components(config, context)
    chosen = {"train.precision_chosen": parts.precision, "train.layout_chosen": str(parts.layout)}
    prepared = dataclasses.replace(prepared, config=with_values(config, chosen))
    config = prepared.config
    state = RunState(steps_per_epoch=steps_per_epoch(loader))
    if resume:
        state = restore(out / "last.pt", parts, context, state.steps_per_epoch)
    else:
        _start_outputs_at_data(parts.model, loader.dataset, config)
    _fit_schedule(state, config, state.steps_per_epoch)
    if context.is_main:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)
        atomic_write_text(out / "config.yaml", config.to_yaml())
        write_split(out / "split.json", prepared.train, prepared.val, prepared.root)
    run = Training(prepared, out, context, signals, loader, parts, state, Budget(config.train.time, spent=state.seconds),
              MetricsLog(out / "metrics.csv", resume_epochs=epochs_done(state.step, state.steps_per_epoch)),
              TensorBoardLog(out / "tensorboard", config.train.tensorboard and context.is_main),
              LossTracker(context.device, state.loss_sum, state.loss_steps))
    try:
        if context.is_main and resume:
            repair_best(out, config, parts, state, run.metrics)
        row = _train(run) if not state.finished else {}
    except KeyboardInterrupt as exc:
        state.seconds = run.budget.elapsed()
        state.loss_sum, state.loss_steps = run.losses.totals()
        if context.is_main:
            save(out / "last.pt", config, parts, state)
            log.warning("%s: saved %s at step %d; continue with --resume",
                        "terminated" if isinstance(exc, Terminated) else "interrupted", out / "last.pt", state.step)
        raise
    finally:
        run.board.close()
        stop_workers(loader)
    if tune:
        _tune(run)
    return row


def _start_outputs_at_data(model: UNet, dataset: SegmentationDataset | VolumePatches, config: Config) -> None:
    """Sigmoid outputs start at their targets' shares in the training data (``start_sigmoids_at_``);
    K-class models without instance maps have none."""
    shares = dataset.sigmoid_target_shares()
    sigmoid_shares = shares if config.model.classes == 1 else shares[1:]
    if sigmoid_shares:
        start_sigmoids_at_(model, sigmoid_shares)


def _fit_schedule(state: RunState, config: Config, steps_per_epoch: int) -> None:
    """The schedule's length from the config, which a resumed run may have changed (more epochs or
    steps; a larger budget, whose total is then measured again)."""
    train = config.train
    if not train.time:
        state.total_steps = fixed_total_steps(train, steps_per_epoch)
        state.finished = state.step >= state.total_steps
    elif state.finished and train.time > state.seconds * 1.05:
        state.total_steps, state.finished = 0, False


def remove_stale_temporaries(out: Path) -> None:
    """Delete the temporary files of atomic writes that a killed run left half-written."""
    for leftover in out.rglob(".*.tmp"):
        leftover.unlink(missing_ok=True)


def _train(run: Training) -> dict[str, Any]:
    """Optimizer steps until the schedule ends or the budget runs out; a validation at the end."""
    state = run.state
    run.parts.model.train()
    run.budget.start(state.step)
    with tqdm(total=run.total_steps, initial=state.step, desc="train", leave=False, dynamic_ncols=True,
              disable=not (run.context.is_main and log.isEnabledFor(logging.INFO))) as bar:
        row = _steps(run, bar)
    state.finished, state.seconds = True, run.budget.elapsed()
    if run.context.is_main:
        save(run.out / "last.pt", run.config, run.parts, state)
    return row


def _steps(run: Training, bar: tqdm) -> dict[str, Any]:
    """The steps themselves, validating when due; returns the latest validation's row."""
    state, train, device, losses = run.state, run.config.train, run.context.device, run.losses
    buffers = list(run.parts.model.buffers())
    start_step, row = state.step, {}
    validate_now, stop = _decide(run, start_step)
    if validate_now:  # a validation that a stopped run still owes
        row = _validate_and_save(run)
    if stop:
        return row
    for batch in batch_stream(run.loader, state.step):
        with run.signals.step():
            set_learning_rate(run.parts.optimizer, train.lr * learning_rate_factor(state.step, run.total_steps, train))
            seed_step(train.seed, state.step, run.context.rank)
            losses.add(train_step(run.parts, batch, run.config, device, buffers))
            state.step += 1
        bar.update()
        validate_now, stop = _decide(run, start_step)
        if validate_now or state.step % train.log_every == 0:
            worst = distributed.all_reduce_max(losses.take_worst_streak(), run.context)
            check_streak(int(worst.item()), train.max_bad_steps, run.parts.dtype)
            bar.total = run.total_steps
            bar.set_postfix(loss=f"{losses.mean().item():.4f}")
        if validate_now:
            row = _validate_and_save(run)
            run.parts.model.train()
        if stop:
            return row
    return row


def _decide(run: Training, start_step: int) -> tuple[bool, bool]:
    """(validate now, stop after that) at the current step; with a budget, rank 0's clock decides
    for every process, and the total steps follow the measured speed."""
    state, budget, train = run.state, run.budget, run.config.train
    if not budget.enabled:
        stop = state.step >= state.total_steps
        due = stop or state.step % (train.val_every or state.steps_per_epoch) == 0
        return due and state.step > 0 and not _validated_at(run, state.step), stop
    if run.context.enabled and state.step > start_step and state.step % train.log_every:
        return False, False  # processes agree at logging steps only: no step waits for a collective
    total = budget.estimate_total(state.step) or state.total_steps
    stop = (bool(total) and state.step >= total) or budget.out_of_time()
    due = state.step > 0 and not _validated_at(run, state.step) and (
        stop or (train.val_every and state.step % train.val_every == 0) or budget.validation_due())
    stop_flag, due_flag, total_steps = _rank_zero_decides(run.context, [float(stop), float(due), float(total)])
    if total_steps and not state.total_steps and run.context.is_main:
        log.info("budget: %.0f s -> about %d optimizer steps at the measured speed", budget.seconds, total_steps)
    state.total_steps = int(total_steps) or state.total_steps
    return bool(due_flag or stop_flag), bool(stop_flag)


def _rank_zero_decides(context: DistributedContext, values: list[float]) -> list[float]:
    """Rank 0's ``values`` on every process (a collective only when there are several, so a single
    process never waits for the device here)."""
    if not context.enabled:
        return values
    decided = torch.tensor(values if context.is_main else [0.0] * len(values), device=context.device)
    return distributed.all_reduce_max(decided, context).tolist()


def _validated_at(run: Training, step: int) -> bool:
    return run.metrics.has_row_at(epochs_done(step, run.state.steps_per_epoch))


def _validate_and_save(run: Training) -> dict[str, Any]:
    """Validate, log the row, and write checkpoints, curves and samples (rank 0)."""
    state, context, config = run.state, run.context, run.config
    started = run.budget.elapsed()
    train_loss = distributed.all_reduce_sum(torch.stack([run.losses.loss_sum, run.losses.good_steps]), context)
    run.losses.reset()
    state.loss_sum, state.loss_steps = 0.0, 0
    distributed.broadcast_buffers(run.parts.model, context)
    parts = run.parts
    report = validate(parts.model, run.prepared.val, config, context, parts.loss_fn, run.out, state.step, parts.layout.name)
    run.budget.record_validation(started)
    state.seconds = run.budget.elapsed()
    row = {
        "step": state.step,
        "epoch": epochs_done(state.step, state.steps_per_epoch),
        "train_loss": float(train_loss[0] / train_loss[1].clamp(min=1)),
        "val_loss": report.get("loss", float("nan")),
        "val_dice": report["dice"],
        "val_iou": report["iou"],
        "val_accuracy": report["pixel_accuracy"],
        "lr": run.parts.optimizer.param_groups[0]["lr"],
        "seconds": "" if config.train.deterministic else round(state.seconds, 1),
    }
    if context.is_main:
        _log_row(row, run.total_steps)
        run.metrics.append(row)  # before last.pt: a resume drops rows past the checkpoint
        run.board.scalars(row, state.step)
        plot_curves(run.metrics, run.out / "curves.png")
        save_checkpoints(run.out, config, run.parts, state, row["val_dice"])
    distributed.barrier(context)
    return row


def _tune(run: Training) -> None:
    """Choose the post-processing of best.pt on the validation images (rank 0; others wait); with a
    budget, in the time left of it (``Budget.reserve`` kept it)."""
    best = run.out / "best.pt"
    if run.config.model.dims == 3:
        log.info("post-processing tuning is 2D-only: the 3D model keeps plain thresholding / argmax")
        return
    if run.context.is_main and best.exists() and run.prepared.val:
        seconds = run.budget.seconds - run.budget.elapsed() if run.budget.enabled else None
        tune_checkpoint(best, run.prepared.val, device=str(run.context.device), seconds=seconds)
    distributed.barrier(run.context)


def _log_row(row: dict[str, Any], total_steps: int) -> None:
    log.info(
        "step %d/%d (epoch %s)  train loss %.4f  val loss %.4f  val Dice %.4f  IoU %.4f  acc %.4f  lr %.2e  %ss",
        row["step"], total_steps, row["epoch"], row["train_loss"], row["val_loss"], row["val_dice"], row["val_iou"],
        row["val_accuracy"], row["lr"], row["seconds"],
    )
