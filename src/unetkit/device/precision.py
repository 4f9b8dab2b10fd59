"""Which autocast dtype a run uses. ``--precision auto`` decides by measurement on CPUs: bfloat16
is fast where the CPU has bfloat16 units (AMX) and slower than float32 on many that only advertise
AVX-512, so a short probe of the network's own convolutions settles it, cached per machine. On GPUs
the rule stays: bfloat16 where supported, else float16 (not measured). An explicit choice wins.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import torch

from unetkit.config import UNetConfig
from unetkit.device import cache, probe
from unetkit.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_WIDTHS: tuple[int, ...] = UNetConfig().widths
# bfloat16 must beat float32 by this factor to be chosen: within the probe's noise float32 keeps
# full accuracy.
REQUIRED_SPEEDUP = 1.05
DTYPE_NAMES = {"32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@dataclass(frozen=True)
class PrecisionChoice:
    dtype: torch.dtype | None  # the autocast dtype; None = float32, no autocast
    name: str  # "32" | "bf16" | "fp16", as --precision spells them
    reason: str
    bf16_speedup: float | None = None  # the probe's measurement, where one decided

    def __str__(self) -> str:
        return f"{DTYPE_NAMES[self.name]} ({self.reason})"


FLOAT32 = "32"
# Choices ``auto`` made in this process, by the probe's cache key: each is measured (or read) once.
_measured: dict[str, PrecisionChoice] = {}


def resolve_precision(
    device: torch.device, requested: str, widths: Sequence[int] = DEFAULT_WIDTHS
) -> PrecisionChoice:
    """The precision for ``requested`` (auto | 32 | bf16 | fp16) on ``device``, for a network of
    stage ``widths``. ``auto`` on a CPU logs its choice once per process, measuring at most once
    per machine, torch version and widths."""
    if requested not in DTYPE_NAMES and requested != "auto":
        raise ConfigError(f"--precision {requested}: choose auto, 32, bf16 or fp16")
    if requested == FLOAT32:
        return PrecisionChoice(None, FLOAT32, "--precision 32")
    if device.type == "cuda":
        return _gpu_choice(requested)
    if device.type != "cpu":
        return PrecisionChoice(None, FLOAT32, f"no autocast on {device.type} devices")
    if requested == "auto":
        return _measured_cpu_choice(tuple(widths))
    if requested == "fp16":
        log.warning("--precision fp16 is for GPUs; on the CPU using bfloat16")
    return PrecisionChoice(torch.bfloat16, "bf16", f"--precision {requested}")


def autocast_dtype(device: torch.device, precision: str, widths: Sequence[int] = DEFAULT_WIDTHS) -> torch.dtype | None:
    """The autocast dtype ``resolve_precision`` chooses; None = float32."""
    return resolve_precision(device, precision, widths).dtype


def _gpu_choice(requested: str) -> PrecisionChoice:
    if requested == "fp16":
        return PrecisionChoice(torch.float16, "fp16", "--precision fp16")
    if torch.cuda.is_bf16_supported():
        reason = "--precision bf16" if requested == "bf16" else "this GPU has bfloat16 (not measured)"
        return PrecisionChoice(torch.bfloat16, "bf16", reason)
    if requested == "bf16":
        log.warning("--precision bf16: this GPU has no bfloat16; using float16 with a grad scaler")
    return PrecisionChoice(torch.float16, "fp16", "this GPU has no bfloat16")


def _measured_cpu_choice(widths: tuple[int, ...]) -> PrecisionChoice:
    fingerprint = cache.cpu_fingerprint(widths)
    key = cache.fingerprint_key(fingerprint)
    if key not in _measured:
        speedup = cache.lookup(fingerprint)
        if speedup is None:
            speedup = probe.measure_cpu_precisions(widths).bf16_speedup
            cache.store(fingerprint, speedup)
        _measured[key] = choice_for_speedup(speedup)
        log.info("precision: %s", _measured[key])
    return _measured[key]


def choice_for_speedup(bf16_speedup: float) -> PrecisionChoice:
    """bfloat16 where it measured clearly faster than float32 on this CPU, else float32."""
    if bf16_speedup >= REQUIRED_SPEEDUP:
        reason = f"measured {bf16_speedup:.1f}x as fast as float32 on this CPU"
        return PrecisionChoice(torch.bfloat16, "bf16", reason, bf16_speedup)
    if bf16_speedup > 1 / REQUIRED_SPEEDUP:
        reason = "bfloat16 measured within 5 % of it on this CPU"
    else:
        reason = f"bfloat16 measured {1 / bf16_speedup:.1f}x slower on this CPU"
    return PrecisionChoice(None, FLOAT32, reason, bf16_speedup)
