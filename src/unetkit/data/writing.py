"""Writing masks, overlays, probabilities and instance labels (atomically), and naming them."""

from __future__ import annotations

import re
from pathlib import Path
import numpy as np
from PIL import Image

from unetkit.atomic import atomic_path
from unetkit.config import ProbFormat
from unetkit.data.reading import to_channels
from unetkit.errors import ConfigError, DataError

OVERLAY_ALPHA = 0.45
_UNSAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]")
MAX_STEM_LENGTH = 150

# Distinct, readable class colours (RGB); class 0 (background) is never tinted.
PALETTE = (
    (0, 0, 0),
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (255, 225, 25),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (128, 0, 0),
    (170, 255, 195),
)


def write_mask(path: str | Path, labels: np.ndarray, classes: int) -> None:
    """Binary models (classes <= 2): 0/255 grey PNG. More classes: palette PNG whose values are class ids."""
    labels = np.asarray(labels, dtype=np.uint8)
    if classes <= 2:
        image = Image.fromarray(np.where(labels > 0, 255, 0).astype(np.uint8))
    else:
        image = Image.fromarray(labels)
        image.putpalette(_palette_bytes())  # turns the grey image into a palette one, values kept
    _save(image, path)


def write_overlay(path: str | Path, image: np.ndarray, labels: np.ndarray, classes: int) -> None:
    """The image (made 8-bit RGB) with each foreground class tinted in its colour."""
    rgb = display_rgb(image).astype(np.float32)
    labels = np.asarray(labels)
    colours = np.array(PALETTE, dtype=np.float32)
    for class_id in range(1, max(classes, 2)):
        where = labels == class_id
        rgb[where] = (1 - OVERLAY_ALPHA) * rgb[where] + OVERLAY_ALPHA * colours[class_id % len(PALETTE)]
    _save(Image.fromarray(np.rint(rgb).astype(np.uint8)), path)


def write_probabilities(path: str | Path, probabilities: np.ndarray, fmt: ProbFormat = "png") -> list[Path]:
    """Write probabilities (K, H, W) beside the stem ``path``; returns the files written.

    ``png``: 16-bit grey, 0..65535 for 0..1: ``<stem>_prob.png`` for one channel, else
    ``<stem>_prob_c{k}.png`` per class. ``npy``: ``<stem>_prob.npy``, float16 (K, H, W).
    """
    stem = Path(path)
    probabilities = np.asarray(probabilities, dtype=np.float32)
    if fmt == "npy":
        target = stem.with_name(f"{stem.name}_prob.npy")
        with atomic_path(target) as tmp, open(tmp, "wb") as handle:
            np.save(handle, probabilities.astype(np.float16))
        return [target]
    if fmt != "png":
        raise ConfigError(f"unknown probability format {fmt!r}; use png or npy")
    levels = np.rint(np.clip(probabilities, 0.0, 1.0) * 65535).astype(np.uint16)
    if len(levels) == 1:
        targets = [stem.with_name(f"{stem.name}_prob.png")]
    else:
        targets = [stem.with_name(f"{stem.name}_prob_c{k}.png") for k in range(len(levels))]
    for target, channel in zip(targets, levels):
        _save(Image.fromarray(channel), target)
    return targets


def write_instances(path: str | Path, instances: np.ndarray) -> None:
    """An instance label image as a 16-bit PNG (0 background, k object k)."""
    instances = np.asarray(instances)
    if instances.size and (instances.min() < 0 or instances.max() > 65535):
        raise DataError(f"cannot write {path}: instance ids must lie in 0..65535")
    _save(Image.fromarray(instances.astype(np.uint16)), path)


def _save(image: Image.Image, path: str | Path) -> None:
    # The temporary file has no telling suffix: the format comes from the target's name.
    target = Path(path)
    image_format = Image.registered_extensions().get(target.suffix.lower(), "PNG")
    with atomic_path(target) as tmp:
        image.save(tmp, format=image_format)


def _palette_bytes() -> list[int]:
    colours = [PALETTE[index % len(PALETTE)] if index else PALETTE[0] for index in range(256)]
    return [channel for colour in colours for channel in colour]


def display_rgb(image: np.ndarray) -> np.ndarray:
    """The image as 8-bit RGB (H, W, 3), as overlays draw it under their tint."""
    return to_channels(_display_uint8(image), 3)


def _display_uint8(image: np.ndarray) -> np.ndarray:
    """8-bit for display: uint8 as is, anything else stretched from its min to its max (in place in
    one float32 copy: a big 16-bit image must not cost several)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.dtype == np.uint8:
        return image
    values = image.astype(np.float32)
    low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    if high > low:
        values -= low
        values /= high - low
        values *= 255
        np.rint(values, out=values)
    else:
        values[...] = 0
    return values.astype(np.uint8)


def safe_stem(name: str) -> str:
    """A file name that cannot leave its output folder: only ``[A-Za-z0-9._-]``, no leading dot, never empty."""
    stem = _UNSAFE_CHARACTERS.sub("_", str(name)).lstrip(".")[:MAX_STEM_LENGTH]
    return stem or "unnamed"
