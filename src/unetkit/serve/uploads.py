"""Uploaded files -> an image array, refusing what a hostile or careless client sends.

The upload is copied, a chunk at a time, into a fresh temporary folder on disk (the system's
temporary folder, ``$TMPDIR``: never whole in memory) under a name chosen here from the file's
signature (never the client's file name). Its header is then read for what decoding it would cost:
pixels, decoded bytes (samples, bytes per sample, TIFF tiles larger than the image) and, through
``check``, what the model can take and the memory it would need; only an upload within every
limit is decoded (``Upload.read``), by the same readers as ``unetkit predict``. Every refusal is a
``RequestError`` carrying its HTTP status.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np

from unetkit.data.reading import ImageInfo, probe_image, read_image
from unetkit.data.writing import safe_stem
from unetkit.errors import DataError
from unetkit.serve.limits import MiB, ServeLimits

# File signatures of the formats served, with the suffix that makes the readers pick their decoder.
SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": ".png",
    b"\xff\xd8\xff": ".jpg",
    b"II*\x00": ".tif",
    b"MM\x00*": ".tif",
    b"II+\x00": ".tif",  # BigTIFF
    b"MM\x00+": ".tif",
}
# Response files are written in memory where Linux offers it: unetkit's writers fsync, which on a
# disk costs more than the whole encoding of a small mask. (Uploads go to disk: they can be big.)
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
# What clients declare for those files; browsers send octet-stream (or nothing) for unknown suffixes.
ACCEPTED_TYPES = {"image/png", "image/jpeg", "image/tiff", "image/tif", "application/octet-stream", ""}
CHUNK = 1 * MiB
SAMPLES = (1, 2, 3, 4)  # grey, grey + alpha, RGB, RGBA: what ``read_image`` returns


class RequestError(Exception):
    """A request the client must change; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Upload:
    """An upload spooled to disk whose header has passed the limits: ``read()`` decodes it."""

    path: Path
    name: str  # the client's file name, made safe, for messages
    info: ImageInfo
    max_pixels: int

    def read(self) -> np.ndarray:
        """The image as ``read_image`` returns it (H, W, C)."""
        try:
            return read_image(self.path, None, self.max_pixels)
        except DataError as error:
            raise RequestError(400, str(error).replace(str(self.path), self.name)) from None


@contextmanager
def opened_upload(
    source: BinaryIO, filename: str, content_type: str, limits: ServeLimits,
    check: Callable[[ImageInfo, str], None] | None = None,
) -> Iterator[Upload]:  # fmt: skip
    """The upload spooled to disk and checked from its header (``check_header``, then
    ``check(info, name)``, which may raise RequestError), not yet decoded; removed afterwards."""
    name = safe_stem(filename or "upload")
    if content_type.split(";")[0].strip().lower() not in ACCEPTED_TYPES:
        raise RequestError(415, f"{name}: content type {content_type!r} is not an image; send PNG, JPEG or TIFF")
    with spooled(source, name) as path:
        try:
            info = probe_image(path)
        except DataError as error:
            raise RequestError(400, str(error).replace(str(path), name)) from None
        check_header(info, name, limits)
        if check is not None:
            check(info, name)
        yield Upload(path, name, info, limits.max_pixels)


@contextmanager
def spooled(source: BinaryIO, name: str) -> Iterator[Path]:
    """The upload as a file in a fresh temporary folder (removed afterwards), copied in chunks."""
    source.seek(0)
    head = source.read(CHUNK)
    if not head:
        raise RequestError(400, f"{name}: the upload is empty (0 bytes)")
    suffix = next((suffix for magic, suffix in SIGNATURES.items() if head.startswith(magic)), None)
    if suffix is None:
        raise RequestError(415, f"{name}: not a PNG, JPEG or TIFF file (its first bytes say otherwise)")
    with tempfile.TemporaryDirectory(prefix="unetkit-upload-") as folder:
        path = Path(folder) / f"upload{suffix}"
        with open(path, "wb") as handle:
            handle.write(head)
            shutil.copyfileobj(source, handle, CHUNK)
        yield path


def check_header(info: ImageInfo, name: str, limits: ServeLimits) -> None:
    """Refuse an image whose header asks for more than ``limits`` allow (413) or for a pixel layout
    the readers do not take (422), before any of it is decoded."""
    if info.pixels > limits.max_pixels:
        raise RequestError(413, f"{name}: {info.width} x {info.height} = {info.pixels} pixels, more than this "
                                f"server's limit of {limits.max_pixels}")  # fmt: skip
    if info.decoded_bytes > limits.max_decoded_bytes:
        raise RequestError(
            413,
            f"{name}: decoding it takes {info.decoded_bytes} bytes ({info.width} x {info.height} px, {info.samples} "
            f"sample(s) of {info.bytes_per_sample} byte(s){_tile_note(info)}), more than this server's limit of "
            f"{limits.max_decoded_bytes} bytes",
        )
    if info.samples not in SAMPLES:
        raise RequestError(422, f"{name}: {info.samples} values per pixel; send a grey, RGB or RGBA image")


def _tile_note(info: ImageInfo) -> str:
    """Why the decoded size exceeds the image's, where chunks decoded whole explain it."""
    pixel_bytes = info.samples * info.bytes_per_sample
    return "; its TIFF strips or tiles reach far beyond the image" if info.decoded_bytes > 4 * info.pixels * pixel_bytes else ""
