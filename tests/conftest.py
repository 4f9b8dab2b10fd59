"""Shared test settings: tiny models run faster on one thread than with OpenMP's start-up cost."""

import pytest
import torch
from required import check_browser
from sample_data import check_samples

torch.set_num_threads(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the published samples (the ``real_data`` fixture) run in the slow suite."""
    for item in items:
        if "real_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.sample_data())


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """What a ``sample_data`` or ``browser`` test needs is there, checked before its fixtures start
    anything: else it is skipped, or fails where $UNETKIT_REQUIRE_ALL is set (required.py)."""
    for mark in item.iter_markers("sample_data"):
        check_samples(*mark.args)
    if item.get_closest_marker("browser"):
        check_browser()


@pytest.fixture(autouse=True, scope="session")
def precision_cache(tmp_path_factory: pytest.TempPathFactory):
    """--precision auto caches its measurements in a folder of the session's, never the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UNETKIT_CACHE_DIR", str(tmp_path_factory.mktemp("unetkit-cache")))
        yield


@pytest.fixture(autouse=True, scope="session")
def short_timings():
    """Each precision or layout timing makes one call after its warm-up: tests that check a choice
    give it fake rates, the rest only need it to run (a full timing window per new shape added
    minutes to the suite)."""
    from unetkit.device import timing

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(timing, "MEASURE_SECONDS", 0.0)
        patch.setattr(timing, "MAX_CALLS", 1)
        yield
