"""Volume data: NIfTI and TIFF stacks read in z-y-x with their spacing, written back in the input's
format and geometry; the volume layouts; labels as classes or instances; inspect."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from volume_helpers import AFFINE, blob_volume, decathlon_folder, nifti_folder, save_nifti, save_tiff

from unetkit.data.inspect import format_inspection, inspect_dataset
from unetkit.data.layouts import discover
from unetkit.data.annotations import read_annotation
from unetkit.data.volumes import (
    Volume,
    is_volume_file,
    read_volume,
    read_volume_image,
    read_volume_labels,
    volume_stem,
    write_volume,
)
from unetkit.errors import DataError


def test_nifti_reads_z_y_x_with_the_header_spacing(tmp_path: Path) -> None:
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    volume = read_volume(save_nifti(tmp_path / "ct.nii.gz", array))
    np.testing.assert_array_equal(volume.array, array)
    assert volume.spacing == (2.5, 0.7, 0.8)  # z, y, x from the affine's x, y, z zooms


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_a_nifti_prediction_keeps_the_affine(tmp_path: Path, suffix: str) -> None:
    source = read_volume(save_nifti(tmp_path / f"in{suffix}", np.zeros((4, 5, 6), np.float32)))
    labels = np.random.default_rng(0).integers(0, 3, (4, 5, 6)).astype(np.uint8)
    written = read_volume(write_volume(tmp_path / f"out{suffix}", labels, source))
    np.testing.assert_array_equal(written.array, labels)
    assert written.array.dtype == np.uint8
    np.testing.assert_allclose(written.geometry["affine"], AFFINE)


def test_tiff_stack_spacing_from_imagej_and_ome_metadata(tmp_path: Path) -> None:
    array = np.zeros((3, 4, 5), np.uint16)
    assert read_volume(save_tiff(tmp_path / "imagej.tif", array, (2.0, 0.25, 0.5))).spacing == (2.0, 0.25, 0.5)
    tifffile.imwrite(tmp_path / "ome.ome.tif", array, photometric="minisblack", metadata={"axes": "ZYX", "PhysicalSizeZ": 3.0,
                                                                "PhysicalSizeY": 0.2, "PhysicalSizeX": 0.2})  # fmt: skip
    ome = read_volume(tmp_path / "ome.ome.tif")
    assert ome.spacing == (3.0, 0.2, 0.2) and ome.array.shape == (3, 4, 5)
    tifffile.imwrite(tmp_path / "plain.tif", array, photometric="minisblack")
    plain = read_volume(tmp_path / "plain.tif")
    assert plain.spacing == (1.0, 1.0, 1.0) and plain.array.shape == (3, 4, 5)


def test_a_tiff_prediction_keeps_the_spacing(tmp_path: Path) -> None:
    source = Volume(np.zeros((3, 4, 5, 1), np.uint8), (2.0, 0.25, 0.5))
    labels = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    written = read_volume(write_volume(tmp_path / "out.tif", labels, source))
    np.testing.assert_array_equal(written.array, labels)
    assert written.spacing == pytest.approx((2.0, 0.25, 0.5))


def test_channel_files_stack_and_must_match(tmp_path: Path) -> None:
    first = save_nifti(tmp_path / "a_0000.nii.gz", np.zeros((4, 5, 6), np.int16))
    second = save_nifti(tmp_path / "a_0001.nii.gz", np.ones((4, 5, 6), np.int16))
    image = read_volume_image([first, second])
    assert image.array.shape == (4, 5, 6, 2) and image.array.dtype == np.float32
    odd = save_nifti(tmp_path / "b.nii.gz", np.ones((4, 5, 7), np.int16))
    with pytest.raises(DataError, match="b.nii.gz: channel volume is 4x5x7"):
        read_volume_image([first, odd])


def test_bad_files_are_one_line_naming_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti")
    with pytest.raises(DataError, match="broken.nii.gz"):
        read_volume(broken)
    labels = save_nifti(tmp_path / "float.nii.gz", np.full((2, 2, 2), 0.5, np.float32))
    with pytest.raises(DataError, match="non-integer"):
        read_volume_labels(labels)
    with pytest.raises(DataError, match="more than the limit"):
        read_volume(labels, max_voxels=7)


def test_names_and_detection(tmp_path: Path) -> None:
    assert volume_stem("case_0000.nii.gz") == "case_0000" and volume_stem("x.tif") == "x"
    tifffile.imwrite(tmp_path / "flat.tif", np.zeros((4, 4), np.uint8))
    assert not is_volume_file(tmp_path / "flat.tif")
    assert is_volume_file(save_tiff(tmp_path / "stack.tif", np.zeros((2, 4, 4), np.uint8)))


def test_volume_folder_layout(tmp_path: Path) -> None:
    discovery = discover(nifti_folder(tmp_path, cases=2))
    assert discovery.layout == "volumes"
    assert [record.name for record in discovery.records] == ["case0", "case1"]
    semantic, instances = read_annotation(discovery.records[0])
    assert semantic.shape == (8, 24, 24) and instances is None and set(np.unique(semantic)) == {0, 1, 2}


def test_tiff_stacks_in_images_and_masks_are_volumes_not_2d_pages(tmp_path: Path) -> None:
    image, labels = blob_volume(0)
    save_tiff(tmp_path / "images" / "a.tif", image)
    save_tiff(tmp_path / "masks" / "a.tif", labels)
    assert discover(tmp_path).layout == "volumes"


def test_decathlon_layout_groups_channels_and_reads_dataset_json(tmp_path: Path) -> None:
    root = decathlon_folder(tmp_path, cases=2, channels=2, modality="CT")
    (root / "imagesTr" / "._organ_000_0000.nii.gz").write_bytes(b"macOS resource fork")
    discovery = discover(root)
    assert discovery.layout == "msd"
    assert discovery.labels.names == ["background", "organ", "tumour"]
    record = discovery.records[0]
    assert record.name == "organ_000" and len(record.extra["channels"]) == 2 and record.extra["modality"] == "CT"


def test_nnunet_v2_labels_and_a_missing_label_file(tmp_path: Path) -> None:
    root = decathlon_folder(tmp_path, cases=2, channels=1)
    (root / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "organ": 1}, "channel_names": {"0": "T2"}}))
    (root / "labelsTr" / "organ_001.nii.gz").unlink()
    discovery = discover(root)
    assert discovery.labels.names[:2] == ["background", "organ"] and discovery.labels.mode == "threshold"
    assert [record.name for record in discovery.records] == ["organ_000"]
    assert discovery.unmatched_images and discovery.records[0].extra["modality"] == "T2"


def test_instance_label_volumes_read_as_instances(tmp_path: Path) -> None:
    image, _ = blob_volume(0)
    instances = np.zeros(image.shape, np.uint16)
    for index in range(30):  # more values than classes ever have: instances
        instances[index % 8, index // 2 : index // 2 + 2, 3:5] = index + 300
    save_tiff(tmp_path / "images" / "cells.tif", image)
    save_tiff(tmp_path / "labels" / "cells.tif", instances)
    report = inspect_dataset(tmp_path)
    assert report["classes"] == [{"id": 0, "name": "background"}, {"id": 1, "name": "object"}]
    assert report["mask_values"].startswith("instance ids")


def test_inspect_shows_shape_spacing_and_intensities_per_volume(tmp_path: Path) -> None:
    report = inspect_dataset(nifti_folder(tmp_path, cases=2))
    first = report["volumes"][0]
    assert first["shape"] == [8, 24, 24] and first["spacing"] == [2.5, 0.7, 0.8]
    assert 0 <= first["intensity"]["p0.5"] < first["intensity"]["median"] < first["intensity"]["p99.5"] <= 255
    assert report["mask_values"] == [0, 1, 2]
    text = format_inspection(report)
    assert "case1" in text and "8x24x24" in text and "2.5 0.7 0.8" in text
