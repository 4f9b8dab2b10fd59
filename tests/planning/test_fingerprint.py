"""The fingerprint on small files of known content: sizes, intensities, classes, objects."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from unetkit.config import DataConfig
from unetkit.data.records import Record
from unetkit.planning.fingerprint import Fingerprint, fingerprint


def _pair(folder: Path, name: str, image: np.ndarray, mask: np.ndarray, instances: np.ndarray | None = None) -> Record:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / f"{name}.png")
    Image.fromarray(mask).save(folder / f"{name}_mask.png")
    extra = {}
    if instances is not None:
        Image.fromarray(instances.astype(np.uint16)).save(folder / f"{name}_instances.png")
        extra = {"instances": folder / f"{name}_instances.png"}
    return Record(folder / f"{name}.png", (folder / f"{name}_mask.png",), extra=extra)


def test_touching_instances_their_areas_and_widths(tmp_path: Path) -> None:
    instances = np.zeros((64, 80), np.uint16)
    instances[10:20, 10:20] = 1
    instances[10:20, 20:30] = 2  # shares an edge with 1
    instances[40:50, 50:60] = 3  # alone
    image = np.full((64, 80), 100, np.uint8)
    record = _pair(tmp_path, "a", image, (instances > 0).astype(np.uint8) * 255, instances)
    fp = fingerprint([record], [], DataConfig(), channels=1, classes=1)
    objects = fp.objects
    assert objects.source == "instances" and objects.per_image == 3
    assert objects.median_area == 100 and objects.touching == pytest.approx(2 / 3, abs=1e-3)
    assert 8 <= objects.median_thickness <= 10  # 10 px squares
    assert fp.median_size == (64, 80) and fp.bit_depth == 8 and fp.channels == 1
    assert fp.foreground == pytest.approx([1 - 300 / (64 * 80), 300 / (64 * 80)], abs=1e-4)


def test_a_thin_diagonal_line_is_one_object_of_width_one_and_nearby_components_count_as_touching(tmp_path: Path) -> None:
    mask = np.zeros((64, 64), np.uint8)
    cv2.line(mask, (5, 5), (40, 40), 255, 1)
    mask[50:60, 10:20] = 255
    mask[50:60, 22:32] = 255  # 2 px gap: nearly touching
    fp = fingerprint([_pair(tmp_path, "a", np.zeros((64, 64), np.uint8), mask)], [], DataConfig(), 1, 1)
    assert fp.objects.source == "components" and fp.objects.per_image == 3
    assert fp.objects.touching == pytest.approx(2 / 3, abs=1e-3)
    assert fp.objects.median_thickness <= 9


def test_intensity_statistics_in_the_unit_range_and_16_bit_depth(tmp_path: Path) -> None:
    dark = np.full((32, 32), 6553, np.uint16)  # 0.1 of the range
    bright = np.full((32, 32), 19660, np.uint16)  # 0.3
    records = [_pair(tmp_path, name, image, np.zeros((32, 32), np.uint8)) for name, image in (("d", dark), ("b", bright))]
    fp = fingerprint(records, [], DataConfig(), 1, 1)
    assert fp.bit_depth == 16 and fp.mean == pytest.approx([0.2], abs=1e-3)
    assert fp.image_std == pytest.approx(0.0, abs=1e-4) and fp.mean_spread == pytest.approx(0.1, abs=1e-3)
    assert fp.objects.source == "none" and fp.foreground[0] == 1.0


def test_colour_share_tells_rgb_photographs_from_grey_stored_as_rgb(tmp_path: Path) -> None:
    grey = np.repeat(np.random.default_rng(0).integers(30, 255, (32, 32, 1), dtype=np.uint8), 3, axis=2)
    blue = grey.copy()
    blue[:16, :, 2] = 250
    blue[:16, :, :2] = 40
    mask = np.zeros((32, 32), np.uint8)
    grey_fp = fingerprint([_pair(tmp_path / "g", "a", grey, mask)], [], DataConfig(), 3, 1)
    blue_fp = fingerprint([_pair(tmp_path / "b", "a", blue, mask)], [], DataConfig(), 3, 1)
    assert grey_fp.coloured == 0.0 and blue_fp.coloured == pytest.approx(0.5, abs=0.02)


def test_hue_range_counts_the_bands_of_hues_and_dark_the_near_black_pixels(tmp_path: Path) -> None:
    red, blue, black = (200, 30, 30), (30, 30, 200), (5, 5, 5)
    mask = np.zeros((32, 32), np.uint8)

    def fingerprint_of(name: str, *colours: tuple[int, int, int]) -> Fingerprint:
        image = np.array(colours, np.uint8).repeat(32 * 32 // len(colours), axis=0).reshape(32, 32, 3)
        return fingerprint([_pair(tmp_path / name, "a", image, mask)], [], DataConfig(), 3, 1)

    one, two, on_black = fingerprint_of("one", red), fingerprint_of("two", red, blue), fingerprint_of("fluo", red, black, black, black)
    assert (one.hue_range, two.hue_range, on_black.hue_range) == (20.0, 40.0, 20.0)  # 2^entropy 20-degree bins
    assert (one.dark, on_black.dark) == (0.0, 0.75) and on_black.coloured == 1.0  # near-black pixels have no hue
