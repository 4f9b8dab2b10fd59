"""Where the tests that need published sample datasets (ISBI 2012, Carvana, DSB 2018) look:
``$UNETKIT_SAMPLE_DATA``, else ``../shared/data`` beside the repository. Without them they skip;
with them they belong to the slow suite (``-m slow``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, TypeVar

import pytest

SAMPLE_DATA = Path(os.environ.get("UNETKIT_SAMPLE_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")

T = TypeVar("T")


def needs_sample(name: str) -> Callable[[T], T]:
    """Mark a test slow and skip it unless the sample dataset ``name`` (a folder of SAMPLE_DATA) is there."""
    missing = pytest.mark.skipif(not (SAMPLE_DATA / name).is_dir(), reason=f"no {SAMPLE_DATA / name} (set UNETKIT_SAMPLE_DATA)")
    return lambda test: pytest.mark.slow(missing(test))
