from __future__ import annotations

import numpy as np
import pytest

from unetkit.data import rle
from unetkit.errors import ConfigError, DataError

# ----------------------------------------------------------------------------------------- RLE

# Pixels numbered from 1:   row order       column order
#   0 1 1                   1 2 3           1 3 5
#   1 0 0                   4 5 6           2 4 6
#   0 0 1                   7 8 9
HAND_MASK = np.array([[0, 1, 1], [1, 0, 0], [0, 0, 1]], dtype=bool)
HAND_RLE = {"row": "2 3 9 1", "column": "2 1 4 1 7 1 9 1"}


@pytest.mark.parametrize("order", ["row", "column"])
def test_rle_matches_hand_computed_strings(order: str) -> None:
    assert rle.rle_encode(HAND_MASK, order) == HAND_RLE[order]
    np.testing.assert_array_equal(rle.rle_decode(HAND_RLE[order], HAND_MASK.shape, order), HAND_MASK)


def test_rle_column_order_on_a_non_square_mask() -> None:
    mask = np.array([[1, 0, 0, 1], [1, 0, 1, 1]], dtype=bool)  # columns: 1-2, 3-4, 5-6, 7-8
    assert rle.rle_encode(mask, "column") == "1 2 6 3"
    assert rle.rle_encode(mask, "row") == "1 1 4 2 7 2"


@pytest.mark.parametrize("order", ["row", "column"])
def test_rle_round_trips_random_masks(order: str) -> None:
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (5, 9), (17, 4)]:
        mask = rng.random(shape) > 0.5
        np.testing.assert_array_equal(rle.rle_decode(rle.rle_encode(mask, order), shape, order), mask)
    assert rle.rle_encode(np.zeros((3, 3), bool), order) == ""
    assert not rle.rle_decode("", (3, 3), order).any()


@pytest.mark.parametrize("bad", ["1", "0 2", "8 5", "a b"])
def test_rle_decode_refuses_malformed_strings(bad: str) -> None:
    with pytest.raises(DataError, match="RLE"):
        rle.rle_decode(bad, (3, 3))


def test_rle_unknown_order_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="row .*column"):
        rle.rle_encode(HAND_MASK, "diagonal")
