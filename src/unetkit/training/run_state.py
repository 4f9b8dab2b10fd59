"""A run's checkpoints: best.pt (best validation Dice) and last.pt (where to resume), each holding
the weights, the whole config and the state the loop needs to continue."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from typing import Any, Mapping

from unetkit.checkpoint import load_checkpoint, save_checkpoint
from unetkit.config import Config
from unetkit.config.flags import config_flags, with_values
from unetkit.errors import CheckpointError, ConfigError
from unetkit.device.distributed import DistributedContext
from unetkit.training.logs import MetricsLog, epochs_done
from unetkit.training.step import Components

log = logging.getLogger(__name__)

# What may change when a run resumes; the rest comes from the run, so model and labels match its weights.
RESUME_PATHS = frozenset(config_flags("--epochs", "--steps", "--time", "--workers", "--log-every", "--max-pixels").values())


@dataclass
class RunState:
    """What resume needs beyond the weights and the optimizer; saved in every checkpoint."""

    step: int = 0  # optimizer steps done
    total_steps: int = 0  # the schedule's length (0: a budgeted run that has not measured its speed yet)
    steps_per_epoch: int = 0
    best_dice: float = -1.0
    seconds: float = 0.0  # wall time spent, over every resumed part
    finished: bool = False  # the schedule or the budget ran out and the final validation was saved
    loss_sum: float = 0.0  # training losses since the last validation, when stopped between two
    loss_steps: int = 0


def save(path: Path, config: Config, parts: Components, state: RunState) -> None:
    save_checkpoint(
        path, config, parts.model.state_dict(),
        optimizer=parts.optimizer.state_dict(),
        scaler=parts.scaler.state_dict(),
        **dataclasses.asdict(state),
    )


def save_checkpoints(out: Path, config: Config, parts: Components, state: RunState, dice: float) -> None:
    """best.pt if the validation beat the best Dice, then last.pt. The best Dice moves only once
    best.pt holds the step: an interrupt in between must not leave a run without its best.pt."""
    if dice > state.best_dice:
        save(out / "best.pt", config, parts, dataclasses.replace(state, best_dice=dice))
        state.best_dice = dice
    save(out / "last.pt", config, parts, state)


def repair_best(out: Path, config: Config, parts: Components, state: RunState, metrics: MetricsLog) -> None:
    """After an interrupt between a validation's row and its best.pt, the restored weights are that
    validation's: write the best.pt it earned."""
    if metrics.has_row_at(epochs_done(state.step, state.steps_per_epoch)):
        dice = float(metrics.rows[-1]["val_dice"])
        if dice > state.best_dice:
            save_checkpoints(out, config, parts, state, dice)


def restore(path: Path, parts: Components, context: DistributedContext, steps_per_epoch: int) -> RunState:
    """Load weights, optimizer and scaler state from ``path`` (any number of processes)."""
    if not path.exists():
        raise CheckpointError(f"{path}: --resume needs the last.pt of an earlier run in this --out folder")
    payload = load_checkpoint(path)
    parts.model.load_state_dict(payload["model"])
    parts.optimizer.load_state_dict(payload["optimizer"])
    parts.scaler.load_state_dict(payload["scaler"])
    fields = {f.name for f in dataclasses.fields(RunState)}
    state = RunState(**{name: value for name, value in payload.items() if name in fields})
    if "steps_per_epoch" not in payload:  # written before steps were the clock: resume at its epoch
        state.step, state.steps_per_epoch = payload.get("epoch", 0) * steps_per_epoch, steps_per_epoch
    _rescale(state, steps_per_epoch)
    if context.is_main:
        log.info("resumed from %s at step %d (best val Dice %.4f)", path, state.step, state.best_dice)
    return state


def _rescale(state: RunState, steps_per_epoch: int) -> None:
    """Another number of processes (or batch size) means another number of steps per epoch: the run
    keeps its place in the data and in the schedule."""
    if state.steps_per_epoch == steps_per_epoch:
        return
    scale = steps_per_epoch / state.steps_per_epoch
    state.step = round(state.step * scale)
    state.total_steps = round(state.total_steps * scale)
    state.steps_per_epoch = steps_per_epoch


def resumed_config(out: Path, data: str | Path, values: Mapping[str, Any]) -> Config:
    """The config of the run in ``out`` (its last.pt, or a folds run's first fold's), with the data
    folder and those of ``values`` (config path -> value) that RESUME_PATHS allows to change."""
    folds = sorted(out.glob("fold_*/last.pt"))
    last = folds[0] if folds and not (out / "last.pt").exists() else out / "last.pt"
    if not last.exists():
        raise ConfigError(f"{last}: nothing to resume; start without --resume")
    kept = sorted(set(values) - RESUME_PATHS)
    if kept:
        log.warning("resuming %s: %s keep the run's values (a resumed run changes only %s)",
                    out, ", ".join(kept), ", ".join(sorted(RESUME_PATHS)))  # fmt: skip
    changed = {path: value for path, value in values.items() if path in RESUME_PATHS}
    return with_values(load_checkpoint(last)["config"], {"data.path": str(data), **changed})
