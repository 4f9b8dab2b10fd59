"""The budget rules: from a wall-clock budget and the measured speed of candidate widths to the
width, the number of optimizer steps and the validation cadence.

Many optimizer steps of a narrower network beat few steps of a wide one (issue 11: 80 steps of a
width-64 U-Net left the loss falling), so the widest width that still reaches MIN_STEPS wins.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from unetkit.config import PredictConfig
from unetkit.planning.fingerprint import Fingerprint
from unetkit.planning.rules import MIN_BATCH, Choice
from unetkit.training.schedule import VALIDATION_SHARE  # what the trainer lets validation take of a budget

WIDTHS = (8, 16, 32, 64)
MAX_WIDTH = {"cpu": 32, "cuda": 64}
MIN_STEPS = 1000
OTHER_SHARE = 0.05  # start-up, checkpoints, the loader's first batches
FORWARD_COST = 1 / 3  # a forward pass costs about a third of a training step
TILE_OVERLAP = PredictConfig().overlap  # every pixel is computed about (1 / (1 - overlap))^2 times
MAX_VALIDATIONS = 20
NO_BUDGET_WIDTH = 32  # nnU-Net's first-stage width
NO_BUDGET_PASSES = 50  # without a budget: this many passes over the training pixels
MAX_STEPS = 20_000

Speed = Callable[[int], float]  # base width -> measured optimizer steps per second (planned patch and batch)


def training_seconds(budget_seconds: float) -> float:
    return round(budget_seconds * (1.0 - VALIDATION_SHARE - OTHER_SHARE), 6)  # 600 s -> 480, not 479.99...


def budget_width(budget_seconds: float, device_type: str, speed: Speed, widths: Sequence[int] | None = None) -> tuple[Choice, dict[int, float]]:
    """The widest candidate width whose measured speed reaches MIN_STEPS within the training share
    of the budget, and the measured speeds. Narrow to wide, stopping at the first that falls short,
    or unmeasured where the last one made fewer than twice MIN_STEPS: a network twice as wide is at
    least twice as slow."""
    candidates = list(widths or [w for w in WIDTHS if w <= MAX_WIDTH[device_type]])
    seconds = training_seconds(budget_seconds)
    measured: dict[int, float] = {}
    chosen = candidates[0]
    for width in candidates:
        measured[width] = speed(width)
        if measured[width] * seconds < MIN_STEPS:
            break
        chosen = width
        if measured[width] * seconds < 2 * MIN_STEPS:
            break
    figures = ", ".join(f"width {w}: {rate:.2f} steps/s = {int(rate * seconds)} steps" for w, rate in measured.items())
    short = measured[chosen] * seconds < MIN_STEPS
    verdict = (f"even the narrowest falls short of {MIN_STEPS} steps: give more time" if short
               else f"the widest reaching {MIN_STEPS} steps")
    return Choice("model.base_width", chosen, (
        f"{verdict} in {seconds:.0f} s of training ({1 - VALIDATION_SHARE - OTHER_SHARE:.0%} of the budget; measured "
        f"{figures}); many steps of a narrower network beat few of a wide one"
    )), measured


def smaller_batch(batch: int, patch: int, rate: float, budget_seconds: float) -> Choice:
    """MIN_BATCH per step where ``rate`` (at ``batch``) gives fewer than MIN_STEPS in the budget:
    a step's time grows with its pixels, so halving the batch about doubles the steps."""
    steps = rate * training_seconds(budget_seconds)
    if steps >= MIN_STEPS or batch <= MIN_BATCH:
        return Choice("train.batch_size", batch, "")
    return Choice("train.batch_size", MIN_BATCH, (
        f"{batch} x {patch}^2 px per step gave {steps:.0f} optimizer steps in the budget, under {MIN_STEPS}: "
        f"{MIN_BATCH} per step (nnU-Net's smallest batch) makes about {batch / MIN_BATCH:.0f}x more steps"
    ))


def budget_steps(budget_seconds: float, rate: float) -> Choice:
    seconds = training_seconds(budget_seconds)
    steps = max(1, int(rate * seconds))
    return Choice("train.steps", steps, (
        f"{rate:.2f} measured steps/s x {seconds:.0f} s: the budget after {VALIDATION_SHARE:.0%} for validation and "
        f"{OTHER_SHARE:.0%} for start-up and checkpoints"
    ))


def dataset_steps(fp: Fingerprint, batch: int, patch: int, resized: int, rate: float) -> Choice:
    """Without a budget: NO_BUDGET_PASSES passes over the training pixels, within MIN..MAX_STEPS."""
    pixels = fp.pixels_at(resized)
    wanted = math.ceil(NO_BUDGET_PASSES * fp.train_images * pixels / (batch * min(patch**2, pixels)))
    steps = max(MIN_STEPS, min(MAX_STEPS, wanted))
    return Choice("train.steps", steps, (
        f"no time budget: {NO_BUDGET_PASSES} passes over the training pixels, within {MIN_STEPS}..{MAX_STEPS} "
        f"steps; about {steps / rate / 60:.0f} min of training at the measured {rate:.2f} steps/s"
    ))


def no_budget_width() -> Choice:
    return Choice("model.base_width", NO_BUDGET_WIDTH, "no time budget: nnU-Net's first-stage width")


def val_every(
    steps: int, rate: float, batch: int, patch: int, val_images: int, val_pixels: int, budget_seconds: float
) -> Choice:
    """Steps between validations so that validation takes about VALIDATION_SHARE of the run: a validation
    pass is estimated from the training speed (forward = FORWARD_COST of a step, tiles overlapping)."""
    run_seconds = budget_seconds or steps / rate / (1.0 - VALIDATION_SHARE - OTHER_SHARE)
    forward_pixels_per_second = rate * batch * patch**2 / FORWARD_COST
    seconds = val_images * val_pixels / (1.0 - TILE_OVERLAP) ** 2 / forward_pixels_per_second
    validations = max(1, min(MAX_VALIDATIONS, int(VALIDATION_SHARE * run_seconds / max(seconds, 1e-9))))
    every = max(1, math.ceil(steps / validations))
    return Choice("train.val_every", every, (
        f"a validation of {val_images} images takes about {seconds:.1f} s (estimated from the training speed): "
        f"{validations} validations fit {VALIDATION_SHARE:.0%} of the run"
    ))
