"""Fixtures: tiny datasets in each published layout (see layout_factories) and the real samples."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

import layout_factories as factories
from sample_data import SAMPLE_DATA, check_samples


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
    """The published samples (sample_data.SAMPLE_DATA); without them the test is skipped (failed
    where $UNETKIT_REQUIRE_ALL is set)."""
    check_samples()
    return SAMPLE_DATA.resolve()
