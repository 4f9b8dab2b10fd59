from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import tifffile

import layout_factories as factories
from unetkit.config import DataConfig
from unetkit.data.annotations import read_annotation
from unetkit.data.reading import read_image
from unetkit.data.layouts import LAYOUTS, discover
from unetkit.data.records import map_labels
from unetkit.errors import ConfigError, DataError


@dataclass(frozen=True)
class LayoutCase:
    """A generated dataset and what discover() must find in it."""

    make: Callable[[Path], Path]
    layout: str
    pairs: int
    val_pairs: int
    groups: int
    mask_kind: str = "semantic"
    classes: tuple[str, ...] | None = None  # fixed by the layout; None: scanned


CASES = {
    "folder": LayoutCase(factories.make_folder_dataset, "folder", 4, 0, 4),
    "folder train/val": LayoutCase(lambda root: factories.make_folder_dataset(root, split=True), "folder", 4, 2, 6),
    "carvana": LayoutCase(factories.make_carvana_dataset, "carvana", 8, 0, 2, classes=("background", "car")),
    "dsb2018": LayoutCase(factories.make_dsb_dataset, "dsb2018", 3, 0, 3, "instance_files", ("background", "nucleus")),
    "dsb2018 flat": LayoutCase(
        lambda root: factories.make_dsb_dataset(root, stage=False), "dsb2018", 3, 0, 3, "instance_files",
        ("background", "nucleus"),
    ),
    "pets": LayoutCase(factories.make_pets_dataset, "pets", 2, 2, 4, classes=("background", "pet", "border")),
    "isbi2012": LayoutCase(factories.make_isbi_dataset, "isbi2012", 3, 0, 3, classes=("background", "membrane")),
    "isbi2012 volume": LayoutCase(
        lambda root: factories.make_isbi_dataset(root, volume=True), "isbi2012", 3, 0, 3,
        classes=("background", "membrane"),
    ),
    "ctc": LayoutCase(factories.make_ctc_dataset, "ctc", 4, 0, 2, "instances", ("background", "cell")),
}


def _files(root: Path) -> dict[Path, float]:
    return {path: path.stat().st_mtime_ns for path in root.rglob("*")}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
class TestEveryLayout:
    """Each layout, generated in its exact published form, is detected and read as it is."""

    def test_detected_with_the_expected_records(self, tmp_path: Path, case: LayoutCase) -> None:
        root = case.make(tmp_path / "data")
        before = _files(root)
        found = discover(root)
        assert found.layout == case.layout and found.root == root
        assert (len(found.records), len(found.val_records)) == (case.pairs, case.val_pairs)
        assert len({record.group for record in found.records + found.val_records}) == case.groups
        assert {record.mask_kind for record in found.records} == {case.mask_kind}
        assert found.labels is None if case.classes is None else tuple(found.labels.names) == case.classes
        assert not found.warnings and not found.unmatched_images and not found.unmatched_masks
        assert _files(root) == before  # nothing written into the dataset folder

    def test_named_layout_gives_the_same_records(self, tmp_path: Path, case: LayoutCase) -> None:
        root = case.make(tmp_path / "data")
        assert discover(root, case.layout).records == discover(root).records

    def test_every_record_reads_with_a_mask_of_its_image_size(self, tmp_path: Path, case: LayoutCase) -> None:
        found = discover(case.make(tmp_path / "data"))
        for record in found.records + found.val_records:
            image = read_image(record.image, record.page)
            semantic, instances = read_annotation(record)
            assert semantic.shape == image.shape[:2]
            if found.labels is not None:
                classes = map_labels(semantic, found.labels)
                assert 0 < np.count_nonzero(classes == 1) < classes.size
            if case.mask_kind != "semantic":
                assert instances.max() == 2  # both generated objects


# ----------------------------------------------------------------------------------- folder


@pytest.mark.parametrize("suffix", ["_mask", "_label", "_labels", "_seg", "_gt", "-mask", "_MASK"])
def test_folder_masks_may_carry_a_suffix(tmp_path: Path, suffix: str) -> None:
    root = factories.make_folder_dataset(tmp_path, n=2, mask_suffix=suffix)
    records = discover(root).records
    assert [record.masks[0].name for record in records] == [f"sample_00{i}{suffix}.png" for i in range(2)]


def test_folder_extensions_are_case_insensitive_and_may_differ(tmp_path: Path) -> None:
    root = factories.make_folder_dataset(tmp_path, n=2, ext="JPG", mask_ext="tif")
    assert [record.image.suffix for record in discover(root).records] == [".JPG", ".JPG"]


def test_folder_instances_folder_becomes_a_companion(tmp_path: Path) -> None:
    root = factories.make_folder_dataset(tmp_path, n=2, instances=True)
    record = discover(root).records[0]
    assert record.extra["instances"] == root / "instances" / "sample_000.png"
    _, instances = read_annotation(record)
    assert instances.max() == 2


@pytest.fixture
def folder_with_strays(tmp_path: Path) -> Path:
    root = factories.make_folder_dataset(tmp_path, n=3)
    (root / "masks" / "sample_001.png").unlink()
    factories.save_array(root / "masks" / "orphan_mask.png", factories.mask_for(0, 8))
    (root / "images" / "notes.txt").write_text("not an image")
    return root


def test_unmatched_files_are_listed_in_warnings(folder_with_strays: Path) -> None:
    found = discover(folder_with_strays)
    assert [record.image.name for record in found.records] == ["sample_000.png", "sample_002.png"]
    assert [path.name for path in found.unmatched_images] == ["sample_001.png"]
    assert [path.name for path in found.unmatched_masks] == ["orphan_mask.png"]
    assert any("1 images without a mask" in warning and "sample_001.png" in warning for warning in found.warnings)
    assert any("orphan_mask.png" in warning for warning in found.warnings)


def test_strict_turns_unmatched_files_into_an_error(folder_with_strays: Path) -> None:
    with pytest.raises(DataError, match="images without a mask.*sample_001.png.*--strict"):
        discover(folder_with_strays, strict=True)


def test_unmatched_lists_show_ten_and_count_the_rest(tmp_path: Path) -> None:
    root = factories.make_folder_dataset(tmp_path, n=1)
    for index in range(13):
        factories.save_array(root / "images" / f"extra_{index:02d}.png", factories.random_image(index, 4))
    (warning,) = discover(root).warnings
    assert "13 images without a mask" in warning and "extra_09.png" in warning
    assert "extra_10.png" not in warning and "and 3 more" in warning


# -------------------------------------------------------------------------------- the others


@pytest.mark.parametrize("name", LAYOUTS)
def test_a_layout_takes_the_data_options_it_declares(name: str) -> None:
    layout = LAYOUTS[name]
    assert set(layout.options) <= {field.name for field in dataclasses.fields(DataConfig)}
    assert list(inspect.signature(layout.collect).parameters) == ["root", *layout.options]


@pytest.mark.parametrize(
    "mode, values, ignored",
    [("trimap", {2: 0, 1: 1, 3: 2}, []), ("binary", {2: 0, 1: 1, 3: 1}, []), ("binary-ignore", {2: 0, 1: 1}, [3])],
)
def test_pets_modes(pets_dataset: Path, mode: str, values: dict[int, int], ignored: list[int]) -> None:
    labels = discover(pets_dataset, data=DataConfig(pets_mode=mode)).labels
    assert (labels.mode, labels.values, labels.ignore_values) == ("values", values, ignored)


def test_pets_without_split_lists_uses_every_image(tmp_path: Path) -> None:
    found = discover(factories.make_pets_dataset(tmp_path, n=4, lists=False))
    assert len(found.records) == 4 and not found.val_records
    assert "._Abyssinian_1.jpg" not in {record.image.name for record in found.records}


def test_pets_lists_split_records(pets_dataset: Path) -> None:
    found = discover(pets_dataset)
    assert [record.image.stem for record in found.records] == ["Abyssinian_1", "beagle_2"]
    assert [record.image.stem for record in found.val_records] == ["Abyssinian_3", "beagle_4"]


def test_carvana_groups_are_car_ids(carvana_dataset: Path) -> None:
    groups = [record.group for record in discover(carvana_dataset).records]
    assert groups == ["0cdf5b5d0ce1"] * 4 + ["f7ad86e13ed7"] * 4


def test_dsb_empty_masks_folder_is_kept_with_a_warning(tmp_path: Path) -> None:
    found = discover(factories.make_dsb_dataset(tmp_path, n=3, empty=1))
    assert len(found.records) == 3 and found.records[-1].masks == ()
    (warning,) = found.warnings
    assert "masks is empty" in warning and "00000002abc" in warning
    _, instances = read_annotation(found.records[-1])
    assert not instances.any()


def test_isbi_volume_records_are_pages(tmp_path: Path) -> None:
    found = discover(factories.make_isbi_dataset(tmp_path, n=3, volume=True))
    assert [record.page for record in found.records] == [0, 1, 2]
    assert [record.name for record in found.records] == ["train-volume_0000", "train-volume_0001", "train-volume_0002"]
    assert found.labels.invert and found.labels.threshold == 128


def test_isbi_volume_without_matching_labels_is_an_error(tmp_path: Path) -> None:
    root = factories.make_isbi_dataset(tmp_path, n=3, volume=True)
    tifffile.imwrite(root / "train-labels.tif", np.zeros((2, 8, 8), np.uint8), photometric="minisblack")
    with pytest.raises(DataError, match="3 pages but .*train-labels.tif has 2"):
        discover(root)
    (root / "train-labels.tif").unlink()
    with pytest.raises(DataError, match="no train-labels.tif"):
        discover(root)


def test_isbi_slices_in_numeric_order(tmp_path: Path) -> None:
    root = factories.make_isbi_dataset(tmp_path, n=12)
    assert [record.image.stem for record in discover(root).records] == [str(index) for index in range(12)]


@pytest.mark.parametrize("truth, frames", [("gold", [0, 2]), ("silver", [0, 1, 2, 3]), ("both", [0, 1, 2, 3])])
def test_ctc_truth_choice(ctc_dataset: Path, truth: str, frames: list[int]) -> None:
    found = discover(ctc_dataset, data=DataConfig(ctc_truth=truth))
    records = [record for record in found.records if record.group == "01"]
    assert [record.image.name for record in records] == [f"t{frame:03d}.tif" for frame in frames]
    expected_truth = "01_GT" if truth in ("gold", "both") else "01_ST"
    assert records[0].masks[0].parent.parent.name == expected_truth
    if truth == "both":
        assert records[1].masks[0].parent.parent.name == "01_ST"  # no gold for frame 1


# ------------------------------------------------------------------------------------ errors


def test_empty_folder_and_missing_folder_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is empty"):
        discover(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        discover(tmp_path / "nowhere")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(DataError, match="is a file"):
        discover(tmp_path / "file.png")


def test_unknown_layout_names_every_layout_and_what_was_missing(tmp_path: Path) -> None:
    factories.save_array(tmp_path / "pictures" / "a.png", factories.random_image(0, 4))
    with pytest.raises(DataError) as error:
        discover(tmp_path)
    message = str(error.value)
    for name in LAYOUTS:
        assert f"{name}: no " in message
    assert "train_masks/" in message and "--layout" in message


def test_several_matching_layouts_is_an_error(tmp_path: Path) -> None:
    factories.make_folder_dataset(tmp_path, n=1)
    factories.make_isbi_dataset(tmp_path, n=1)
    with pytest.raises(DataError, match=r"several layouts \(folder, isbi2012\).*--layout"):
        discover(tmp_path)
    assert discover(tmp_path, "isbi2012").layout == "isbi2012"


def test_named_layout_that_does_not_fit_says_what_is_missing(carvana_dataset: Path) -> None:
    with pytest.raises(DataError, match="not in the pets layout: no images/ or annotations/trimaps/"):
        discover(carvana_dataset, "pets")
    with pytest.raises(ConfigError, match="unknown layout 'voc'"):
        discover(carvana_dataset, "voc")


def test_a_layout_with_no_pairs_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match="no image/mask pairs found"):
        discover(tmp_path)


# --------------------------------------------------------------------------------- real data


REAL_CASES = {"isbi2012": (30, 30, "semantic"), "carvana": (32, 2, "semantic"), "dsb2018": (60, 60, "instance_files")}


@pytest.mark.parametrize("name", REAL_CASES)
def test_real_samples_are_detected_as_published(real_data: Path, name: str) -> None:
    pairs, groups, mask_kind = REAL_CASES[name]
    found = discover(real_data / name)
    assert found.layout == name and len(found.records) == pairs and not found.warnings
    assert len({record.group for record in found.records}) == groups
    record = found.records[0]
    assert record.mask_kind == mask_kind
    semantic, _ = read_annotation(record)
    assert semantic.shape == read_image(record.image).shape[:2]
    assert 0 < map_labels(semantic, found.labels).mean() < 1
