"""What a training process sets up around its loop: stop signals that wait for the optimizer step,
deterministic kernels, and the seeding of every step."""

from __future__ import annotations

import contextlib
import random
import signal
import threading
from typing import Any, Iterator

import numpy as np
import torch

from unetkit.errors import Terminated


class StopSignals:
    """Ctrl-C (SIGINT) and SIGTERM while training raise KeyboardInterrupt / Terminated, which save
    last.pt; never in the middle of an optimizer step (the weights and the step count would then
    disagree): a signal that arrives there is raised when the step is done.

    Python runs signal handlers in the main thread only; elsewhere this does nothing.
    """

    def __init__(self) -> None:
        self.in_step = False
        self.pending: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self.previous = {signum: signal.signal(signum, self._handle) for signum in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        """One optimizer step, shielded from stop signals until it is complete."""
        self.in_step = True
        yield
        self.in_step = False
        if self.pending is not None:
            self._raise(self.pending)

    def _handle(self, signum: int, frame: object) -> None:
        if self.in_step:
            self.pending = signum
        else:
            self._raise(signum)

    def _raise(self, signum: int) -> None:
        # Further signals are ignored: they must not cut the save of last.pt short.
        for each in self.previous:
            signal.signal(each, signal.SIG_IGN)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(f"signal {signal.Signals(signum).name}")


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


def seed_step(seed: int, step: int, rank: int) -> None:
    """Seed every generator from (seed, step, rank): a step's randomness (dropout; items draw their
    own from the sampler) is the same whether the run was resumed or not."""
    value = seed + 1_000_003 * step + 7919 * rank
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)
