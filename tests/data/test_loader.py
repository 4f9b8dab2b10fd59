"""The training loader's batches: images of different sizes are a user's error with a fix, not a
torch traceback."""

from __future__ import annotations

import pytest
import torch

from unetkit.data.dataset import collate_same_size
from unetkit.errors import DataError


def item(name: str, height: int, width: int) -> dict:
    return {"image": torch.zeros(1, height, width), "mask": torch.zeros(height, width, dtype=torch.long), "name": name}


def test_images_of_one_size_make_a_batch():
    batch = collate_same_size([item("a", 8, 12), item("b", 8, 12)])
    assert batch["image"].shape == (2, 1, 8, 12) and batch["name"] == ["a", "b"]


def test_images_of_different_sizes_name_themselves_and_the_flags_that_fix_it():
    with pytest.raises(DataError, match=r"a \(12x8\), b \(16x8\).*--patch-size N.*--image-size N"):
        collate_same_size([item("a", 8, 12), item("b", 8, 16)])
