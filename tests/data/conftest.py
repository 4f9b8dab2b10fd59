"""Fixtures: tiny datasets in each published layout (see layout_factories) and the real samples."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

import layout_factories as factories


def _dataset_fixture(name: str, make: Callable[[Path], Path]):
    """A fixture ``name`` that writes ``make``'s dataset into a fresh ``tmp_path / name``."""

    @pytest.fixture(name=name)
    def dataset(tmp_path: Path) -> Path:
        return make(tmp_path / name)

    return dataset


folder_dataset = _dataset_fixture("folder_dataset", factories.make_folder_dataset)
carvana_dataset = _dataset_fixture("carvana_dataset", factories.make_carvana_dataset)
dsb_dataset = _dataset_fixture("dsb_dataset", factories.make_dsb_dataset)
pets_dataset = _dataset_fixture("pets_dataset", factories.make_pets_dataset)
isbi_dataset = _dataset_fixture("isbi_dataset", factories.make_isbi_dataset)
ctc_dataset = _dataset_fixture("ctc_dataset", factories.make_ctc_dataset)


@pytest.fixture
def real_data() -> Path:
    """The shared real samples (``<repo>/../shared/data``); the test is skipped without them."""
    if not factories.REAL_DATA.is_dir():
        pytest.skip(f"real data not found at {factories.REAL_DATA}")
    return factories.REAL_DATA.resolve()
