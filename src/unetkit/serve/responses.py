"""Probabilities -> the bytes a client asked for: mask PNG, RLE, probabilities, instances, outlines."""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
from PIL import Image
from skimage.segmentation import find_boundaries

from unetkit.config import Config
from unetkit.data.rle import rle_encode
from unetkit.data.writing import display_rgb, write_instances, write_mask, write_probabilities
from unetkit.inference.postprocess import class_probabilities, instances_for
from unetkit.serve.uploads import SCRATCH, RequestError

Output = Literal["mask", "rle", "prob", "instances", "outlines"]
OUTLINE_COLOUR = (255, 255, 0, 255)


@dataclass(frozen=True)
class Encoded:
    body: bytes
    media_type: str
    suffix: str  # of the download's file name: ``<stem><suffix>``


def encode_png_mask(labels: np.ndarray, config: Config) -> Encoded:
    return Encoded(_written(lambda path: write_mask(path, labels, max(2, config.model.classes)), ".png"), "image/png", "_mask.png")


def encode_probabilities(probabilities: np.ndarray, config: Config) -> Encoded:
    """The class probabilities (K, H, W) as float16 .npy (instance maps are the model's own business)."""
    classes = class_probabilities(probabilities, config.model)
    body = _written(lambda path: write_probabilities(path.with_suffix(""), classes, "npy"), ".npy", "_prob.npy")
    return Encoded(body, "application/octet-stream", "_prob.npy")


def encode_instances(probabilities: np.ndarray, config: Config) -> Encoded:
    body = _written(lambda path: write_instances(path, instances_for(probabilities, config)), ".png")
    return Encoded(body, "image/png", "_instances.png")


def encode_outlines(probabilities: np.ndarray, config: Config) -> Encoded:
    """Each object's boundary in yellow on a transparent image, to lay over the picture."""
    boundaries = find_boundaries(instances_for(probabilities, config), mode="inner")
    rgba = np.zeros((*boundaries.shape, 4), dtype=np.uint8)
    rgba[boundaries] = OUTLINE_COLOUR
    return Encoded(_written(lambda path: Image.fromarray(rgba).save(path, format="PNG"), ".png"), "image/png", "_outlines.png")


def rle_payload(labels: np.ndarray, config: Config, order: Literal["row", "column"]) -> dict:
    if config.model.classes > 2:
        raise RequestError(422, f"RLE encodes one binary mask; this model has {config.model.classes} classes: ask for output=mask")
    height, width = labels.shape
    return {"width": width, "height": height, "order": order, "rle": rle_encode(labels > 0, order)}


def _written(write: Callable[[Path], object], suffix: str, written_suffix: str | None = None) -> bytes:
    """Bytes of a file written by ``write`` (unetkit's own writers) into a private temporary folder."""
    with tempfile.TemporaryDirectory(prefix="unetkit-response-", dir=SCRATCH) as folder:
        path = Path(folder) / f"out{suffix}"
        write(path)
        return (path.with_name(f"out{written_suffix}") if written_suffix else path).read_bytes()


def encode_display(image: np.ndarray) -> bytes:
    """The image as 8-bit RGB PNG, drawn as ``predict --overlay`` draws it under the tint."""
    buffer = io.BytesIO()
    Image.fromarray(display_rgb(image)).save(buffer, format="PNG")
    return buffer.getvalue()
