"""Layouts of the microscopy challenges: ISBI 2012 (EM membranes) and the Cell Tracking Challenge."""

from __future__ import annotations

import re
from pathlib import Path

from unetkit.config import CtcTruth
from unetkit.data.layouts.base import (
    Discovery,
    Layout,
    binary_labels,
    images_in,
    missing_dirs,
    natural_key,
    pair_by_stem,
)
from unetkit.data.reading import probe_image
from unetkit.data.records import Record
from unetkit.errors import ConfigError, DataError

class Isbi2012Layout(Layout):
    """ISBI 2012 EM: ``train/image/N.png`` + ``train/label/N.png``, or the ``train-volume.tif`` +
    ``train-labels.tif`` stacks (one record per page). Membranes (stored as 0) are the class of interest."""

    name = "isbi2012"
    expected = "train/image/ and train/label/ (or train-volume.tif and train-labels.tif)"
    VOLUME, LABELS = "train-volume.tif", "train-labels.tif"

    def missing(self, root: Path) -> str | None:
        if (root / self.VOLUME).is_file() or missing_dirs(root, "train/image", "train/label") is None:
            return None
        return f"no {self.expected}"

    def collect(self, root: Path) -> Discovery:
        labels = binary_labels("membrane", threshold=128, invert=True)
        if (root / self.VOLUME).is_file():
            return Discovery(self.name, root, self._volume_records(root), [], labels)
        pairs, unmatched_images, unmatched_masks = pair_by_stem(
            sorted(images_in(root / "train" / "image"), key=natural_key), images_in(root / "train" / "label")
        )
        records = [Record(image, (mask,), group=image.stem) for image, mask in pairs]
        return Discovery(self.name, root, records, [], labels, unmatched_images, unmatched_masks)

    def _volume_records(self, root: Path) -> list[Record]:
        volume, label_volume = root / self.VOLUME, root / self.LABELS
        if not label_volume.is_file():
            raise DataError(f"{volume} has no {label_volume.name} beside it; put the label stack there")
        pages, label_pages = probe_image(volume).pages, probe_image(label_volume).pages
        if pages != label_pages:
            raise DataError(
                f"{volume} has {pages} pages but {label_volume} has {label_pages}; the stacks must match slice for slice"
            )
        return [Record(volume, (label_volume,), group=f"slice{page:04d}", page=page) for page in range(pages)]


class CtcLayout(Layout):
    """Cell Tracking Challenge: ``01/tNNN.tif`` + ``01_GT/SEG/man_segNNN.tif`` (gold) or
    ``01_ST/SEG/`` (silver) instance labels; only frames with a truth file become records; group = sequence."""

    name = "ctc"
    expected = "NN/tNNN.tif and NN_GT/SEG/man_segNNN.tif (or NN_ST/SEG/)"
    options = ("ctc_truth",)
    FRAME = re.compile(r"t(\d+)\.tiff?", re.IGNORECASE)
    TRUTH = re.compile(r"man_seg(\d+)\.tiff?", re.IGNORECASE)  # man_segNNN_ZZZ (3D slices) left out

    def missing(self, root: Path) -> str | None:
        return None if self._sequences(root) else f"no {self.expected}"

    def collect(self, root: Path, ctc_truth: CtcTruth) -> Discovery:
        records, unmatched_masks = [], []
        for sequence in self._sequences(root):
            frames = self._numbered(sequence, self.FRAME)
            truth = self._truth(root, sequence.name, ctc_truth)
            unmatched_masks += [path for number, path in sorted(truth.items()) if number not in frames]
            records += [
                Record(frames[number], (truth[number],), group=sequence.name, mask_kind="instances")
                for number in sorted(frames)
                if number in truth
            ]
        return Discovery(self.name, root, records, [], binary_labels("cell"), [], unmatched_masks)

    def _truth(self, root: Path, sequence: str, choice: CtcTruth) -> dict[int, Path]:
        gold = self._numbered(root / f"{sequence}_GT" / "SEG", self.TRUTH)
        silver = self._numbered(root / f"{sequence}_ST" / "SEG", self.TRUTH)
        if choice == "gold":
            return gold
        if choice == "silver":
            return silver
        if choice == "both":
            return {**silver, **gold}
        raise ConfigError(f"unknown CTC truth {choice!r}; use gold, silver or both")

    @staticmethod
    def _numbered(folder: Path, pattern: re.Pattern) -> dict[int, Path]:
        if not folder.is_dir():
            return {}
        matches = ((pattern.fullmatch(path.name), path) for path in folder.iterdir())
        return {int(match.group(1)): path for match, path in matches if match}

    @staticmethod
    def _sequences(root: Path) -> list[Path]:
        if not root.is_dir():
            return []
        return sorted(
            folder
            for folder in root.iterdir()
            if folder.is_dir()
            and folder.name.isdigit()
            and any((root / f"{folder.name}{truth}" / "SEG").is_dir() for truth in ("_GT", "_ST"))
        )
