from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import layout_factories as factories
from unetkit.config import DataConfig, LabelConfig
from unetkit.data.inspect import describe_classes, format_inspection, inspect_dataset

REPORT_KEYS = {
    "layout", "root", "pairs", "val_pairs", "groups", "image_sizes", "image_kinds", "mask_values",
    "labels_from", "classes", "objects", "unmatched", "warnings",
}


def test_report_of_a_folder_dataset(folder_dataset: Path) -> None:
    report = inspect_dataset(folder_dataset)
    assert set(report) == REPORT_KEYS
    assert json.loads(json.dumps(report)) == report
    assert (report["layout"], report["pairs"], report["val_pairs"], report["groups"]) == ("folder", 4, 0, 4)
    assert report["image_sizes"] == {"32x32": 4} and report["image_kinds"] == {"L": 4}
    assert report["mask_values"] == [0, 255] and report["labels_from"] == "masks"
    assert report["classes"] == [
        {"id": 0, "name": "background", "raw": "< 1"},
        {"id": 1, "name": "foreground", "raw": ">= 1"},
    ]
    assert report["objects"] == {"count": 8, "tiny": 0, "tiny_below_pixels": 10}
    assert report["unmatched"] == {"images": [], "masks": []} and report["warnings"] == []


def test_layout_labels_and_ignore_values_are_described(pets_dataset: Path) -> None:
    report = inspect_dataset(pets_dataset, data=DataConfig(pets_mode="binary-ignore"))
    assert report["labels_from"] == "layout" and report["mask_values"] == [1, 2, 3]
    assert report["classes"] == [
        {"id": 0, "name": "background", "raw": "2"},
        {"id": 1, "name": "pet", "raw": "1"},
        {"id": 255, "name": "ignore", "raw": "3"},
    ]


def test_inverted_threshold_is_described() -> None:
    rows = describe_classes(LabelConfig(threshold=128, invert=True, names=["background", "membrane"]))
    assert [row["raw"] for row in rows] == [">= 128", "< 128"]


def test_given_classes_are_used_for_scanned_labels(tmp_path: Path) -> None:
    root = factories.make_folder_dataset(tmp_path, n=2, mask_values=[0, 1, 2])
    report = inspect_dataset(root, classes=4)
    assert [row["name"] for row in report["classes"]] == ["background", "class_1", "class_2", "class_3"]


@pytest.fixture
def troubled_dataset(tmp_path: Path) -> Path:
    """16-bit images, JPEG masks with compression noise and one speck of an object."""
    root = tmp_path / "troubled"
    for index in range(2):
        factories.save_array(root / "images" / f"s{index}.png", factories.random_image(index, 32, dtype=np.uint16))
        mask = factories.mask_for(index, 32)
        mask[30, 30] = 255  # a one-pixel object
        factories.save_array(root / "masks" / f"s{index}.jpg", mask)
    factories.save_array(root / "masks" / "stray.png", factories.mask_for(0, 32))
    return root


def test_warnings_for_things_that_hurt_training(troubled_dataset: Path) -> None:
    report = inspect_dataset(troubled_dataset)
    warnings = "\n".join(report["warnings"])
    assert "2 JPEG mask(s) hold values besides 0 and 255" in warnings
    assert "2 image(s) are 16-bit" in warnings
    assert "object(s) smaller than 10 pixels in 2 mask(s)" in warnings
    assert "1 masks without an image" in warnings and report["unmatched"]["masks"][0].endswith("stray.png")
    assert report["image_kinds"] == {"I;16": 2}


def test_empty_dsb_masks_and_unmapped_values_are_warned(tmp_path: Path) -> None:
    dsb = inspect_dataset(factories.make_dsb_dataset(tmp_path / "dsb", n=3, empty=1))
    assert any("masks is empty" in warning for warning in dsb["warnings"])
    assert dsb["objects"]["count"] == 4 and dsb["image_kinds"] == {"RGBA": 3}
    pets = factories.make_pets_dataset(tmp_path / "pets", n=2, lists=False)
    factories.save_array(pets / "annotations" / "trimaps" / "beagle_2.png", factories.banded_mask(32, [1, 2, 7]))
    (warning,) = inspect_dataset(pets)["warnings"]
    assert "beagle_2.png" in warning and "[7]" in warning


def test_format_inspection_is_an_aligned_table(isbi_dataset: Path) -> None:
    text = format_inspection(inspect_dataset(isbi_dataset))
    lines = text.splitlines()
    assert lines[0].startswith("layout") and "isbi2012" in lines[0]
    assert any("membrane" in line and "raw < 128" in line for line in lines)
    assert any(line.startswith("warnings") and line.endswith("none") for line in lines)
    value_column = lines[0].index("isbi2012")
    assert all(line[:value_column].strip() == "" or line[value_column - 1] == " " for line in lines)


@pytest.mark.parametrize("name, layout", [("isbi2012", "isbi2012"), ("carvana", "carvana")])
def test_real_samples(real_data: Path, name: str, layout: str) -> None:
    report = inspect_dataset(real_data / name)
    assert report["layout"] == layout and report["labels_from"] == "layout"
    assert len(report["classes"]) == 2 and format_inspection(report)
