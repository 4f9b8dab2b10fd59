"""A clean slate for tests of ``--precision auto``: the same on every CPU the suite runs on."""

from __future__ import annotations

from pathlib import Path

import pytest

from unetkit.device import cache, precision

BF16_CPU = ("a CPU with AMX", "fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile")


def fresh_precision(monkeypatch: pytest.MonkeyPatch, folder: Path, cpu: tuple[str, str] = BF16_CPU) -> Path:
    """An empty cache in ``folder``, nothing resolved yet in this process, and ``cpu`` (model name,
    flags) as the machine, no oneDNN ISA mask: the timing happens whatever CPU runs the test."""
    monkeypatch.setenv(cache.CACHE_DIR_VARIABLE, str(folder))
    monkeypatch.setattr(precision, "_measured", {})
    monkeypatch.setattr(cache, "cpuinfo", lambda: cpu)
    for name in cache.CAPABILITY_MASKS:
        monkeypatch.delenv(name, raising=False)
    return folder
