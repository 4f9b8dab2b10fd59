"""Where the tests that need published sample datasets (ISBI 2012, Carvana, DSB 2018) look:
``$UNETKIT_SAMPLE_DATA``, else ``../shared/data`` beside the repository. Without them they skip, or
fail where ``$UNETKIT_REQUIRE_ALL=1`` (required.py); with them they belong to the slow suite (``-m slow``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, TypeVar

import pytest
from required import missing

SAMPLE_DATA = Path(os.environ.get("UNETKIT_SAMPLE_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")

T = TypeVar("T")


def needs_sample(*names: str) -> Callable[[T], T]:
    """Mark a test slow and as needing the sample datasets ``names`` (folders of SAMPLE_DATA): the
    ``sample_data`` marker, checked before the test is set up (tests/conftest.py)."""
    return lambda test: pytest.mark.slow(pytest.mark.sample_data(*names)(test))


def check_samples(*names: str) -> None:
    """Skip (or, where required, fail) the running test unless SAMPLE_DATA holds ``names`` (none
    given: unless SAMPLE_DATA is there at all)."""
    absent = [str(SAMPLE_DATA / name) for name in names if not (SAMPLE_DATA / name).is_dir()]
    if not SAMPLE_DATA.is_dir():
        absent = [str(SAMPLE_DATA)]
    if absent:
        missing(f"no sample data at {', '.join(absent)} (set UNETKIT_SAMPLE_DATA)")
