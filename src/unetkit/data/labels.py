"""Which raw mask values become which classes, for datasets whose layout does not say.

Every mask is scanned once for its distinct values, then :func:`labels_from_scan` decides:
two values or fewer (or JPEG masks, thresholded at 128) make a binary task, more make one class
per value. A ``classes`` count given by the user is checked against what the masks hold.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from unetkit.config import LabelConfig
from unetkit.config import DEFAULT_MAX_PIXELS
from unetkit.data.annotations import read_annotation
from unetkit.data.reading import is_jpeg
from unetkit.data.records import Record
from unetkit.errors import DataError

logger = logging.getLogger(__name__)

JPEG_THRESHOLD = 128  # lossy masks carry compression noise around 0 and 255


@dataclass
class ValueScan:
    """Distinct raw values over a set of masks, with the file that shows the most of them."""

    values: set[int] = field(default_factory=set)
    richest_file: Path | None = None
    richest_values: list[int] = field(default_factory=list)
    jpeg_masks: int = 0
    lossless_masks: int = 0

    def add(self, mask_path: Path, values: Iterable[int]) -> None:
        values = sorted(int(value) for value in values)
        self.values.update(values)
        if len(values) > len(self.richest_values):
            self.richest_file, self.richest_values = mask_path, values
        if is_jpeg(mask_path):
            self.jpeg_masks += 1
        else:
            self.lossless_masks += 1


def distinct_values(mask: np.ndarray) -> np.ndarray:
    """The distinct values of a mask (a histogram for 8-bit masks: much faster than sorting)."""
    if mask.dtype == np.uint8:
        return np.flatnonzero(np.bincount(mask.ravel(), minlength=256))
    return np.unique(mask)


def scan_values(records: list[Record], max_pixels: int = DEFAULT_MAX_PIXELS) -> ValueScan:
    """Read every labelled record's raw semantic mask once (in threads: decoding releases the GIL)."""
    scan = ValueScan()

    def values_of(record: Record) -> np.ndarray:
        semantic, _ = read_annotation(record, max_pixels)
        return distinct_values(semantic)

    labelled = [record for record in records if record.has_mask]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for record, values in zip(labelled, pool.map(values_of, labelled)):
            scan.add(record.masks[0], values)
    return scan


def infer_labels(
    records: list[Record], classes: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[LabelConfig, list[int]]:
    """The label mapping training would use for ``records``, and the raw values seen in their masks.

    ``classes`` is the model's class count (1 or 2: binary; K >= 3: K classes), or None to decide
    from the masks.
    """
    scan = scan_values(records, max_pixels)
    return labels_from_scan(scan, classes), sorted(scan.values)


MAX_CLASS_VALUES = 20  # masks with more distinct values are instance label images, not classes


def instance_labels() -> LabelConfig:
    """The class mapping of instance label images: background 0, any object 1."""
    return LabelConfig(mode="threshold", threshold=1, names=["background", "object"])


def looks_like_instances(scan: ValueScan) -> bool:
    """Label images (0 = background, 1..n = objects, often 16-bit) rather than class masks: more
    distinct values than a class mask holds, or values beyond 8 bits."""
    values = sorted(scan.values)
    return not scan.jpeg_masks and len(values) > 2 and (len(values) > MAX_CLASS_VALUES or values[-1] > 255)


def labels_from_scan(scan: ValueScan, classes: int | None = None) -> LabelConfig:
    """Decide binary vs K classes from a scan; contradictions with ``classes`` are DataErrors."""
    if scan.jpeg_masks:
        return _jpeg_labels(scan, classes)
    values = sorted(scan.values)
    binary = classes in (1, 2) or (classes is None and len(values) <= 2)
    if binary:
        if len(values) > 2:
            raise DataError(_too_many_values(scan, "binary masks"))
        return _binary_labels(values)
    wanted = classes if classes is not None else len(values)
    if len(values) > wanted:
        raise DataError(_too_many_values(scan, f"{wanted} classes"))
    if len(values) < wanted:
        logger.warning("masks hold %d distinct values %s but %d classes were asked for", len(values), values, wanted)
    return _class_labels(values, wanted)


def _binary_labels(values: list[int]) -> LabelConfig:
    """0 is background and anything else foreground; without a 0, the lower of two values is background."""
    if 0 in values or len(values) < 2:
        if values and 0 not in values:
            logger.warning("every mask holds the single value %d: all pixels are foreground", values[0])
        return LabelConfig(mode="threshold", threshold=1)
    low, high = values
    return LabelConfig(mode="values", values={low: 0, high: 1})


def _class_labels(values: list[int], classes: int) -> LabelConfig:
    """Values that already are class ids (all below ``classes``) stay; otherwise sorted values -> 0..K-1."""
    as_ids = all(0 <= value < classes for value in values)
    mapping = {value: value if as_ids else index for index, value in enumerate(values)}
    raw_of = {class_id: raw for raw, class_id in mapping.items()}
    names = [_class_name(raw_of.get(class_id), class_id) for class_id in range(classes)]
    return LabelConfig(mode="values", values=mapping, names=names)


def _class_name(raw: int | None, class_id: int) -> str:
    if class_id == 0 and raw in (0, None):
        return "background"
    return f"class_{raw}" if raw is not None else f"class_{class_id}"


def _jpeg_labels(scan: ValueScan, classes: int | None) -> LabelConfig:
    if scan.lossless_masks:
        raise DataError(
            f"the masks mix JPEG and lossless files (e.g. {scan.richest_file}); save all masks as PNG"
        )
    if classes is not None and classes > 2:
        raise DataError(
            f"JPEG masks (e.g. {scan.richest_file}) can only be binary: compression blurs class values; "
            f"save them as PNG or pass --classes 1"
        )
    return LabelConfig(mode="threshold", threshold=JPEG_THRESHOLD)


def _too_many_values(scan: ValueScan, asked: str) -> str:
    return (
        f"masks hold {len(scan.values)} distinct values {sorted(scan.values)[:20]} but {asked} were asked for "
        f"(e.g. {scan.richest_file} has values {scan.richest_values[:20]}); pass --classes {len(scan.values)}"
    )
