"""The unit of a dataset: one image with its mask, as every layout discovers it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from unetkit.config import LabelConfig

MaskKind = Literal["semantic", "instances", "instance_files"]


@dataclass(frozen=True)
class Record:
    """One image and its annotation.

    ``mask_kind``: ``semantic`` (a label image: raw values mapped by ``LabelConfig``), ``instances``
    (one label image, 0 = background, k = object k), ``instance_files`` (one binary file per object,
    DSB-2018). ``page`` selects a page of a multi-page TIFF (ISBI volumes) for image and mask.
    ``group`` keeps near-duplicates on one side of a split (a Carvana car, a CTC sequence).
    """

    image: Path
    masks: tuple[Path, ...] = ()
    group: str = ""
    mask_kind: MaskKind = "semantic"
    page: int | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def name(self) -> str:
        """A unique, file-name-safe stem for outputs derived from this record (a volume's: its case)."""
        stem = self.group if self.extra.get("volume") else self.image.stem
        return f"{stem}_{self.page:04d}" if self.page is not None else stem

    @property
    def has_mask(self) -> bool:
        return bool(self.masks)


def map_labels(raw: np.ndarray, labels: LabelConfig) -> np.ndarray:
    """Map a raw mask (H, W) to class ids (uint8), unknown values raising, ignored ones -> ignore_index."""
    if labels.mode == "threshold":
        fg = raw < labels.threshold if labels.invert else raw >= labels.threshold
        out = fg.astype(np.uint8)
    else:
        lookup = {int(k): int(v) for k, v in labels.values.items()}
        present = np.unique(raw)
        unknown = [int(v) for v in present if int(v) not in lookup and int(v) not in labels.ignore_values]
        if unknown:
            raise ValueError(
                f"mask values {unknown[:10]} are not in the class mapping {sorted(lookup)}"
            )
        out = np.zeros(raw.shape, dtype=np.uint8)
        for value in present:
            if int(value) in lookup:
                out[raw == value] = lookup[int(value)]
    for value in labels.ignore_values:
        out[raw == value] = labels.ignore_index
    return out
