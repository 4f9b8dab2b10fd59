"""A clean slate for tests of ``auto`` precision and memory layout: the same on every CPU the suite runs on."""

from __future__ import annotations

from pathlib import Path

import pytest

from unetkit.device import cache

BF16_CPU = ("a CPU with AMX", "fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile")


def fresh_cache(monkeypatch: pytest.MonkeyPatch, folder: Path) -> Path:
    """An empty measurement cache in ``folder`` and nothing measured yet in this process: a test's
    fake timings are not answered by another test's."""
    monkeypatch.setenv(cache.CACHE_DIR_VARIABLE, str(folder))
    monkeypatch.setattr(cache, "_measured", {})
    return folder


def fresh_precision(monkeypatch: pytest.MonkeyPatch, folder: Path, cpu: tuple[str, str] = BF16_CPU) -> Path:
    """``fresh_cache``, and ``cpu`` (model name, flags) as the machine, no oneDNN ISA mask: the
    timing happens whatever CPU runs the test."""
    fresh_cache(monkeypatch, folder)
    monkeypatch.setattr(cache, "cpuinfo", lambda: cpu)
    for name in cache.CAPABILITY_MASKS:
        monkeypatch.delenv(name, raising=False)
    return folder
