"""Train/validation splits by group, so near-duplicates (the views of one car, the frames of one
sequence) never sit on both sides; deterministic for a seed, with K-fold cross-validation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from unetkit.atomic import atomic_write_text
from unetkit.data.records import Record
from unetkit.errors import ConfigError, DataError


def group_of(record: Record) -> str:
    """A record's group; one without a group is its own."""
    return record.group or record.name


def split_records(
    records: list[Record], val_fraction: float, seed: int, folds: int = 0, fold: int = 0
) -> tuple[list[Record], list[Record]]:
    """Split ``records`` into (train, val) by group, keeping each side in the input order.

    ``folds > 0``: the groups are dealt into ``folds`` folds and fold ``fold`` is validation.
    Otherwise ``val_fraction`` of the groups (rounded, at least one on each side) is validation.
    """
    groups = sorted({group_of(record) for record in records})
    shuffled = [groups[index] for index in np.random.default_rng(seed).permutation(len(groups))]
    if folds > 0:
        val_groups = _fold_groups(shuffled, folds, fold)
    else:
        val_groups = shuffled[: _val_group_count(len(groups), val_fraction)]
    chosen = set(val_groups)
    train = [record for record in records if group_of(record) not in chosen]
    val = [record for record in records if group_of(record) in chosen]
    return train, val


def _val_group_count(groups: int, val_fraction: float) -> int:
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"--val-fraction {val_fraction} must lie in [0, 1)")
    if val_fraction == 0.0:
        return 0
    if groups < 2:
        raise DataError(
            f"the data holds {groups} group(s), too few to split off validation; "
            f"pass --val-data DIR or --val-fraction 0"
        )
    return min(max(round(val_fraction * groups), 1), groups - 1)


def _fold_groups(shuffled: list[str], folds: int, fold: int) -> list[str]:
    if not 0 <= fold < folds:
        raise ConfigError(f"--fold {fold} must lie in 0..{folds - 1} for --folds {folds}")
    if folds > len(shuffled):
        raise DataError(f"--folds {folds} needs at least {folds} groups but the data holds {len(shuffled)}; use fewer folds")
    return list(np.array_split(np.array(shuffled, dtype=object), folds)[fold])


def split_entry(record: Record, root: Path) -> str:
    """A record's image path relative to ``root`` (``path#page`` for a page of a volume)."""
    relative = Path(os.path.relpath(record.image, root)).as_posix()
    return relative if record.page is None else f"{relative}#{record.page}"


def write_split(path: str | Path, train: list[Record], val: list[Record], root: str | Path) -> None:
    """Write ``{"train": [...], "val": [...]}``, image paths relative to the data root."""
    split = {side: [split_entry(record, Path(root)) for record in records] for side, records in (("train", train), ("val", val))}
    atomic_write_text(path, json.dumps(split, indent=1) + "\n")
