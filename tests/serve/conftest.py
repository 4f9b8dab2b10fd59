"""Fixtures of the serve tests: a tiny checkpoint, a predictor for it, the app behind a TestClient."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from required import import_or_missing

# [serve] is in [dev]: where $UNETKIT_REQUIRE_ALL is set (CI) a missing web stack stops the run.
import_or_missing("fastapi", "the web stack is the [serve] extra: pip install 'unetkit[serve]'")

from fastapi.testclient import TestClient  # noqa: E402
from web_helpers import IMAGE_SIZE, tiny_checkpoint  # noqa: E402

from unetkit.inference.predictor import Predictor  # noqa: E402
from unetkit.serve.app import ServeLimits, create_app  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("serve") / "tiny.pt")


@pytest.fixture(scope="module")
def client(checkpoint: Path) -> TestClient:
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu", precision="32")
    limits = ServeLimits(max_upload_bytes=2**20, max_pixels=512 * 512, max_queue=4)
    with TestClient(create_app(predictor, limits=limits)) as client:
        yield client


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE + 8), dtype=np.uint8)
