"""What some tests need from outside the repository: the published sample datasets (sample_data.py,
marker ``sample_data``), Playwright and a chromium (marker ``browser``), the web stack of the
``[serve]`` extra. Where one is missing the test is skipped and the reason says what to install;
where ``$UNETKIT_REQUIRE_ALL=1`` (``.ci/run`` sets it) the test fails with that reason instead, so a
green CI run means these tests ran.

Skips that stay skips whatever the variable says are the ones the platform decides (a message only a
machine without CUDA gives, glibc's allocator); they are ``skipif`` marks beside their tests that say why.
"""

from __future__ import annotations

import importlib
import os
import shutil
from types import ModuleType
from typing import NoReturn

import pytest

REQUIRE_ALL = "UNETKIT_REQUIRE_ALL"
CHROMIUM = "UNETKIT_CHROMIUM"


def required() -> bool:
    """Whether missing requirements fail the tests that need them (``$UNETKIT_REQUIRE_ALL`` set, not 0)."""
    return os.environ.get(REQUIRE_ALL, "").strip() not in ("", "0")


def missing(reason: str) -> NoReturn:
    """Skip the running test with ``reason``; fail it instead where ``$UNETKIT_REQUIRE_ALL`` is set."""
    if required():
        pytest.fail(f"{reason} ({REQUIRE_ALL} is set: a test that cannot run fails)", pytrace=False)
    pytest.skip(reason)


def import_or_missing(name: str, reason: str) -> ModuleType:
    """Module ``name`` for a test module or conftest: where it cannot be imported, the module's tests
    are skipped with ``reason``, or (``$UNETKIT_REQUIRE_ALL``) the ImportError stops the run."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        if required():
            raise ImportError(f"{reason} ({REQUIRE_ALL} is set): {error}") from error
        pytest.skip(reason, allow_module_level=True)


def chromium_path() -> str | None:
    """``$UNETKIT_CHROMIUM`` where set (and nothing else then), else Debian's chromium on the PATH;
    None where there is none."""
    if CHROMIUM in os.environ:
        return os.environ[CHROMIUM] if os.path.isfile(os.environ[CHROMIUM]) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def check_browser() -> None:
    """What the browser tests need: Playwright (in ``[dev]``) and a chromium."""
    try:
        importlib.import_module("playwright.sync_api")
    except ImportError:
        missing("the browser tests need playwright: pip install playwright (it is in [dev])")
    if chromium_path() is None:
        where = f" at ${CHROMIUM}={os.environ[CHROMIUM]}" if CHROMIUM in os.environ else ""
        missing(f"no chromium found{where}: apt-get install chromium (or set {CHROMIUM})")
