from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from layout_factories import random_image, save_array
from unetkit.data import reading
from unetkit.errors import ConfigError, DataError


# ---------------------------------------------------------------------------------- read_image

IMAGE_CASES = {
    "png grey 8-bit": ("png", random_image(1, (6, 5)), (6, 5, 1), np.uint8),
    "png grey 16-bit": ("png", random_image(2, (6, 5), dtype=np.uint16), (6, 5, 1), np.uint16),
    "png rgb": ("png", random_image(3, (6, 5), 3), (6, 5, 3), np.uint8),
    "png rgba": ("png", random_image(4, (6, 5), 4), (6, 5, 4), np.uint8),
    "bmp rgb": ("bmp", random_image(5, (6, 5), 3), (6, 5, 3), np.uint8),
    "tif grey 16-bit": ("tif", random_image(6, (6, 5), dtype=np.uint16), (6, 5, 1), np.uint16),
    "tif rgb": ("tif", random_image(7, (6, 5), 3), (6, 5, 3), np.uint8),
    "tif float": ("tiff", random_image(8, (6, 5), dtype=np.float32), (6, 5, 1), np.float32),
}


@pytest.mark.parametrize("case", IMAGE_CASES, ids=list(IMAGE_CASES))
def test_read_image_lossless_formats_keep_values_as_hwc(tmp_path: Path, case: str) -> None:
    ext, array, shape, dtype = IMAGE_CASES[case]
    path = save_array(tmp_path / f"image.{ext}", array)
    image = reading.read_image(path)
    assert image.shape == shape and image.dtype == dtype
    np.testing.assert_array_equal(image.reshape(array.shape), array)


def test_read_image_jpeg_is_rgb_uint8_close_to_the_original(tmp_path: Path) -> None:
    array = np.full((16, 16, 3), (200, 100, 50), dtype=np.uint8)
    image = reading.read_image(save_array(tmp_path / "photo.JPG", array))
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8
    assert np.abs(image.astype(int) - array).max() <= 3


@pytest.mark.parametrize("transparent", [False, True])
def test_read_image_palette_becomes_rgb_or_rgba(tmp_path: Path, transparent: bool) -> None:
    palette_image = Image.fromarray(np.array([[0, 1], [1, 0]], dtype=np.uint8))
    palette_image.putpalette([10, 20, 30, 200, 150, 100])
    path = tmp_path / "palette.png"
    palette_image.save(path, **({"transparency": 0} if transparent else {}))
    image = reading.read_image(path)
    assert image.shape == (2, 2, 4 if transparent else 3)
    np.testing.assert_array_equal(image[0, 1, :3], [200, 150, 100])


def test_read_image_selects_a_page_of_a_tiff_stack(tmp_path: Path) -> None:
    stack = np.stack([np.full((4, 4), value, dtype=np.uint8) for value in (10, 20, 30)])
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    assert reading.read_image(tmp_path / "stack.tif", page=2)[0, 0, 0] == 30
    assert reading.probe_image(tmp_path / "stack.tif").pages == 3
    with pytest.raises(DataError, match="no page 3"):
        reading.read_image(tmp_path / "stack.tif", page=3)


@pytest.mark.parametrize("compression", ["lzw", "zlib", "packbits", "zstd"])
def test_read_image_decodes_the_compressions_microscopes_write(tmp_path: Path, compression: str) -> None:
    array = random_image(9, (40, 30), dtype=np.uint16)  # 16-bit grey, as microscopy cameras save
    path = tmp_path / f"{compression}.tif"
    tifffile.imwrite(path, array, compression=compression)
    np.testing.assert_array_equal(reading.read_image(path)[..., 0], array)


def test_probe_image_reads_size_and_kind_from_the_header(tmp_path: Path) -> None:
    info = reading.probe_image(save_array(tmp_path / "wide.png", random_image(0, (3, 7), dtype=np.uint16)))
    assert (info.width, info.height, info.pixels, info.is_16bit) == (7, 3, 21, True)


# ------------------------------------------------------------------------------- pixel limits


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_images_over_the_pixel_limit_are_refused_naming_file_limit_and_flag(tmp_path: Path, ext: str) -> None:
    path = save_array(tmp_path / f"big.{ext}", random_image(0, (10, 10)))
    for read in (reading.read_image, reading.read_mask):
        with pytest.raises(DataError) as error:
            read(path, max_pixels=99)
        assert str(path) in str(error.value) and "99" in str(error.value) and "--max-pixels" in str(error.value)
    assert reading.read_image(path, max_pixels=100).shape == (10, 10, 1)


def test_our_pixel_limit_replaces_pillows_process_wide_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    path = save_array(tmp_path / "image.png", random_image(0, (10, 10)))
    assert reading.read_image(path, max_pixels=1000).shape == (10, 10, 1)
    assert Image.MAX_IMAGE_PIXELS == 10


# ------------------------------------------------------------------------------ corrupt files


def _truncated_png(path: Path) -> Path:
    data = (save_array(path, random_image(0, (64, 64), 3))).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


CORRUPT_FILES = {
    "random bytes": lambda path: path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(200))) and path,
    "empty": lambda path: path.write_bytes(b"") or path,
    "truncated": _truncated_png,
    "missing": lambda path: path,
}


@pytest.mark.parametrize("ext", ["png", "tif"])
@pytest.mark.parametrize("kind", CORRUPT_FILES, ids=list(CORRUPT_FILES))
def test_unreadable_files_raise_data_error_naming_the_file(tmp_path: Path, kind: str, ext: str) -> None:
    path = CORRUPT_FILES[kind](tmp_path / f"broken.{ext}")
    for read in (reading.read_image, reading.read_mask, reading.probe_image):
        if kind == "truncated" and read is reading.probe_image:
            continue  # the header is intact; only decoding the pixels fails
        with pytest.raises(DataError, match="cannot read image .*broken"):
            read(path)


# ----------------------------------------------------------------------------------- read_mask


def test_read_mask_gives_palette_indices_not_colours(tmp_path: Path) -> None:
    indices = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    for ext in ("png", "gif"):
        palette_image = Image.fromarray(indices)
        palette_image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])
        palette_image.save(tmp_path / f"mask.{ext}")
        np.testing.assert_array_equal(reading.read_mask(tmp_path / f"mask.{ext}"), indices)


def test_read_mask_keeps_16_bit_labels(tmp_path: Path) -> None:
    labels = np.array([[0, 300], [65535, 7]], dtype=np.uint16)
    for ext in ("png", "tif"):
        mask = reading.read_mask(save_array(tmp_path / f"labels.{ext}", labels))
        assert mask.shape == (2, 2)
        np.testing.assert_array_equal(mask, labels)


def test_read_mask_grey_stored_as_rgb_stays_grey_and_colours_get_distinct_codes(tmp_path: Path) -> None:
    grey = np.repeat(np.array([[0, 255]], dtype=np.uint8)[..., None], 3, axis=-1)
    np.testing.assert_array_equal(reading.read_mask(save_array(tmp_path / "grey.png", grey)), [[0, 255]])
    colours = np.array([[[0, 0, 0], [255, 0, 0], [0, 255, 0], [255, 0, 0]]], dtype=np.uint8)
    codes = reading.read_mask(save_array(tmp_path / "colours.png", colours))
    assert codes.shape == (1, 4) and len(np.unique(codes)) == 3 and codes[0, 1] == codes[0, 3]


def test_read_mask_bilevel_gives_0_1(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 255]], dtype=np.uint8)).convert("1").save(tmp_path / "bilevel.png")
    mask = reading.read_mask(tmp_path / "bilevel.png")
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, [[0, 1]])


def test_read_mask_refuses_fractional_float_masks(tmp_path: Path) -> None:
    whole = save_array(tmp_path / "whole.tif", np.array([[0.0, 2.0]], dtype=np.float32))
    np.testing.assert_array_equal(reading.read_mask(whole), [[0, 2]])
    with pytest.raises(DataError, match="fraction.tif has non-integer values"):
        reading.read_mask(save_array(tmp_path / "fraction.tif", np.array([[0.0, 0.5]], dtype=np.float32)))


# --------------------------------------------------------------------------------- to_channels


def test_to_channels_converts_grey_rgb_rgba() -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., :3] = (255, 0, 0)
    rgba[..., 3] = 7
    assert reading.to_channels(rgba, 3).shape == (2, 2, 3)
    grey = reading.to_channels(rgba, 1)
    assert grey.dtype == np.uint8 and grey.shape == (2, 2, 1) and grey[0, 0, 0] == round(0.299 * 255)
    rgb = reading.to_channels(grey, 3)
    assert (rgb == grey).all() and rgb.shape == (2, 2, 3)
    floats = reading.to_channels(np.ones((1, 1, 3), dtype=np.float32), 1)
    assert floats.dtype == np.float32 and floats[0, 0, 0] == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="4 channels"):
        reading.to_channels(grey, 4)
