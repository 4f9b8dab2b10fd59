"""Reading images and masks as datasets publish them.

Pillow reads PNG/JPEG/GIF/BMP, tifffile reads TIFF (multi-page volumes through ``page``). Images
come back as (H, W, C) arrays in their raw dtype (uint8, uint16 or float32), masks as (H, W)
integer arrays (palette images give their palette indices). Every failure names the file.
"""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import tifffile
from PIL import Image, ImageMode

from unetkit.config import DEFAULT_MAX_PIXELS
from unetkit.data.volumes import is_nifti, nifti_shape, read_nifti_slice
from unetkit.data.decoding import decoding
from unetkit.errors import ConfigError, DataError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp"})
TIFF_EXTENSIONS = frozenset({".tif", ".tiff"})
JPEG_EXTENSIONS = frozenset({".jpg", ".jpeg"})


_pillow_open_lock = threading.Lock()


@dataclass(frozen=True)
class ImageInfo:
    """What a file header says, without decoding the pixels."""

    width: int
    height: int
    kind: str  # Pillow mode ("RGB", "I;16", ...) or TIFF "dtype xC" ("uint16 x1")
    pages: int
    samples: int = 1  # values per pixel as decoded (a TIFF's planes count here, however they are stored)
    bytes_per_sample: int = 1  # of the decoded array (a 12-bit TIFF decodes to uint16: 2)
    # What the decoder allocates to read one page (a multi-page file is read one page at a time):
    # width x height x samples x bytes per sample (x depth slices of a volumetric TIFF), with a
    # TIFF's strips or tiles counted whole (a tile larger than the image is decoded whole) and
    # Pillow's 8-bit colour modes at the 4 bytes per pixel they take in its memory.
    decoded_bytes: int = 0

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def is_16bit(self) -> bool:
        return "16" in self.kind


def is_image_file(path: Path) -> bool:
    """An image we can read, by extension; hidden files (``.x``, macOS ``._x``) are not."""
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def is_jpeg(path: Path) -> bool:
    return path.suffix.lower() in JPEG_EXTENSIONS


def probe_image(path: str | Path, page: int | None = None) -> ImageInfo:
    """Size, pixel kind and decoded size from the file header (cheap: no decoding)."""
    path = Path(path)
    if is_nifti(path):  # a slice of a volume (a 2D U-Net on volumes)
        depth, height, width, dtype = nifti_shape(path)
        return ImageInfo(width, height, f"{dtype} x1", depth)
    with decoding(path):
        if _is_tiff(path):
            with tifffile.TiffFile(path) as tif:
                tiff_page = _tiff_page(tif, path, page)
                return _tiff_info(tiff_page, len(tif.pages))
        with _open_pillow(path) as image:
            return _pillow_info(image)


def _tiff_info(page: tifffile.TiffPage, pages: int) -> ImageInfo:
    if page.dtype is None:  # ValueError: ``decoding`` names the file
        raise ValueError(f"unsupported TIFF pixel type ({page.bitspersample} bits, sample format {page.sampleformat})")
    width, height, depth, samples = page.imagewidth, page.imagelength, max(1, page.imagedepth), page.samplesperpixel
    if page.is_tiled:
        chunk = (page.tilelength, page.tilewidth, page.tiledepth)
    else:  # strips: rows of the whole width (RowsPerStrip may exceed the image: one strip)
        chunk = (min(page.rowsperstrip or height, height), width, 1)
    rows, cols, slices = (-(-size // max(1, step)) * max(1, step) for size, step in zip((height, width, depth), chunk))
    itemsize = np.dtype(page.dtype).itemsize
    return ImageInfo(
        width, height, f"{page.dtype} x{samples}", pages, samples, itemsize, rows * cols * slices * samples * itemsize
    )


def _pillow_info(image: Image.Image) -> ImageInfo:
    mode = ImageMode.getmode(image.mode)
    samples, itemsize = len(mode.bands), np.dtype(mode.typestr).itemsize
    # Pillow keeps 2-4 bands of 8 bits in 4 bytes; palette images are read as RGB(A).
    pixel_bytes = 4 if itemsize == 1 and (samples > 1 or image.mode == "P") else samples * itemsize
    pages = getattr(image, "n_frames", 1)
    return ImageInfo(
        image.width, image.height, image.mode, pages, samples, itemsize, image.width * image.height * pixel_bytes
    )


def read_image(path: str | Path, page: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image as (H, W, C), C in {1, 3, 4}, dtype uint8, uint16 or float32."""
    path = Path(path)
    array = _read_pixels(path, page, max_pixels, _pillow_image_array)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4):
        raise DataError(f"cannot read image {path}: unsupported pixel layout {array.shape}; save it as grey or RGB")
    if array.shape[-1] == 2:  # grey + alpha
        array = array[..., :1]
    array = _supported_image_dtype(array, path)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise DataError(f"image {path} has NaN or infinite pixels; replace them (e.g. with 0) and save it again")
    return array


def read_mask(path: str | Path, page: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a mask as (H, W) integers: palette images give indices, colour masks one code per colour."""
    path = Path(path)
    array = _read_pixels(path, page, max_pixels, _pillow_mask_array)
    if array.ndim == 3:
        array = _colour_codes(array)
    if array.ndim != 2:
        raise DataError(
            f"cannot read mask {path}: unsupported pixel layout {array.shape}; save it as a grey label image"
        )
    if array.dtype.kind == "b":
        return array.astype(np.uint8)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise DataError(f"mask {path} has non-integer values; save masks with integer class ids or 0/255")
        return array.astype(np.int32)
    return array


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Convert (H, W, C) to ``channels`` channels: alpha dropped, grey <-> RGB (ITU-R 601 luma)."""
    if image.shape[-1] == channels:
        return image
    colour = image[..., :3] if image.shape[-1] == 4 else image
    if channels == 1 and colour.shape[-1] == 3:
        # NaN/inf pixels stay NaN/inf here, quietly: the predictor refuses them with a clear message.
        with np.errstate(invalid="ignore", over="ignore"):
            luma = colour.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            if image.dtype.kind != "f":
                luma = np.rint(luma)
            return luma.astype(image.dtype)[..., None]
    if channels == 3 and colour.shape[-1] == 1:
        return np.repeat(colour, 3, axis=-1)
    if colour.shape[-1] == channels:
        return colour
    raise ConfigError(f"cannot turn a {image.shape[-1]}-channel image into {channels} channels; use in_channels 1 or 3")


@contextmanager
def _open_pillow(path: Path) -> Iterator[Image.Image]:
    # Pillow's own bomb guard (a process-wide limit) would refuse sizes our --max-pixels allows,
    # so it is lifted while the header is parsed and our limit is checked right after.
    with _pillow_open_lock:
        limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            image = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = limit
    with image:
        yield image


def _read_pixels(
    path: Path, page: int | None, max_pixels: int, pillow_array: Callable[[Image.Image], np.ndarray]
) -> np.ndarray:
    if is_nifti(path):  # a slice of a volume (a 2D U-Net on volumes)
        return read_nifti_slice(path, page)
    with decoding(path):
        if _is_tiff(path):
            with tifffile.TiffFile(path) as tif:
                tiff_page = _tiff_page(tif, path, page)
                _check_pixels(path, tiff_page.imagewidth * tiff_page.imagelength, max_pixels)
                _check_tiff_segments(path, tiff_page)
                array = tiff_page.asarray()
                if tiff_page.samplesperpixel > 1 and tiff_page.planarconfig == tifffile.PLANARCONFIG.SEPARATE:
                    array = np.moveaxis(array, 0, -1)
                return array
        with _open_pillow(path) as image:
            _check_pixels(path, image.width * image.height, max_pixels)
            if page:
                _seek(image, path, page)
            return pillow_array(image)


def _check_pixels(path: Path, pixels: int, max_pixels: int) -> None:
    if pixels > max_pixels:
        raise DataError(
            f"image {path} has {pixels} pixels, more than the limit of {max_pixels}; "
            f"raise it with --max-pixels if the file is trusted"
        )


def _check_tiff_segments(path: Path, page: tifffile.TiffPage) -> None:
    """A damaged header can claim far more strips or tiles than the file lists, and the decoder
    then loops over every missing one: minutes for a file of a few hundred bytes."""
    needed = math.prod(page.chunked)
    if len(page.dataoffsets) < needed:
        raise DataError(
            f"cannot read image {path}: damaged TIFF: it lists {len(page.dataoffsets)} of the {needed} "
            "strips or tiles its size needs; save it again"
        )


def _is_tiff(path: Path) -> bool:
    return path.suffix.lower() in TIFF_EXTENSIONS


def _tiff_page(tif: tifffile.TiffFile, path: Path, page: int | None):
    index = page or 0
    if not 0 <= index < len(tif.pages):
        raise DataError(f"image {path} has {len(tif.pages)} page(s), no page {index}; check the page number")
    return tif.pages[index]


def _seek(image: Image.Image, path: Path, page: int) -> None:
    frames = getattr(image, "n_frames", 1)
    if not 0 <= page < frames:
        raise DataError(f"image {path} has {frames} page(s), no page {page}; check the page number")
    image.seek(page)


def _pillow_image_array(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    elif mode in ("1", "LA", "La"):
        image = image.convert("L")
    elif mode not in ("L", "RGB", "RGBA", "F") and not mode.startswith("I"):
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV...
    return np.asarray(image)


def _pillow_mask_array(image: Image.Image) -> np.ndarray:
    if image.mode in ("LA", "La", "PA"):
        image = image.getchannel(0)  # palette indices / grey values, alpha dropped
    elif image.mode not in ("1", "L", "P", "RGB", "RGBA", "F") and not image.mode.startswith("I"):
        image = image.convert("RGB")
    return np.asarray(image)


def _supported_image_dtype(array: np.ndarray, path: Path) -> np.ndarray:
    if array.dtype in (np.uint8, np.uint16, np.float32):
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype.kind in "iu" and array.size and array.min() >= 0 and array.max() <= 65535:
        return array.astype(np.uint16)
    if array.dtype.kind in "iuf":
        return array.astype(np.float32)
    raise DataError(f"cannot read image {path}: unsupported pixel type {array.dtype}; save it as 8/16-bit or float")


def _colour_codes(array: np.ndarray) -> np.ndarray:
    """(H, W, C) mask -> (H, W): grey stored as RGB stays grey, real colours get one int each."""
    if array.shape[-1] < 3 or (
        np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 0], array[..., 2])
    ):
        return array[..., 0]
    colour = array[..., :3].astype(np.int64)
    return (colour[..., 0] << 16 | colour[..., 1] << 8 | colour[..., 2]).astype(np.int32)
