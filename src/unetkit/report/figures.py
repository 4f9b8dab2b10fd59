"""Pictures for the report and the runs page, as PNG bytes or data URIs: image | truth | prediction |
error panels, the error overlay (false positives and negatives) and
the object outlines (matched, split, merged, invented, missed)."""

from __future__ import annotations

import base64
import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import binary_dilation
from skimage.segmentation import find_boundaries

from unetkit.data.reading import to_channels
from unetkit.data.writing import PALETTE, _display_uint8  # the overlays' own conversion, not a copy
from unetkit.metrics import object_errors

FALSE_POSITIVE = (255, 0, 255)  # magenta: predicted, not in the truth
FALSE_NEGATIVE = (0, 200, 255)  # cyan: in the truth, missed
# Object outlines: what became of each object (metrics.object_errors).
OBJECT_COLOURS = {
    "matched": (0, 200, 0),  # green: a predicted object matching a true one (IoU > 0.5)
    "split": (255, 160, 0),  # orange: a piece of a true object cut in several
    "merged": (255, 0, 0),  # red: one prediction covering several true objects
    "invented": FALSE_POSITIVE,  # magenta: a prediction where there is no object
    "missed": FALSE_NEGATIVE,  # cyan: a true object no prediction matches (its true outline)
}
ERROR_ALPHA = 0.6


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def read_metrics(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def display_rgb(image: np.ndarray) -> np.ndarray:
    """8-bit RGB as ``predict --overlay`` draws the image (other depths stretched from min to max)."""
    return to_channels(_display_uint8(image), 3)


def label_rgb(labels: np.ndarray, ignore_index: int) -> np.ndarray:
    """Class ids in the palette of ``predict``'s masks (background black, ignored pixels grey)."""
    colours = np.array([PALETTE[index % len(PALETTE)] if index else (0, 0, 0) for index in range(256)], np.uint8)
    colours[ignore_index % 256] = (128, 128, 128)
    return colours[labels]


def error_overlay(rgb: np.ndarray, truth: np.ndarray, prediction: np.ndarray, ignore_index: int) -> np.ndarray:
    """The image with false positives (foreground predicted where the truth has another class) in
    magenta and false negatives (truth foreground given another class) in cyan."""
    counted = truth != ignore_index
    wrong = counted & (prediction != truth)
    result = rgb.astype(np.float32)
    for where, colour in ((wrong & (prediction > 0), FALSE_POSITIVE), (wrong & (prediction == 0), FALSE_NEGATIVE)):
        result[where] = (1 - ERROR_ALPHA) * result[where] + ERROR_ALPHA * np.array(colour, np.float32)
    return np.rint(result).astype(np.uint8)


def object_outlines(rgb: np.ndarray, predicted: np.ndarray, true: np.ndarray, width: int = 1) -> np.ndarray:
    """The image with each object's outline (``width`` px, so it survives a shrunk picture) in the
    colour of what became of it (OBJECT_COLOURS)."""
    errors = object_errors(predicted, true)
    result = rgb.copy()
    grow = np.ones((2 * width - 1,) * 2, dtype=bool)
    pred_outlines, true_outlines = (binary_dilation(find_boundaries(labels, mode="inner"), grow) & (labels > 0)
                                    for labels in (predicted, true))  # fmt: skip
    result[true_outlines & np.isin(true, list(errors.missed))] = OBJECT_COLOURS["missed"]
    for kind in ("matched", "split", "merged", "invented"):
        result[pred_outlines & np.isin(predicted, list(getattr(errors, kind)))] = OBJECT_COLOURS[kind]
    return result
