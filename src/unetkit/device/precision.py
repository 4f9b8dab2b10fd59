"""Which autocast dtype a run uses. ``--precision auto`` decides by measurement on CPUs: bfloat16
is fast where the CPU has bfloat16 units (AMX) and slower than float32 on many that only advertise
AVX-512, and by how much depends on the whole computation: the network, its norm, the memory
layout and the shapes (on an AMX CPU the planned instance-norm U-Net trained 2.2-2.9x slower in
bfloat16 channels-last than contiguous). So the caller times its own work in both dtypes (a
``Timing``): the plan its training step, predict and serve a forward pass of the checkpoint's
network at its tile size. Results are cached per machine and per what was timed, so a training
step's result never decides inference. A CPU without bfloat16 instructions (bfloat16 emulated,
many times slower) is not timed: float32; so is auto without a timing (``train --no-plan``).
On GPUs the rule stays: bfloat16 where supported, else float16 (not measured). An explicit choice
wins.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from unetkit.device import cache
from unetkit.errors import ConfigError

log = logging.getLogger(__name__)

# bfloat16 must beat float32 by this factor to be chosen: within the probe's noise float32 keeps
# full accuracy.
REQUIRED_SPEEDUP = 1.05
DTYPE_NAMES = {"32": "float32", "bf16": "bfloat16", "fp16": "float16"}
BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # /proc/cpuinfo flags of bfloat16 arithmetic (x86, Arm)
BF16_ISAS = ("BF16", "FP16", "AMX", "AVX10")  # oneDNN ISA masks at or above AVX512_CORE_BF16 name one of these
FLOAT32 = "32"


@dataclass(frozen=True)
class PrecisionChoice:
    dtype: torch.dtype | None  # the autocast dtype; None = float32, no autocast
    name: str  # "32" | "bf16" | "fp16", as --precision spells them
    reason: str
    bf16_speedup: float | None = None  # the measurement, where one decided

    def __str__(self) -> str:
        return f"{DTYPE_NAMES[self.name]} ({self.reason})"


@dataclass(frozen=True)
class Timing:
    """The caller's own work, to be timed in each dtype: ``rate(dtype)`` gives its speed (any unit
    per second; dtype None = float32). ``subject`` says what it is, as plain JSON values, led by
    its ``kind`` ("training step" or "inference forward pass"), then the network, shapes and
    memory layout: the cache keeps one result per subject and machine."""

    subject: Mapping[str, Any]
    rate: Callable[[torch.dtype | None], float]


def resolve_precision(device: torch.device, requested: str, timing: Timing | None = None) -> PrecisionChoice:
    """The precision for ``requested`` (auto | 32 | bf16 | fp16) on ``device``. ``auto`` on a CPU
    times ``timing`` in float32 and bfloat16 (at most once per machine, torch version and subject)
    and logs its choice once per process; without a timing it is float32."""
    if requested not in DTYPE_NAMES and requested != "auto":
        raise ConfigError(f"--precision {requested}: choose auto, 32, bf16 or fp16")
    if requested == FLOAT32:
        return PrecisionChoice(None, FLOAT32, "--precision 32")
    if device.type == "cuda":
        return _gpu_choice(requested)
    if device.type != "cpu":
        return PrecisionChoice(None, FLOAT32, f"no autocast on {device.type} devices")
    if requested == "auto":
        if not has_bf16_instructions():  # emulated: many times slower, and timing it would take minutes
            return PrecisionChoice(None, FLOAT32, "this CPU has no bfloat16 instructions (not timed)")
        if timing is None:
            return PrecisionChoice(None, FLOAT32, "nothing of this run timed in bfloat16 (the plan times its training step)")
        return _measured_cpu_choice(timing)
    if requested == "fp16":
        log.warning("--precision fp16 is for GPUs; on the CPU using bfloat16")
    return PrecisionChoice(torch.bfloat16, "bf16", f"--precision {requested}")


def autocast_dtype(device: torch.device, precision: str, timing: Timing | None = None) -> torch.dtype | None:
    """The autocast dtype ``resolve_precision`` chooses; None = float32."""
    return resolve_precision(device, precision, timing).dtype


def has_bf16_instructions() -> bool:
    """Whether this CPU has bfloat16 arithmetic (x86 AVX-512 BF16 or AMX, Arm's BF16 extension)
    that oneDNN's ISA mask leaves it; where the CPU's flags cannot be read, assume so (and time)."""
    _, flags = cache.cpuinfo()
    mask = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL").upper()
    masked = mask != "ALL" and not any(name in mask for name in BF16_ISAS)
    return not masked and (not flags or bool(BF16_FLAGS & set(flags.split())))


def _gpu_choice(requested: str) -> PrecisionChoice:
    if requested == "fp16":
        return PrecisionChoice(torch.float16, "fp16", "--precision fp16")
    if torch.cuda.is_bf16_supported():
        reason = "--precision bf16" if requested == "bf16" else "this GPU has bfloat16 (not measured)"
        return PrecisionChoice(torch.bfloat16, "bf16", reason)
    if requested == "bf16":
        log.warning("--precision bf16: this GPU has no bfloat16; using float16 with a grad scaler")
    return PrecisionChoice(torch.float16, "fp16", "this GPU has no bfloat16")


def _measured_cpu_choice(timing: Timing) -> PrecisionChoice:
    measure = lambda: timing.rate(torch.bfloat16) / timing.rate(None)  # noqa: E731
    speedup, first = cache.measured_once(timing.subject, "bf16_speedup", measure)
    choice = choice_for_speedup(speedup, str(timing.subject.get("kind", "the work")))
    if first:
        log.info("precision: %s", choice)
    return choice


def choice_for_speedup(bf16_speedup: float, kind: str) -> PrecisionChoice:
    """bfloat16 where ``kind`` (what was timed) measured clearly faster than in float32 on this
    CPU, else float32."""
    if bf16_speedup >= REQUIRED_SPEEDUP:
        reason = f"the {kind} measured {bf16_speedup:.1f}x as fast as in float32 on this CPU"
        return PrecisionChoice(torch.bfloat16, "bf16", reason, bf16_speedup)
    if bf16_speedup > 1 / REQUIRED_SPEEDUP:
        reason = f"the {kind} in bfloat16 measured within 5 % of it on this CPU"
    else:
        reason = f"the {kind} in bfloat16 measured {1 / bf16_speedup:.1f}x slower on this CPU"
    return PrecisionChoice(None, FLOAT32, reason, bf16_speedup)
