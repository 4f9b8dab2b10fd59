"""read_annotation: every way a dataset annotates a record, read into (semantic, instances)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from layout_factories import instances_for, random_image, save_array
from unetkit.data.annotations import read_annotation
from unetkit.data.records import Record
from unetkit.errors import DataError


def test_read_annotation_semantic_with_and_without_companion_instances(tmp_path: Path) -> None:
    instances = instances_for(0, 16)
    image = save_array(tmp_path / "image.png", random_image(0, 16))
    mask = save_array(tmp_path / "mask.png", np.where(instances > 0, 255, 0).astype(np.uint8))
    labels = save_array(tmp_path / "labels.png", instances.astype(np.uint16))
    semantic, none = read_annotation(Record(image, (mask,)))
    assert none is None and set(np.unique(semantic)) == {0, 255}
    semantic, found = read_annotation(Record(image, (mask,), extra={"instances": labels}))
    np.testing.assert_array_equal(found, instances)


def test_read_annotation_instances_give_a_binary_semantic_mask(tmp_path: Path) -> None:
    instances = instances_for(1, 16)
    labels = save_array(tmp_path / "man_seg000.tif", instances.astype(np.uint16))
    semantic, found = read_annotation(Record(tmp_path / "t000.tif", (labels,), mask_kind="instances"))
    assert found.dtype == np.int32 and semantic.dtype == np.uint8
    np.testing.assert_array_equal(found, instances)
    np.testing.assert_array_equal(semantic, instances > 0)


def test_read_annotation_stacks_instance_files_first_object_keeps_overlaps(tmp_path: Path) -> None:
    image = save_array(tmp_path / "image.png", random_image(0, (4, 6), 4))
    first = np.zeros((4, 6), dtype=np.uint8)
    first[0:2, 0:3] = 255
    second = np.zeros((4, 6), dtype=np.uint8)
    second[1:4, 2:6] = 255
    masks = (save_array(tmp_path / "a.png", first), save_array(tmp_path / "b.png", second))
    semantic, instances = read_annotation(Record(image, masks, mask_kind="instance_files"))
    assert instances[1, 2] == 1 and instances[3, 5] == 2 and instances[3, 0] == 0
    assert np.count_nonzero(instances == 2) == 3 * 4 - 1
    np.testing.assert_array_equal(semantic, (first > 0) | (second > 0))


def test_read_annotation_without_object_files_is_all_background_of_the_image_size(tmp_path: Path) -> None:
    image = save_array(tmp_path / "image.png", random_image(0, (5, 7), 3))
    semantic, instances = read_annotation(Record(image, (), mask_kind="instance_files"))  # DSB empty masks/
    assert instances.shape == (5, 7) and not instances.any() and not semantic.any()


def test_read_annotation_errors_name_the_files(tmp_path: Path) -> None:
    image = save_array(tmp_path / "image.png", random_image(0, (4, 6)))
    small = save_array(tmp_path / "small.png", np.zeros((3, 3), dtype=np.uint8))
    with pytest.raises(DataError, match="small.png is 3x3 but its image .*image.png is 6x4"):
        read_annotation(Record(image, (small,), mask_kind="instance_files"))
    with pytest.raises(DataError, match="image.png has no mask"):
        read_annotation(Record(image))
