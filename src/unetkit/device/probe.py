"""A short measurement of this CPU: one training step (forward and backward) of a network's
first-stage and deepest-stage 3x3 convolutions, float32 against bfloat16 autocast, channels-last as
unetkit runs them, on one thread, timed in CPU seconds so that other work on the machine does not
decide.

Every stage of a U-Net does about the same arithmetic (twice the channels on a quarter of the
pixels), so each probed convolution gets the same arithmetic too (a feature map sized to
``FORWARD_GFLOPS``) and the network's time in a dtype is estimated as their summed seconds per FLOP.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

FORWARD_GFLOPS = 0.75  # per probed convolution: enough that per-call overheads do not decide
SIDES = (8, 256)  # smallest and largest feature-map side probed
ROUNDS = 2  # float32 and bfloat16 alternate; the fastest round of each convolution counts


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
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread's CPU time: other jobs on the machine do not count in it
    try:
        return _measure(widths)
    finally:
        torch.set_num_threads(threads)


def _measure(widths: Sequence[int]) -> ProbeResult:
    with torch.random.fork_rng(devices=[]):  # the run's own random stream stays as seeded
        stages = [_conv_step(widths[0]), _conv_step(widths[-1])]
        dtypes = (None, torch.bfloat16)
        rounds: dict[tuple[int, torch.dtype | None], list[float]] = {(i, d): [] for i in range(len(stages)) for d in dtypes}
        for _ in range(1 + ROUNDS):
            for (stage, dtype), seconds in rounds.items():
                step, gflops = stages[stage]
                seconds.append(_seconds(step, dtype) / gflops)
    # The first round only warms up: oneDNN builds its kernels on first use.
    best = {key: min(seconds[1:]) for key, seconds in rounds.items()}
    return ProbeResult(*(sum(best[stage, dtype] for stage in range(len(stages))) for dtype in dtypes))


def _conv_step(channels: int) -> tuple[Callable[[], None], float]:
    """A training step of a ``channels`` -> ``channels`` 3x3 convolution (+ batch norm and ReLU) on a
    square map of about ``FORWARD_GFLOPS``, and its convolution GFLOPs (forward, and backward to both
    the input and the weights)."""
    side = round(math.sqrt(FORWARD_GFLOPS * 1e9 / (2 * 9 * channels**2)))
    side = min(max(side, SIDES[0]), SIDES[1])
    # As in the network's stages: normalisation and activation move the activations in the dtype too.
    layer = torch.nn.Sequential(torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                torch.nn.BatchNorm2d(channels), torch.nn.ReLU())  # fmt: skip
    layer = layer.to(memory_format=torch.channels_last)
    inputs = torch.randn(1, channels, side, side).contiguous(memory_format=torch.channels_last).requires_grad_()

    def step() -> None:
        layer(inputs).float().sum().backward()

    return step, 3 * 2 * 9 * channels**2 * side**2 / 1e9


def _seconds(step: Callable[[], None], dtype: torch.dtype | None) -> float:
    """CPU seconds of this thread, not wall time: a busy machine delays the step, but does not add
    to its CPU time."""
    started = time.thread_time()
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        step()
    return time.thread_time() - started
