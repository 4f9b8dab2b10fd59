"""A short measurement of this CPU: one training step (forward and backward) of a network's
first-stage and deepest-stage 3x3 convolutions, float32 against bfloat16 autocast, channels-last as
unetkit runs them.

Every stage of a U-Net does about the same arithmetic (twice the channels on a quarter of the
pixels), so the two probed stages are weighed per operation: the network's time in a dtype is
estimated as the sum of their seconds per FLOP.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

FIRST_SIDE = 128  # feature-map sides probed: big enough that per-call overheads do not decide
DEEPEST_SIDE = 12
ROUNDS = 2  # float32 and bfloat16 alternate; the fastest round of each counts


@dataclass(frozen=True)
class ProbeResult:
    float32_seconds: float  # per GFLOP, first and deepest stage summed
    bfloat16_seconds: float

    @property
    def bf16_speedup(self) -> float:
        """How many times faster bfloat16 ran than float32 (below 1: slower)."""
        return self.float32_seconds / self.bfloat16_seconds


def measure_cpu_precisions(widths: Sequence[int]) -> ProbeResult:
    """Time one training step of the first and the deepest stage's convolution in each dtype."""
    with torch.random.fork_rng(devices=[]):  # the run's own random stream stays as seeded
        stages = [_conv_step(widths[0], FIRST_SIDE), _conv_step(widths[-1], DEEPEST_SIDE)]
        rounds: dict[torch.dtype | None, list[float]] = {None: [], torch.bfloat16: []}
        for _ in range(1 + ROUNDS):
            for dtype, seconds in rounds.items():
                seconds.append(sum(_seconds(step, dtype) / gflops for step, gflops in stages))
    # The first round only warms up: oneDNN builds its kernels on first use.
    return ProbeResult(min(rounds[None][1:]), min(rounds[torch.bfloat16][1:]))


def _conv_step(channels: int, side: int) -> tuple[Callable[[], None], float]:
    """A training step of a ``channels`` -> ``channels`` 3x3 convolution on a ``side``-pixel square
    map, and its GFLOPs (forward, and backward to both the input and the weights)."""
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1).to(memory_format=torch.channels_last)
    inputs = torch.randn(1, channels, side, side).contiguous(memory_format=torch.channels_last).requires_grad_()

    def step() -> None:
        conv(inputs).float().sum().backward()

    return step, 3 * 2 * channels**2 * 9 * side**2 / 1e9


def _seconds(step: Callable[[], None], dtype: torch.dtype | None) -> float:
    started = time.perf_counter()
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        step()
    return time.perf_counter() - started
