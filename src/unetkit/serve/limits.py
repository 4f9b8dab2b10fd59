"""The limits of `unetkit serve`, in one place: the app enforces them, the command line takes its
defaults from them, README.md states them. Plain numbers (no web framework, no decoder), so
``unetkit --help`` reads them without the [serve] extra.

The memory bound: the server's resident memory stays within

    idle RSS (the process with its model loaded, after one request)
    + max_memory_bytes                      (what the requests decoding, predicting or answering hold)
    + max_queue x QUEUED_BYTES              (an admitted request's buffers before its turn)
    + forward_bytes(...)                    (the one forward pass the model thread runs at a time)

Each request reserves ``request_bytes`` of ``max_memory_bytes`` from its image's header before it is
decoded, and waits its turn while the others hold the rest; one that alone needs more is refused.
benchmarks/serve_memory.py checks the bound under concurrent maximum-size uploads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MiB = 2**20


@dataclass(frozen=True)
class ServeLimits:
    max_upload_bytes: int = 32 * MiB  # request body, counted while it streams in
    max_pixels: int = 25_000_000  # width x height, from the header
    max_decoded_bytes: int = 128 * MiB  # what decoding one page allocates (ImageInfo.decoded_bytes), from the header
    max_tiles: int | None = None  # network inputs per request; None: what the largest square image of max_pixels takes
    max_queue: int = 16  # requests in progress (uploading, waiting, decoding, predicting, answering); more get 503
    max_memory_bytes: int = 4 * 2**30  # what the requests in progress may hold at once (request_bytes each)
    upload_timeout_s: float = 60.0  # seconds a request body may take to arrive; then 408
    max_batch_tiles: int = 16  # tiles of concurrent requests stacked into one forward pass
    batch_wait_s: float = 0.005  # how long the model thread waits for the tiles of other requests in flight

    @property
    def square_side(self) -> int:
        """The side of the largest square image within ``max_pixels``."""
        return math.isqrt(self.max_pixels)

    def memory_bound(self, forward: int) -> int:
        """Bytes above the idle server's RSS that the server never exceeds (module docstring);
        ``forward``: ``forward_bytes`` of the model served."""
        return self.max_memory_bytes + self.max_queue * QUEUED_BYTES + forward


# Measured (benchmarks/serve_memory.py and per-request peaks of each output at 4-16 Mpx: mask
# 14-26, instances 48-70, outlines 52-62, preview 9-12 bytes per pixel, decoding included), with a
# margin of about 2x: the watershed of ``instances`` and ``outlines`` costs more the more objects.
DECODED_COPIES = 2  # the decoder's buffer and the array made from it
OUTPUT_BYTES_PER_PIXEL = {"mask": 24, "rle": 24, "prob": 24, "instances": 96, "outlines": 96, "preview": 16}
CLASS_BYTES_PER_PIXEL = 12  # float32 probabilities, and their float16 copy for ``prob``
QUEUED_BYTES = 2 * MiB  # Starlette keeps an upload in memory up to 1 MiB before spooling it to disk
# A U-Net forward pass in inference holds about 7.5-8.7 x batch x tile^2 x base width x 4 bytes at
# its peak (its skips plus the layer at work; measured on widths 8-64, depths 3-5, tiles 256-512).
FORWARD_FACTOR = 12
FORWARD_OVERHEAD = 64 * MiB


def request_bytes(decoded_bytes: int, pixels: int, output: str, channels: int) -> int:
    """What one request may hold at its peak: its decoded image twice, and per pixel what its
    ``output`` (or ``preview``) costs, the probabilities of the model's ``channels`` output
    channels (classes and instance maps) included."""
    per_pixel = OUTPUT_BYTES_PER_PIXEL[output] + (0 if output == "preview" else CLASS_BYTES_PER_PIXEL * max(1, channels))
    return DECODED_COPIES * decoded_bytes + pixels * per_pixel


def forward_bytes(batch: int, tile_side: int, base_width: int, in_channels: int) -> int:
    """Peak memory of one float32 forward pass of ``batch`` tiles of ``tile_side`` px."""
    return FORWARD_FACTOR * batch * tile_side**2 * 4 * (base_width + in_channels) + FORWARD_OVERHEAD
