"""How fast a piece of work runs here: the median of a few timed calls after a warm-up, used by the
plan's speed probe and by ``--precision auto``'s timings of training steps and forward passes."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

WARMUP_CALLS = 1  # oneDNN / cuDNN choose their kernels on first use
MAX_CALLS = 6
# Timed calls: as many as fit this (at most MAX_CALLS), at least one: a call longer than this is
# long against the noise, and the plan times up to four settings (two dtypes, two layouts).
MEASURE_SECONDS = 1.0


def calls_per_second(call: Callable[[], object], device: torch.device) -> float:
    """Calls per second of ``call`` on ``device``, from the median call (a call stalled by another
    job on a shared CPU does not count); GPU work is waited for."""
    for _ in range(WARMUP_CALLS):
        call()
    _synchronize(device)
    started, seconds = time.perf_counter(), []
    while not seconds or (len(seconds) < MAX_CALLS and time.perf_counter() - started < MEASURE_SECONDS):
        begun = time.perf_counter()
        call()
        _synchronize(device)
        seconds.append(time.perf_counter() - begun)
    return 1.0 / statistics.median(seconds)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
