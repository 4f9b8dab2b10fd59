"""Fixtures: tiny datasets in each published layout (see layout_factories) and the real samples."""

from __future__ import annotations

from pathlib import Path

import pytest

import layout_factories as factories


@pytest.fixture
def folder_dataset(tmp_path: Path) -> Path:
    return factories.make_folder_dataset(tmp_path / "folder")


@pytest.fixture
def carvana_dataset(tmp_path: Path) -> Path:
    return factories.make_carvana_dataset(tmp_path / "carvana")


@pytest.fixture
def dsb_dataset(tmp_path: Path) -> Path:
    return factories.make_dsb_dataset(tmp_path / "dsb2018")


@pytest.fixture
def pets_dataset(tmp_path: Path) -> Path:
    return factories.make_pets_dataset(tmp_path / "pets")


@pytest.fixture
def isbi_dataset(tmp_path: Path) -> Path:
    return factories.make_isbi_dataset(tmp_path / "isbi2012")


@pytest.fixture
def ctc_dataset(tmp_path: Path) -> Path:
    return factories.make_ctc_dataset(tmp_path / "ctc")


@pytest.fixture
def real_data() -> Path:
    """The shared real samples (``<repo>/../shared/data``); the test is skipped without them."""
    if not factories.REAL_DATA.is_dir():
        pytest.skip(f"real data not found at {factories.REAL_DATA}")
    return factories.REAL_DATA.resolve()
