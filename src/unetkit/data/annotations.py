"""A record's annotation: its semantic mask and, where the data has them, its instances.

Datasets annotate in several ways: one label image per image (classes, or instance ids), one
binary file per object (DSB 2018), a semantic mask with a companion instance image, label
volumes. :func:`read_annotation` reads any of them into the same pair of arrays.
"""

from __future__ import annotations

import numpy as np

from unetkit.config import DEFAULT_MAX_PIXELS
from unetkit.data.reading import probe_image, read_mask
from unetkit.data.records import Record
from unetkit.data.volumes import is_volume_record, read_volume_annotation
from unetkit.errors import DataError


def read_annotation(record: Record, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, np.ndarray | None]:
    """The raw semantic mask (H, W) of a record and, where the data has them, its instances (int32).

    ``instances`` and ``instance_files`` records give ``semantic = instances > 0`` (0/1 uint8). A
    ``semantic`` record may carry a companion instance label image in ``extra["instances"]``.
    Volume records give (D, H, W) volumes (``data/volumes.py``).
    """
    if is_volume_record(record):
        return read_volume_annotation(record, max_pixels)
    if not record.masks and record.mask_kind != "instance_files":  # no object files: all background
        raise DataError(f"image {record.image} has no mask; give it one or predict on it instead of training")
    if record.mask_kind == "semantic":
        semantic = read_mask(record.masks[0], record.page, max_pixels)
        companion = record.extra.get("instances")
        instances = None if companion is None else _as_instances(read_mask(companion, record.page, max_pixels))
        return semantic, instances
    if record.mask_kind == "instances":
        instances = _as_instances(read_mask(record.masks[0], record.page, max_pixels))
    else:
        instances = _stack_instance_files(record, max_pixels)
    return (instances > 0).astype(np.uint8), instances


def _as_instances(array: np.ndarray) -> np.ndarray:
    return array.astype(np.int32)


def _stack_instance_files(record: Record, max_pixels: int) -> np.ndarray:
    """One label image from one binary file per object; overlapping pixels keep the first object."""
    info = probe_image(record.image, record.page)
    instances = np.zeros((info.height, info.width), dtype=np.int32)
    for object_id, mask_path in enumerate(record.masks, start=1):
        mask = read_mask(mask_path, None, max_pixels)
        if mask.shape != instances.shape:
            raise DataError(
                f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image {record.image} is "
                f"{info.width}x{info.height}; masks must match their image"
            )
        instances[(mask > 0) & (instances == 0)] = object_id
    return instances
