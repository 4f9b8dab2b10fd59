"""Shared test settings: tiny models run faster on one thread than with OpenMP's start-up cost."""

import pytest
import torch

torch.set_num_threads(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the published samples (the ``real_data`` fixture) run in the slow suite."""
    for item in items:
        if "real_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True, scope="session")
def precision_cache(tmp_path_factory: pytest.TempPathFactory):
    """--precision auto caches its measurements in a folder of the session's, never the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UNETKIT_CACHE_DIR", str(tmp_path_factory.mktemp("unetkit-cache")))
        yield
