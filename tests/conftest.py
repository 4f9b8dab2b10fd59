"""Shared test settings: tiny models run faster on one thread than with OpenMP's start-up cost."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def precision_cache(tmp_path_factory: pytest.TempPathFactory):
    """--precision auto caches its measurements in a folder of the session's, never the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UNETKIT_CACHE_DIR", str(tmp_path_factory.mktemp("unetkit-cache")))
        yield
