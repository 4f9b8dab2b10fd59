from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetkit.data import writing
from unetkit.data.reading import read_mask
from unetkit.errors import DataError

# ------------------------------------------------------------------------------------- writers


def _leftovers(folder: Path) -> list[Path]:
    return [path for path in folder.iterdir() if path.name.startswith(".")]


def test_write_mask_binary_is_0_255_grey(tmp_path: Path) -> None:
    writing.write_mask(tmp_path / "mask.png", np.array([[0, 1], [1, 0]], dtype=np.uint8), classes=1)
    written = Image.open(tmp_path / "mask.png")
    assert written.mode == "L"
    np.testing.assert_array_equal(np.asarray(written), [[0, 255], [255, 0]])
    assert not _leftovers(tmp_path)


def test_write_mask_multiclass_is_a_palette_png_of_class_ids(tmp_path: Path) -> None:
    labels = np.array([[0, 1, 2], [3, 2, 1]], dtype=np.uint8)
    writing.write_mask(tmp_path / "mask.png", labels, classes=4)
    written = Image.open(tmp_path / "mask.png")
    assert written.mode == "P" and written.getpalette()[3:6] == list(writing.PALETTE[1])
    np.testing.assert_array_equal(read_mask(tmp_path / "mask.png"), labels)


def test_write_overlay_tints_foreground_and_keeps_background(tmp_path: Path) -> None:
    image = np.full((4, 4, 1), 1000, dtype=np.uint16)
    image[0, 0] = 0
    labels = np.zeros((4, 4), dtype=np.uint8)
    labels[2:, 2:] = 1
    writing.write_overlay(tmp_path / "overlay.png", image, labels, classes=1)
    overlay = np.asarray(Image.open(tmp_path / "overlay.png")).astype(int)
    assert overlay.shape == (4, 4, 3)
    np.testing.assert_array_equal(overlay[1, 1], [255, 255, 255])  # background: the image, stretched
    expected = np.rint(0.55 * 255 + 0.45 * np.array(writing.PALETTE[1]))
    np.testing.assert_array_equal(overlay[3, 3], expected)


def test_write_probabilities_png_binary_and_multiclass(tmp_path: Path) -> None:
    binary = np.array([[[0.0, 0.5, 1.0]]], dtype=np.float32)
    (written,) = writing.write_probabilities(tmp_path / "cat", binary, "png")
    assert written == tmp_path / "cat_prob.png"
    np.testing.assert_array_equal(np.asarray(Image.open(written)), [[0, 32768, 65535]])
    multi = np.random.default_rng(0).dirichlet([1, 1, 1], (2, 3)).transpose(2, 0, 1)
    paths = writing.write_probabilities(tmp_path / "dog", multi, "png")
    assert [path.name for path in paths] == ["dog_prob_c0.png", "dog_prob_c1.png", "dog_prob_c2.png"]
    restored = np.stack([np.asarray(Image.open(path)) for path in paths]) / 65535
    np.testing.assert_allclose(restored, multi, atol=1e-5)
    assert not _leftovers(tmp_path)


def test_write_probabilities_npy_is_float16_kxhxw(tmp_path: Path) -> None:
    probabilities = np.random.default_rng(0).random((2, 3, 4)).astype(np.float32)
    (written,) = writing.write_probabilities(tmp_path / "x", probabilities, "npy")
    loaded = np.load(written)
    assert written.name == "x_prob.npy" and loaded.dtype == np.float16 and loaded.shape == (2, 3, 4)
    np.testing.assert_allclose(loaded, probabilities, atol=1e-3)


def test_write_instances_round_trips_16_bit_ids(tmp_path: Path) -> None:
    instances = np.array([[0, 1], [300, 65535]], dtype=np.int32)
    writing.write_instances(tmp_path / "instances.png", instances)
    np.testing.assert_array_equal(read_mask(tmp_path / "instances.png"), instances)
    with pytest.raises(DataError, match="0..65535"):
        writing.write_instances(tmp_path / "too_many.png", np.array([[70000]]))


# ----------------------------------------------------------------------------------- safe_stem


@pytest.mark.parametrize(
    "name, expected",
    [("../x", "_x"), ("/etc/passwd", "_etc_passwd"), ("", "unnamed"), ("a b?.png", "a_b_.png"), ("..", "unnamed"),
     ("ok-name_1.2", "ok-name_1.2"), ("ünïcode", "_n_code")],
)
def test_safe_stem_cannot_leave_the_output_folder(tmp_path: Path, name: str, expected: str) -> None:
    stem = writing.safe_stem(name)
    assert stem == expected
    assert (tmp_path / stem).resolve().parent == tmp_path.resolve()


def test_safe_stem_limits_length() -> None:
    assert len(writing.safe_stem("x" * 1000)) == writing.MAX_STEM_LENGTH
