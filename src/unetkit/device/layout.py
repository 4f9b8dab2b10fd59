"""Which memory layout a run's tensors take. ``auto`` decides by measurement on CPUs, like the
precision: which layout is faster depends on the CPU, the dtype, the norm and the shapes (on a
2-core AVX2 EPYC channels-last made the training step 1.5-2x slower and inference faster; on AMX
Xeons it can be the other way; benchmarks/layout.py). So training times its own step and inference
its own forward pass in both layouts, each in its own cache entry (``cache.measured_once``). CUDA
takes channels-last untimed: cuDNN's tensor-core convolutions run NHWC natively. Volumes stay
contiguous: channels_last_3d rarely helps on CPUs. An explicit choice wins.

``resolve_execution`` chooses layout and precision together without timing anything twice.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from unetkit.device import cache
from unetkit.device.precision import PrecisionChoice, Timing, resolve_precision
from unetkit.errors import ConfigError

log = logging.getLogger(__name__)

LAYOUT_NAMES = {True: "channels-last", False: "contiguous"}
# Contiguous tensors must measure this much faster to replace channels-last: within the noise of a
# few steps the earlier default stays.
LAYOUT_MARGIN = 1.05


@dataclass(frozen=True)
class LayoutChoice:
    channels_last: bool
    reason: str
    contiguous_speedup: float | None = None  # the measurement, where one decided

    @property
    def name(self) -> str:
        """As ``--memory-layout`` spells it."""
        return LAYOUT_NAMES[self.channels_last]

    def __str__(self) -> str:
        return f"{self.name} ({self.reason})"


@dataclass(frozen=True)
class LayoutTiming:
    """The caller's own work, to be timed in each layout: ``rate(channels_last)`` gives its speed.
    ``subject`` says what it is (led by its ``kind``), as ``Timing``'s does."""

    subject: Mapping[str, Any]
    rate: Callable[[bool], float]


def resolve_layout(device: torch.device, requested: str, timing: LayoutTiming | None = None, dims: int = 2) -> LayoutChoice:
    """The layout for ``requested`` (auto | channels-last | contiguous) on ``device``. ``auto`` on a
    CPU times ``timing`` in both layouts (at most once per machine, torch version and subject) and
    logs its choice once per process; without a timing it keeps channels-last."""
    if requested not in (*LAYOUT_NAMES.values(), "auto"):
        raise ConfigError(f"memory layout {requested}: choose auto, channels-last or contiguous")
    if requested != "auto":
        return LayoutChoice(requested == "channels-last", f"set to {requested}")
    if dims == 3:
        return LayoutChoice(False, "volumes: channels_last_3d rarely helps (not timed)")
    if device.type == "cuda":
        return LayoutChoice(True, "cuDNN runs channels-last convolutions natively on GPUs (not timed)")
    if device.type != "cpu" or timing is None:
        return LayoutChoice(True, f"the default (nothing timed on {device.type})")
    measure = lambda: timing.rate(False) / timing.rate(True)  # noqa: E731
    speedup, first = cache.measured_once(timing.subject, "contiguous_speedup", measure)
    choice = choice_for_speedup(speedup, str(timing.subject.get("kind", "the work")))
    if first:
        log.info("memory layout: %s", choice)
    return choice


def measures_layouts(device: torch.device, requested: str, dims: int = 2) -> bool:
    """Whether ``requested`` is decided by timing both layouts: auto, on a CPU, for images."""
    return requested == "auto" and device.type == "cpu" and dims == 2


def choice_for_speedup(contiguous_speedup: float, kind: str) -> LayoutChoice:
    """Contiguous where ``kind`` (what was timed) measured clearly faster in it than channels-last
    on this CPU (LAYOUT_MARGIN), else channels-last."""
    if contiguous_speedup >= LAYOUT_MARGIN:
        reason = f"the {kind} measured {contiguous_speedup:.2f}x as fast contiguous as channels-last on this CPU"
        return LayoutChoice(False, reason, contiguous_speedup)
    if contiguous_speedup > 1 / LAYOUT_MARGIN:
        reason = f"the {kind} measured within 5 % contiguous on this CPU"
    else:
        reason = f"the {kind} measured {1 / contiguous_speedup:.2f}x as fast channels-last as contiguous on this CPU"
    return LayoutChoice(True, reason, contiguous_speedup)


@dataclass(frozen=True)
class Execution:
    layout: LayoutChoice
    precision: PrecisionChoice


def resolve_execution(
    device: torch.device, precision: str, layout: str, speed: Callable[[torch.dtype | None, bool], float],
    subject: Callable[[bool], dict[str, Any]], dims: int = 2,
) -> Execution:
    """Layout and precision of one piece of work, ``speed(dtype, channels_last)`` (any rate) of
    which ``subject(channels_last)`` says what it is. Each layout timed runs in the precision it
    resolves to (measured per layout, as the precision depends on it); ``speed`` is called at most
    once per setting, and not at all where the cache knows the answers."""
    speed = functools.cache(speed)

    @functools.cache
    def precision_in(channels_last: bool) -> PrecisionChoice:
        timing = Timing(subject(channels_last), lambda dtype: speed(dtype, channels_last))
        return resolve_precision(device, precision, timing)

    timing = None
    if measures_layouts(device, layout, dims):  # keyed by the dtype each layout runs in, not by the request
        compared = {key: value for key, value in subject(True).items() if key != "channels_last"}
        dtypes = {LAYOUT_NAMES[cl]: str(precision_in(cl).dtype) for cl in LAYOUT_NAMES}
        timing = LayoutTiming({**compared, "dtypes": dtypes}, lambda cl: speed(precision_in(cl).dtype, cl))
    chosen = resolve_layout(device, layout, timing, dims)
    return Execution(chosen, precision_in(chosen.channels_last))
