"""Kaggle run-length encoding of binary masks (Carvana: row order; DSB-2018: column order)."""

from __future__ import annotations

from typing import Literal

import numpy as np

from unetkit.config import RleOrder
from unetkit.errors import ConfigError, DataError


def rle_encode(mask: np.ndarray, order: RleOrder = "row") -> str:
    """Kaggle run-length encoding: 1-based ``start length`` pairs over the flattened mask.

    ``row``: row by row, left to right (Carvana). ``column``: column by column, top to bottom (DSB-2018).
    """
    flat = np.asarray(mask, dtype=bool).ravel(order=_numpy_order(order))
    padded = np.concatenate([[False], flat, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1]) + 1  # alternating 1-based starts and run ends
    edges[1::2] -= edges[::2]
    return " ".join(str(value) for value in edges)


def rle_decode(rle: str, shape: tuple[int, int], order: RleOrder = "row") -> np.ndarray:
    """Inverse of :func:`rle_encode`: a bool mask of ``shape`` (H, W)."""
    height, width = shape
    try:
        numbers = np.array([int(token) for token in str(rle).split()], dtype=np.int64)
    except ValueError as error:
        raise DataError(f"invalid RLE {str(rle)[:40]!r}: {error}; expected 'start length' integer pairs") from error
    starts, lengths = numbers[0::2], numbers[1::2]
    total = height * width
    if len(numbers) % 2 or np.any(starts < 1) or np.any(lengths < 0) or np.any(starts + lengths - 1 > total):
        raise DataError(
            f"invalid RLE {str(rle)[:40]!r} for a {width}x{height} mask; expected 1-based 'start length' pairs within it"
        )
    flat = np.zeros(total + 1, dtype=np.int32)
    np.add.at(flat, starts - 1, 1)
    np.add.at(flat, starts - 1 + lengths, -1)
    covered = np.cumsum(flat[:-1]) > 0
    return covered.reshape(shape, order=_numpy_order(order))


def _numpy_order(order: str) -> Literal["C", "F"]:
    if order not in ("row", "column"):
        raise ConfigError(f"unknown RLE order {order!r}; use row (Carvana) or column (DSB-2018)")
    return "C" if order == "row" else "F"
