"""Layouts of image folders: plain images/ + masks/, Carvana, DSB-2018 nuclei, Oxford pets."""

from __future__ import annotations

from pathlib import Path

from unetkit.config import LabelConfig, PetsMode
from unetkit.data.layouts.base import (
    Discovery,
    Layout,
    binary_labels,
    images_in,
    mask_key,
    missing_dirs,
    pair_by_stem,
)
from unetkit.data.layouts.volumes import holds_volumes
from unetkit.data.records import Record
from unetkit.errors import ConfigError

class FolderLayout(Layout):
    """``images/`` + ``masks/`` matched by stem, or ``train/`` and ``val/`` each holding both.

    An optional ``instances/`` beside ``masks/`` (16-bit instance labels, as the demo data has)
    goes into ``Record.extra["instances"]`` for border weight maps.
    """

    name = "folder"
    expected = "images/ and masks/ (or train/images/ and train/masks/)"

    def missing(self, root: Path) -> str | None:
        if holds_volumes(root / "images"):
            return "images/ holds volumes (the volumes layout)"
        flat = missing_dirs(root, "images", "masks")
        split = missing_dirs(root, "train/images", "train/masks")
        if flat is None or split is None:
            return None
        return split if (root / "train").is_dir() and not (root / "images").is_dir() else flat

    def collect(self, root: Path) -> Discovery:
        train_root = root if missing_dirs(root, "images", "masks") is None else root / "train"
        records, unmatched_images, unmatched_masks = self._split_records(train_root)
        val_records: list[Record] = []
        if missing_dirs(root / "val", "images", "masks") is None and train_root != root:
            val_records, val_images, val_masks = self._split_records(root / "val")
            unmatched_images += val_images
            unmatched_masks += val_masks
        return Discovery(self.name, root, records, val_records, None, unmatched_images, unmatched_masks)

    @staticmethod
    def _split_records(folder: Path) -> tuple[list[Record], list[Path], list[Path]]:
        pairs, unmatched_images, unmatched_masks = pair_by_stem(images_in(folder / "images"), images_in(folder / "masks"))
        instances = {mask_key(path): path for path in images_in(folder / "instances")}
        records = [
            Record(
                image,
                (mask,),
                group=image.stem,
                extra={"instances": instances[image.stem]} if image.stem in instances else {},
            )
            for image, mask in pairs
        ]
        return records, unmatched_images, unmatched_masks


class CarvanaLayout(Layout):
    """Kaggle Carvana: ``train/<car>_<view>.jpg`` + ``train_masks/<car>_<view>_mask.gif``; group = car."""

    name = "carvana"
    expected = "train/<car>_<view>.jpg and train_masks/<car>_<view>_mask.gif"

    def missing(self, root: Path) -> str | None:
        return missing_dirs(root, "train", "train_masks")

    def collect(self, root: Path) -> Discovery:
        pairs, unmatched_images, unmatched_masks = pair_by_stem(images_in(root / "train"), images_in(root / "train_masks"))
        records = [Record(image, (mask,), group=image.stem.rsplit("_", 1)[0]) for image, mask in pairs]
        return Discovery(
            self.name, root, records, [], binary_labels("car"), unmatched_images, unmatched_masks
        )


class Dsb2018Layout(Layout):
    """Data Science Bowl 2018: ``<id>/images/<id>.png`` + ``<id>/masks/*.png``, one file per nucleus.

    ``stage1_train/`` is entered when present; a sample whose ``masks/`` is empty is kept (all
    background) with a warning, one without ``masks/`` (test data) is unmatched.
    """

    name = "dsb2018"
    expected = "<id>/images/<id>.png and <id>/masks/*.png (or stage1_train/<id>/...)"

    def missing(self, root: Path) -> str | None:
        return None if self._samples(root) else f"no {self.expected}"

    def collect(self, root: Path) -> Discovery:
        records, unmatched_images, warnings = [], [], []
        for sample in self._samples(root):
            image = sample / "images" / f"{sample.name}.png"
            if not (sample / "masks").is_dir():
                unmatched_images.append(image)
                continue
            masks = tuple(images_in(sample / "masks"))
            if not masks:
                warnings.append(f"{sample / 'masks'} is empty: {sample.name} is kept as all background")
            records.append(Record(image, masks, group=sample.name, mask_kind="instance_files"))
        return Discovery(self.name, root, records, [], binary_labels("nucleus"), unmatched_images, [], warnings)

    @staticmethod
    def _samples(root: Path) -> list[Path]:
        base = root / "stage1_train" if (root / "stage1_train").is_dir() else root
        if not base.is_dir():
            return []
        return sorted(
            folder for folder in base.iterdir() if (folder / "images" / f"{folder.name}.png").is_file()
        )


class PetsLayout(Layout):
    """Oxford-IIIT Pets: ``images/*.jpg`` + ``annotations/trimaps/*.png`` (1 pet, 2 background, 3 border).

    ``annotations/trainval.txt`` and ``test.txt`` give the records and validation records when present.
    """

    name = "pets"
    expected = "images/*.jpg and annotations/trimaps/*.png"
    options = ("pets_mode",)
    PET, BACKGROUND, BORDER = 1, 2, 3

    def missing(self, root: Path) -> str | None:
        return missing_dirs(root, "images", "annotations/trimaps")

    def collect(self, root: Path, pets_mode: PetsMode) -> Discovery:
        pairs, unmatched_images, unmatched_masks = pair_by_stem(
            images_in(root / "images"), images_in(root / "annotations" / "trimaps")
        )
        records = [Record(image, (mask,), group=image.stem) for image, mask in pairs]
        trainval, test = (self._listed(root / "annotations" / name) for name in ("trainval.txt", "test.txt"))
        val_records: list[Record] = []
        if trainval is not None and test is not None:
            val_records = [record for record in records if record.image.stem in test]
            records = [record for record in records if record.image.stem in trainval]
        return Discovery(
            self.name, root, records, val_records, self.labels(pets_mode), unmatched_images, unmatched_masks
        )

    @classmethod
    def labels(cls, mode: PetsMode) -> LabelConfig:
        if mode == "trimap":
            return LabelConfig(
                mode="values",
                values={cls.BACKGROUND: 0, cls.PET: 1, cls.BORDER: 2},
                names=["background", "pet", "border"],
            )
        if mode == "binary":
            return LabelConfig(
                mode="values", values={cls.BACKGROUND: 0, cls.PET: 1, cls.BORDER: 1}, names=["background", "pet"]
            )
        if mode == "binary-ignore":
            return LabelConfig(
                mode="values",
                values={cls.BACKGROUND: 0, cls.PET: 1},
                ignore_values=[cls.BORDER],
                names=["background", "pet"],
            )
        raise ConfigError(f"unknown pets mode {mode!r}; use trimap, binary or binary-ignore")

    @staticmethod
    def _listed(path: Path) -> set[str] | None:
        """Image names listed in a split file (``Abyssinian_100 1 1 1`` lines), None if absent."""
        if not path.is_file():
            return None
        lines = (line.split() for line in path.read_text().splitlines())
        return {words[0] for words in lines if words and not words[0].startswith("#")}
