"""benchmarks/contention.py's free-core count, the rule its free-cores setting runs under."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest

from unetkit.cli.cpu import CpuSample

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def contention():
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module("contention")


@pytest.mark.parametrize(("busy_ticks", "expected"), [(0, 4), (50, 2), (75, 1), (100, 1)])
def test_free_cores_are_the_cores_other_work_leaves_idle(contention, monkeypatch, busy_ticks, expected):
    # (busy, total) ticks 1 s apart; this process used no CPU in between
    samples = iter([CpuSample(1000, 5000, 0.0, 0.0), CpuSample(1000 + busy_ticks, 5100, 0.0, 1.0)])
    monkeypatch.setattr(contention, "sample_cpu", lambda: next(samples))
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert contention.free_cores(sample_seconds=0) == expected
