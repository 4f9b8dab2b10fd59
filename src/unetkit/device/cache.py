"""The execution measurements (``--precision auto``'s bfloat16 speed-up, the memory layouts'
speed ratio), kept per machine in the user's cache folder so that later runs do not measure again,
and once per process in memory.

A result is keyed by what decides it: the CPU model and flags, the capability masks oneDNN and
ATen honour, the torch version, what was timed (a training step or an inference forward pass, of
which network, shapes and memory layout) and the probe's own version. A result from another torch
version, CPU or kind of work is simply never looked up: a training step's never decides inference.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from unetkit.atomic import atomic_write_text

log = logging.getLogger(__name__)

# Results of an earlier probe are measured again (1: wall-clock, convolution only; 2: a convolution
# + batch norm per stage, channels-last, one thread).
PROBE_VERSION = 3
CACHE_DIR_VARIABLE = "UNETKIT_CACHE_DIR"
CACHE_FILE = "precision.json"
# Environment variables that change which kernels run, hence the measured speeds.
CAPABILITY_MASKS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")

# Values measured (or read) in this process, by cache key: each is measured once.
_measured: dict[str, float] = {}


def measured_once(subject: Mapping[str, Any], quantity: str, measure: Callable[[], float]) -> tuple[float, bool]:
    """``quantity`` (a positive ratio, e.g. "bf16_speedup") of ``subject`` on this machine: from this
    process's memory, else the cache file, else ``measure()`` (then stored). The flag says whether
    this process sees it for the first time (the caller logs its choice then)."""
    machine = cpu_fingerprint(subject)
    key = fingerprint_key(machine)
    if key in _measured:
        return _measured[key], False
    value = lookup(machine, quantity)
    if value is None:
        value = measure()
        store(machine, value, quantity)
    _measured[key] = value
    return value, True


def cache_dir() -> Path:
    """``$UNETKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/unetkit``, else ``~/.cache/unetkit``."""
    if os.environ.get(CACHE_DIR_VARIABLE):
        return Path(os.environ[CACHE_DIR_VARIABLE])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "unetkit"


def cpu_fingerprint(subject: Mapping[str, Any]) -> dict[str, Any]:
    """What a CPU measurement of ``subject`` (what was timed, as plain JSON values) depends on; the
    CPU flags as a digest: the list is long."""
    model, flags = cpuinfo()
    return {
        "cpu": model,
        "cpu_flags_sha256": hashlib.sha256(flags.encode()).hexdigest()[:16],
        "masks": {name: os.environ[name] for name in CAPABILITY_MASKS if name in os.environ},
        "torch": torch.__version__,
        "subject": json.loads(json.dumps(subject)),  # tuples as lists: equal to the stored copy
        "probe": PROBE_VERSION,
    }


def fingerprint_key(fingerprint: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:32]


def lookup(fingerprint: dict[str, Any], quantity: str = "bf16_speedup") -> float | None:
    """The cached ``quantity`` for ``fingerprint``; None when absent or unreadable."""
    entry = _read_entries().get(fingerprint_key(fingerprint))
    if not isinstance(entry, dict) or entry.get("machine") != fingerprint:
        return None
    value = entry.get(quantity)
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def store(fingerprint: dict[str, Any], value: float, quantity: str = "bf16_speedup") -> None:
    """Add one result to the cache file (written atomically); a cache that cannot be written only
    means the next run measures again."""
    entries = _read_entries()
    entries[fingerprint_key(fingerprint)] = {"machine": fingerprint, quantity: round(value, 4)}
    path = cache_dir() / CACHE_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(entries, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        log.warning("%s: cannot write the precision cache (%s); the next run measures again", path, exc)


def _read_entries() -> dict[str, Any]:
    path = cache_dir() / CACHE_FILE
    try:
        entries = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable precision cache (%s); measuring again", path, exc)
        return {}
    return entries if isinstance(entries, dict) else {}


def cpuinfo() -> tuple[str, str]:
    """The CPU's model name and flags (Linux); elsewhere what ``platform`` knows."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    pairs = (line.split(":", 1) for line in lines if ":" in line)
    fields = {name.strip(): value.strip() for name, value in pairs}
    model = fields.get("model name") or platform.processor() or platform.machine()
    return model, fields.get("flags") or fields.get("Features", "")
