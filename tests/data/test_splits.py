from __future__ import annotations

import json
from pathlib import Path

import pytest

from unetkit.data.layouts import discover
from unetkit.data.records import Record
from unetkit.data.splits import split_records, write_split
from unetkit.errors import ConfigError, DataError


def _records(groups: int, per_group: int = 3) -> list[Record]:
    return [
        Record(Path(f"/data/images/g{group}_{view}.png"), (Path(f"/data/masks/g{group}_{view}.png"),), group=f"g{group}")
        for group in range(groups)
        for view in range(per_group)
    ]


def _groups(records: list[Record]) -> set[str]:
    return {record.group for record in records}


@pytest.mark.parametrize("groups, fraction, val_groups", [(10, 0.2, 2), (3, 0.2, 1), (3, 0.9, 2), (2, 0.5, 1), (5, 0.0, 0)])
def test_fraction_rounds_to_at_least_one_group_each_side(groups: int, fraction: float, val_groups: int) -> None:
    records = _records(groups)
    train, val = split_records(records, fraction, seed=0)
    assert len(_groups(val)) == val_groups
    assert not _groups(train) & _groups(val)
    assert sorted(train + val, key=records.index) == records


def test_split_is_deterministic_for_a_seed_and_keeps_input_order() -> None:
    records = _records(20)
    first = split_records(records, 0.25, seed=7)
    assert split_records(records, 0.25, seed=7) == first
    assert split_records(list(reversed(records)), 0.25, seed=7)[1] == list(reversed(first[1]))
    assert split_records(records, 0.25, seed=8)[1] != first[1]
    assert first[0] == sorted(first[0], key=records.index)


def test_records_without_group_are_their_own_group() -> None:
    records = [Record(Path(f"/d/{index}.png"), (Path(f"/d/m{index}.png"),)) for index in range(4)]
    train, val = split_records(records, 0.5, seed=0)
    assert len(train) == len(val) == 2


def test_one_group_cannot_be_split() -> None:
    with pytest.raises(DataError, match="1 group.*--val-data"):
        split_records(_records(1), 0.2, seed=0)
    assert split_records(_records(1), 0.0, seed=0) == (_records(1), [])


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_fraction_out_of_range_is_a_config_error(fraction: float) -> None:
    with pytest.raises(ConfigError, match="--val-fraction"):
        split_records(_records(3), fraction, seed=0)


def test_folds_cover_every_group_exactly_once() -> None:
    records = _records(11, per_group=2)
    seen: list[str] = []
    for fold in range(4):
        train, val = split_records(records, 0.2, seed=3, folds=4, fold=fold)
        assert not _groups(train) & _groups(val) and len(train) + len(val) == len(records)
        assert len(_groups(val)) in (2, 3)
        seen += sorted(_groups(val))
    assert sorted(seen) == sorted(_groups(records))


def test_bad_folds_are_errors() -> None:
    with pytest.raises(ConfigError, match="--fold 4"):
        split_records(_records(5), 0.2, seed=0, folds=4, fold=4)
    with pytest.raises(DataError, match="--folds 6 needs at least 6 groups"):
        split_records(_records(5), 0.2, seed=0, folds=6, fold=0)


def test_write_split_paths_relative_to_root_with_pages(tmp_path: Path) -> None:
    root = tmp_path / "data"
    train = [Record(root / "images" / "a.png", (root / "masks" / "a.png",))]
    val = [Record(root / "train-volume.tif", (root / "train-labels.tif",), page=3)]
    write_split(tmp_path / "run" / "split.json", train, val, root)
    assert json.loads((tmp_path / "run" / "split.json").read_text()) == {
        "train": ["images/a.png"],
        "val": ["train-volume.tif#3"],
    }


def test_real_carvana_cars_stay_on_one_side(real_data: Path) -> None:
    records = discover(real_data / "carvana").records
    for seed in range(5):
        train, val = split_records(records, 0.2, seed=seed)
        assert len(_groups(train)) == len(_groups(val)) == 1 and not _groups(train) & _groups(val)
        assert len(train) == len(val) == 16
