"""Uploaded bytes -> an image array, refusing what a hostile or careless client sends.

The bytes are written under a fresh temporary folder with a name chosen here from the file's
signature (never the client's file name), probed for their pixel count before decoding, and read by
the same readers as ``unetkit predict``. Every refusal is a ``RequestError`` carrying its HTTP status.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from unetkit.data.reading import probe_image, read_image
from unetkit.data.writing import safe_stem
from unetkit.errors import DataError

# File signatures of the formats served, with the suffix that makes the readers pick their decoder.
SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": ".png",
    b"\xff\xd8\xff": ".jpg",
    b"II*\x00": ".tif",
    b"MM\x00*": ".tif",
    b"II+\x00": ".tif",  # BigTIFF
    b"MM\x00+": ".tif",
}
# Scratch files live in memory where Linux offers it: unetkit's writers fsync, which on a disk costs
# more than the whole encoding of a small mask.
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
# What clients declare for those files; browsers send octet-stream (or nothing) for unknown suffixes.
ACCEPTED_TYPES = {"image/png", "image/jpeg", "image/tiff", "image/tif", "application/octet-stream", ""}


class RequestError(Exception):
    """A request the client must change; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def decode_upload(data: bytes, filename: str, content_type: str, max_pixels: int) -> np.ndarray:
    """The uploaded image as ``read_image`` returns it (H, W, C)."""
    name = safe_stem(filename or "upload")
    if content_type.split(";")[0].strip().lower() not in ACCEPTED_TYPES:
        raise RequestError(415, f"{name}: content type {content_type!r} is not an image; send PNG, JPEG or TIFF")
    if not data:
        raise RequestError(400, f"{name}: the upload is empty (0 bytes)")
    suffix = next((suffix for magic, suffix in SIGNATURES.items() if data.startswith(magic)), None)
    if suffix is None:
        raise RequestError(415, f"{name}: not a PNG, JPEG or TIFF file (its first bytes say otherwise)")
    with tempfile.TemporaryDirectory(prefix="unetkit-upload-", dir=SCRATCH) as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            pixels = probe_image(path).pixels
            if pixels > max_pixels:
                raise RequestError(413, f"{name}: {pixels} pixels, more than this server's limit of {max_pixels}")
            return read_image(path, None, max_pixels)
        except DataError as error:
            raise RequestError(400, str(error).replace(str(path), name)) from None
