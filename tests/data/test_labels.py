from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from layout_factories import banded_mask, make_folder_dataset, mask_for, save_array
from unetkit.data.labels import infer_labels
from unetkit.data.layouts import discover
from unetkit.data.records import Record, map_labels
from unetkit.errors import DataError


def _records(folder: Path, masks: list[np.ndarray], ext: str = "png") -> list[Record]:
    """Records whose masks are ``masks`` (the images are never read by the label scan)."""
    return [
        Record(folder / f"image_{index}.png", (save_array(folder / f"mask_{index}.{ext}", mask),))
        for index, mask in enumerate(masks)
    ]


@pytest.mark.parametrize("foreground", [1, 255])
def test_binary_masks_give_a_threshold_at_1(tmp_path: Path, foreground: int) -> None:
    records = _records(tmp_path, [mask_for(0, 16, foreground), np.zeros((16, 16), np.uint8)])
    labels, seen = infer_labels(records)
    assert (labels.mode, labels.threshold, seen) == ("threshold", 1, [0, foreground])
    assert set(np.unique(map_labels(np.array([0, foreground]), labels))) == {0, 1}


def test_two_values_without_zero_map_low_to_background(tmp_path: Path) -> None:
    labels, seen = infer_labels(_records(tmp_path, [banded_mask(8, [1, 2])]))
    assert seen == [1, 2] and labels.values == {1: 0, 2: 1}


def test_more_values_give_one_class_each_in_sorted_order(tmp_path: Path) -> None:
    records = _records(tmp_path, [banded_mask(8, [0, 128]), banded_mask(8, [0, 255])])
    labels, seen = infer_labels(records)
    assert seen == [0, 128, 255]
    assert labels.values == {0: 0, 128: 1, 255: 2}
    assert labels.names == ["background", "class_128", "class_255"]


def test_values_that_are_class_ids_keep_their_ids(tmp_path: Path) -> None:
    labels, _ = infer_labels(_records(tmp_path, [banded_mask(8, [0, 2, 3])]), classes=4)
    assert labels.values == {0: 0, 2: 2, 3: 3}
    assert labels.names == ["background", "class_1", "class_2", "class_3"]


def test_fewer_values_than_classes_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="unetkit.data.labels"):
        labels, _ = infer_labels(_records(tmp_path, [banded_mask(8, [0, 1])]), classes=3)
    assert labels.values == {0: 0, 1: 1} and len(labels.names) == 3
    assert "3 classes were asked for" in caplog.text


@pytest.mark.parametrize("classes, asked", [(1, "binary"), (2, "binary"), (3, "3 classes")])
def test_more_values_than_classes_names_a_file_and_the_fix(tmp_path: Path, classes: int, asked: str) -> None:
    records = _records(tmp_path, [banded_mask(8, [0, 1]), banded_mask(8, [0, 1, 2, 3])])
    with pytest.raises(DataError) as error:
        infer_labels(records, classes=classes)
    message = str(error.value)
    assert asked in message and "mask_1.png has values [0, 1, 2, 3]" in message and "--classes 4" in message


def test_jpeg_masks_are_thresholded_at_128(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path, n=2, ext="jpg")
    labels, seen = infer_labels(discover(root).records)
    assert (labels.mode, labels.threshold) == ("threshold", 128)
    assert len(seen) > 2  # compression noise, which the threshold absorbs


def test_jpeg_masks_cannot_be_multiclass_nor_mixed_with_png(tmp_path: Path) -> None:
    jpegs = _records(tmp_path, [mask_for(0, 16)], "jpg")
    with pytest.raises(DataError, match="JPEG masks .*can only be binary.*PNG"):
        infer_labels(jpegs, classes=3)
    with pytest.raises(DataError, match="mix JPEG and lossless"):
        infer_labels(jpegs + _records(tmp_path / "png", [mask_for(1, 16)]))


def test_labels_map_every_scanned_mask(tmp_path: Path) -> None:
    masks = [banded_mask(9, [0, 10, 20]), banded_mask(9, [20, 30])]
    labels, _ = infer_labels(_records(tmp_path, masks))
    for mask in masks:
        assert set(np.unique(map_labels(mask, labels))) <= {0, 1, 2, 3}


def test_records_without_masks_are_skipped(tmp_path: Path) -> None:
    records = _records(tmp_path, [mask_for(0, 8)]) + [Record(tmp_path / "unlabelled.png")]
    assert infer_labels(records)[1] == [0, 255]
