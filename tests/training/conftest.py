"""Fixtures of the training robustness tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from unetkit.data.synthetic import generate_dataset


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """10 generated 40x40 images: 8 train and 2 validation with the default split."""
    return generate_dataset(tmp_path_factory.mktemp("data") / "blobs", n_images=10, size=40, seed=1)
