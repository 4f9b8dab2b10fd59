"""What every layout shares: the Discovery it returns, the Layout interface, and pairing helpers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from unetkit.config import LabelConfig
from unetkit.data.reading import is_image_file
from unetkit.data.records import Record

MASK_SUFFIXES = ("_mask", "_label", "_labels", "_seg", "_gt", "-mask")


@dataclass
class Discovery:
    """What a dataset folder holds: training records, fixed validation records, the layout's labels."""

    layout: str
    root: Path
    records: list[Record]
    val_records: list[Record] = field(default_factory=list)
    labels: LabelConfig | None = None  # fixed by the layout; None: scan the masks (labels.infer_labels)
    unmatched_images: list[Path] = field(default_factory=list)
    unmatched_masks: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class Layout:
    """One published dataset layout."""

    name: str = ""
    expected: str = ""  # the files it looks for, for error messages
    options: tuple[str, ...] = ()  # the DataConfig fields it takes: discover passes them to collect by name

    def missing(self, root: Path) -> str | None:
        """What is missing for ``root`` to be in this layout; ``None`` when it is."""
        raise NotImplementedError

    def collect(self, root: Path, **options: Any) -> Discovery:
        """The records under ``root``, given the values of the config fields the layout names in ``options``."""
        raise NotImplementedError


def images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if is_image_file(path))


def natural_key(path: Path) -> tuple:
    """``2.png`` before ``10.png``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name))


def mask_key(mask: Path) -> str:
    stem = mask.stem
    lowered = stem.lower()
    for suffix in MASK_SUFFIXES:
        if lowered.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def pair_by_stem(
    images: Iterable[Path], masks: Iterable[Path], mask_key: Callable[[Path], str] = mask_key
) -> tuple[list[tuple[Path, Path]], list[Path], list[Path]]:
    """Match images to masks by stem (mask stems may carry a suffix such as ``_mask``).

    Returns the pairs, the images without a mask and the masks without an image; a second mask
    for one image counts as unmatched.
    """
    masks_by_key: dict[str, Path] = {}
    unmatched_masks: list[Path] = []
    for mask in masks:
        key = mask_key(mask)
        if key in masks_by_key:
            # an exact stem beats a suffixed one (x.png vs x_mask.png), otherwise the first wins
            keep, extra = (mask, masks_by_key[key]) if mask.stem == key else (masks_by_key[key], mask)
            masks_by_key[key] = keep
            unmatched_masks.append(extra)
        else:
            masks_by_key[key] = mask
    pairs, unmatched_images = [], []
    for image in images:
        mask = masks_by_key.pop(image.stem, None)
        if mask is None:
            unmatched_images.append(image)
        else:
            pairs.append((image, mask))
    return pairs, unmatched_images, sorted(unmatched_masks + list(masks_by_key.values()))


def missing_dirs(root: Path, *names: str) -> str | None:
    absent = [f"{name}/" for name in names if not (root / name).is_dir()]
    return None if not absent else "no " + " or ".join(absent)


def binary_labels(foreground: str, threshold: int = 1, invert: bool = False) -> LabelConfig:
    return LabelConfig(mode="threshold", threshold=threshold, invert=invert, names=["background", foreground])
