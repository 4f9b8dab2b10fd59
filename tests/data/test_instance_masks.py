"""Masks that are instance label images (0 = background, 1..n = objects, often 16-bit), in a plain
images/masks folder: read as objects (a binary task with instances), not as one class per value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from layout_factories import instances_for, random_image, save_array
from unetkit.config import Config
from unetkit.data.annotations import read_annotation
from unetkit.errors import DataError
from unetkit.data.prepare import discover_data, prepare_data


def label_image_folder(root: Path, objects: int, dtype=np.uint16) -> Path:
    for index in range(6):
        save_array(root / "images" / f"cell{index}.png", random_image(index, 48))
        labels = instances_for(index, 48, objects) + np.where(instances_for(index, 48, objects) > 0, 100 * index, 0)
        save_array(root / "masks" / f"cell{index}.png", labels.astype(dtype))
    return root


def config_for(data: Path, masks: str = "auto") -> Config:
    config = Config()
    config.data.path, config.data.masks = str(data), masks
    return config


def test_label_images_are_read_as_instances_and_the_checkpointed_config_reads_them_again(tmp_path):
    data = label_image_folder(tmp_path / "cells", objects=3)
    prepared = prepare_data(config_for(data), classes=None, in_channels=None)
    assert prepared.config.data.masks == "instances" and prepared.config.model.classes == 1
    record = prepared.train[0]
    semantic, instances = read_annotation(record)
    assert instances is not None and len(np.unique(instances)) == 4  # background and 3 objects
    assert set(np.unique(semantic)) == {0, 1}
    again = discover_data(prepared.config, str(data)).records  # evaluate and predict discover this way
    assert all(r.mask_kind == "instances" for r in again)


def test_a_few_values_stay_classes_and_the_choice_can_be_forced(tmp_path):
    few = label_image_folder(tmp_path / "few", objects=1, dtype=np.uint8)  # values 0, 1, 101, 201...: 7 values
    assert prepare_data(config_for(few), None, None).config.data.masks == "classes"
    forced = prepare_data(config_for(few, "instances"), None, None)
    assert forced.config.data.masks == "instances" and forced.config.model.classes == 1
    many = label_image_folder(tmp_path / "many", objects=3)
    with pytest.raises(DataError, match="distinct values"):
        prepare_data(config_for(many, "classes"), classes=2, in_channels=None)
