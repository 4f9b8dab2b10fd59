"""How long a run trains and how fast it learns: the learning rate as a function of the step, and
the wall-clock budget that decides the number of steps.

The schedule is a pure function of (step, total steps), so resuming is "restore the step". The
budget only decides the total: a run with ``train.time`` measures its own speed after a short
calibration and fits the total to the time left, leaving room for validation (at most
``VALIDATION_SHARE`` of the budget) and the final validation and tuning (``Budget.reserve``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from unetkit.config import TrainConfig

VALIDATION_SHARE = 0.15  # at most this share of a budget goes to intermediate validations
UNTIMED_STEPS = 3  # steps left out of the speed measurement (first-call overheads, loader start)
CALIBRATION_SHARE = 0.02  # the speed is first measured over this much of the budget (and >= CALIBRATION_STEPS)
CALIBRATION_STEPS = 5
FIRST_VALIDATION_SHARE = 0.1  # with a budget, the first validation (which measures its cost) comes here
FINAL_RESERVE = 2.0  # the end of a run costs this many validations: the last one, then predicting for tuning
TUNING_SHARE = 0.05  # and this share of the budget: the post-processing search on those predictions


def learning_rate_factor(step: int, total: int, train: TrainConfig) -> float:
    """The factor of ``train.lr`` for optimizer step ``step`` (0-based) of ``total``: linear warm-up
    over ``train.warmup`` of the steps, then cosine decay to zero (or constant)."""
    warmup = int(train.warmup * total)
    if step < warmup:
        return (step + 1) / warmup
    if train.scheduler == "none":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def fixed_total_steps(train: TrainConfig, steps_per_epoch: int) -> int:
    """The total of a run without a budget: ``train.steps``, else the epochs in steps."""
    return train.steps or max(1, train.epochs * steps_per_epoch)


@dataclass
class Budget:
    """Wall-clock accounting of a budgeted run (``seconds`` 0: no budget).

    ``spent`` carries over a resume; the clock of this process starts at ``start()``. The speed is
    measured on training time only (validations excluded), after a few warm-up steps, and the total
    is estimated again at every decision, so it converges as the end nears. Decisions are made by
    rank 0 and shared, so every process stops at the same step.
    """

    seconds: float
    spent: float = 0.0
    validation_cost: float = 0.0  # seconds of the latest validation
    last_validation: float = 0.0  # ``elapsed`` at the latest validation
    spent_at_start: float = 0.0  # ``spent`` when this process started its clock
    validation_seconds: float = 0.0  # this process's time in validation
    _started: float = 0.0
    _warm: tuple[int, float] | None = None  # (step, training seconds) once past the warm-up steps

    @property
    def enabled(self) -> bool:
        return self.seconds > 0

    def start(self, step: int) -> None:
        self._started = time.perf_counter()
        self.spent_at_start = self.last_validation = self.spent
        self._start_step = step

    def elapsed(self) -> float:
        """Seconds of the budget used so far, over every resumed part of the run."""
        if not self._started:
            return self.spent
        return self.spent_at_start + time.perf_counter() - self._started

    def training_seconds(self) -> float:
        return self.elapsed() - self.spent_at_start - self.validation_seconds

    def estimate_total(self, step: int) -> int:
        """The total steps that fit the budget at the measured speed; 0 until it is measured."""
        trained = self.training_seconds()
        if self._warm is None:
            if step - self._start_step >= UNTIMED_STEPS:
                self._warm = (step, trained)
            return 0
        warm_step, warm_seconds = self._warm
        measured = trained - warm_seconds
        if step - warm_step < CALIBRATION_STEPS or measured < CALIBRATION_SHARE * self.seconds:
            return 0
        left = self.seconds - self.elapsed() - self.reserve()
        return step + max(0, int((step - warm_step) / measured * left * (1.0 - VALIDATION_SHARE)))

    def reserve(self) -> float:
        """Seconds kept for the end of the run: the last validation, predicting the validation images
        again and the post-processing search (before the first validation, a guess from the budget)."""
        validations = FINAL_RESERVE * self.validation_cost if self.validation_cost else FIRST_VALIDATION_SHARE * self.seconds
        return validations + TUNING_SHARE * self.seconds

    def out_of_time(self) -> bool:
        return self.elapsed() + self.reserve() >= self.seconds

    def validation_due(self) -> bool:
        """Validations are spaced so that they take at most VALIDATION_SHARE of the time."""
        since = self.elapsed() - self.last_validation
        if not self.validation_cost:
            return since >= FIRST_VALIDATION_SHARE * self.seconds
        return since * VALIDATION_SHARE >= self.validation_cost * (1.0 - VALIDATION_SHARE)

    def record_validation(self, started: float) -> None:
        """Note a validation that began at ``elapsed() == started``."""
        self.validation_cost = self.elapsed() - started
        self.validation_seconds += self.validation_cost
        self.last_validation = self.elapsed()
