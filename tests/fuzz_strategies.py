"""Hypothesis strategies of test_fuzz.py: odd arrays and image files, valid or corrupted."""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
import tifffile
from hypothesis import strategies as st
from PIL import Image

SIZES = st.sampled_from([(1, 1), (3, 200), (200, 3), (1, 7)]) | st.tuples(st.integers(1, 24), st.integers(1, 24))
ARRAY_DTYPES = [np.uint8, np.uint16, np.float32, np.int32, np.bool_]
TIFF_DTYPES = [*ARRAY_DTYPES, np.int8, np.int16, np.uint32, np.int64, np.float16, np.float64]
CHANNELS = [None, 1, 2, 3, 4, 5]  # None: a 2-D array
FILLS = ["random", "zeros", "extremes", "special"]


def fill_array(dtype: type, shape: tuple[int, ...], fill: str, seed: int) -> np.ndarray:
    """An array of ``dtype``: random values over the dtype's range, zeros, its extremes, or (for
    floats) NaN, infinities and huge values."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5 if fill != "zeros" else np.zeros(shape, bool)
    if fill == "zeros":
        return np.zeros(shape, dtype)
    if dtype.kind == "f":
        finite = np.finfo(dtype)
        pool = {"random": [0.0, 1.0], "extremes": [float(finite.min), float(finite.max)],
                "special": [np.nan, np.inf, -np.inf, 1e30, -1.0]}[fill]
        values = rng.choice(pool, shape) if fill != "random" else rng.random(shape)
        return values.astype(dtype)
    info = np.iinfo(dtype)
    if fill in ("extremes", "special"):
        return rng.choice([info.min, info.max, 0], shape).astype(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


@st.composite
def arrays(draw: st.DrawFn, dtypes: Sequence[type] = ARRAY_DTYPES, channels: Sequence[int | None] = CHANNELS) -> np.ndarray:
    """(H, W) or (H, W, C) arrays of tiny and lopsided sizes."""
    height, width = draw(SIZES)
    count = draw(st.sampled_from(channels))
    shape = (height, width) if count is None else (height, width, count)
    return fill_array(draw(st.sampled_from(dtypes)), shape, draw(st.sampled_from(FILLS)), draw(st.integers(0, 2**32 - 1)))


# What each format can hold: (dtype, channel counts) pairs Pillow writes.
PILLOW_KINDS = {
    ".png": [(np.uint8, [None, 2, 3, 4]), (np.uint16, [None]), (np.bool_, [None])],
    ".jpg": [(np.uint8, [None, 3])],
    ".gif": [(np.uint8, [None, 3])],
}
PILLOW_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".gif": "GIF"}
MAGIC = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"II*\x00", b"MM\x00*", b"GIF89a", b""]


@st.composite
def encoded_images(draw: st.DrawFn) -> tuple[str, bytes]:
    """(suffix, bytes) of a valid image file of an odd dtype, shape or channel count."""
    suffix = draw(st.sampled_from([".png", ".jpg", ".gif", ".tif"]))
    buffer = io.BytesIO()
    if suffix == ".tif":
        array = draw(arrays(TIFF_DTYPES))
        planar = draw(st.sampled_from(["contig", "separate"])) if array.ndim == 3 and array.shape[-1] > 1 else None
        compression = draw(st.sampled_from([None, "zlib"]))
        pages = draw(st.integers(1, 2))
        stored = np.moveaxis(array, -1, 0) if planar == "separate" else array  # separate: samples first
        with tifffile.TiffWriter(buffer) as tif:
            for _ in range(pages):
                tif.write(stored, planarconfig=planar, compression=compression,
                          photometric="rgb" if array.ndim == 3 and array.shape[-1] == 3 else "minisblack")
    else:
        dtype, channels = draw(st.sampled_from(PILLOW_KINDS[suffix]))
        array = draw(arrays([dtype], channels))
        Image.fromarray(array).save(buffer, format=PILLOW_FORMATS[suffix])
    return suffix, buffer.getvalue()


@st.composite
def corrupted(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` intact, truncated, with a few bytes overwritten, or replaced by random bytes."""
    how = draw(st.sampled_from(["intact", "truncate", "overwrite", "random"]))
    if how == "truncate":
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    if how == "overwrite":
        mutable = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            if mutable:
                mutable[draw(st.integers(0, len(mutable) - 1))] = draw(st.integers(0, 255))
        return bytes(mutable)
    if how == "random":
        return draw(st.sampled_from(MAGIC)) + draw(st.binary(max_size=512))
    return data


@st.composite
def image_files(draw: st.DrawFn) -> tuple[str, bytes]:
    suffix, data = draw(encoded_images())
    return suffix, draw(corrupted(data))
