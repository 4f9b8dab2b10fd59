"""What the benchmarks share: where the data is, the machine, the command to repeat a run,
running `unetkit train` in process, and publishing a result (printed table, optional JSON)."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from unetkit import cli
from unetkit.atomic import atomic_write_text

# The published samples: $UNETKIT_SAMPLE_DATA, else ../shared/data beside the repository (as the tests).
SHARED_DATA = Path(os.environ.get("UNETKIT_SAMPLE_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


def machine() -> str:
    """The CPU (and GPU), core count and torch build that figures were measured on."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    cpu = models[0] if models else platform.processor() or platform.machine()
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}"


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """How to repeat a benchmark run: ``python benchmarks/<script> <its arguments>``."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["python", f"benchmarks/{Path(script).name}", *arguments])


def publish(result: dict, table: str, json_path: Path | None) -> dict:
    """Print a benchmark's ``table``, write its ``result`` to ``json_path`` when given; returns ``result``."""
    print(table)
    if json_path:
        atomic_write_text(json_path, json.dumps(result, indent=2) + "\n")
    return result


def run_train(argv: list[str]) -> float:
    """``unetkit train`` with ``argv`` in this process; returns its wall time in seconds."""
    started = time.perf_counter()
    code = cli.main(["-q", "train", *argv])
    if code != 0:
        raise SystemExit(f"unetkit train {shlex.join(argv)} failed with exit code {code}")
    return time.perf_counter() - started
