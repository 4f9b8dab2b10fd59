"""Known dataset layouts, read as they are published: each turns a folder into image/mask records.

A layout is a small class with ``missing(root)`` (what its files would be, ``None`` when they are
there) and ``collect(root, options)`` (the records). :func:`discover` picks the one layout whose
files are present, or the one named, and applies the checks every layout shares. Nothing is ever
written into the dataset folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Literal

from unetkit.config import LabelConfig
from unetkit.config import DEFAULT_MAX_PIXELS
from unetkit.data.reading import is_image_file, probe_image
from unetkit.data.records import Record
from unetkit.errors import ConfigError, DataError

MASK_SUFFIXES = ("_mask", "_label", "_labels", "_seg", "_gt", "-mask")
LISTED_UNMATCHED = 10

PetsMode = Literal["trimap", "binary", "binary-ignore"]
CtcTruth = Literal["gold", "silver", "both"]


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


@dataclass(frozen=True)
class Options:
    """The choices some layouts offer."""

    pets_mode: PetsMode = "trimap"
    ctc_truth: CtcTruth = "gold"


# ------------------------------------------------------------------------------------- helpers


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if is_image_file(path))


def _natural_key(path: Path) -> tuple:
    """``2.png`` before ``10.png``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name))


def _mask_key(mask: Path) -> str:
    stem = mask.stem
    lowered = stem.lower()
    for suffix in MASK_SUFFIXES:
        if lowered.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def _pair_by_stem(
    images: Iterable[Path], masks: Iterable[Path], mask_key: Callable[[Path], str] = _mask_key
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


def _missing_dirs(root: Path, *names: str) -> str | None:
    absent = [f"{name}/" for name in names if not (root / name).is_dir()]
    return None if not absent else "no " + " or ".join(absent)


def _binary_labels(foreground: str, threshold: int = 1, invert: bool = False) -> LabelConfig:
    return LabelConfig(mode="threshold", threshold=threshold, invert=invert, names=["background", foreground])


# ------------------------------------------------------------------------------------- layouts


class Layout:
    """One published dataset layout."""

    name: str = ""
    expected: str = ""  # the files it looks for, for error messages

    def missing(self, root: Path) -> str | None:
        """What is missing for ``root`` to be in this layout; ``None`` when it is."""
        raise NotImplementedError

    def collect(self, root: Path, options: Options) -> Discovery:
        raise NotImplementedError


class FolderLayout(Layout):
    """``images/`` + ``masks/`` matched by stem, or ``train/`` and ``val/`` each holding both.

    An optional ``instances/`` beside ``masks/`` (16-bit instance labels, as the demo data has)
    goes into ``Record.extra["instances"]`` for border weight maps.
    """

    name = "folder"
    expected = "images/ and masks/ (or train/images/ and train/masks/)"

    def missing(self, root: Path) -> str | None:
        flat = _missing_dirs(root, "images", "masks")
        split = _missing_dirs(root, "train/images", "train/masks")
        if flat is None or split is None:
            return None
        return split if (root / "train").is_dir() and not (root / "images").is_dir() else flat

    def collect(self, root: Path, options: Options) -> Discovery:
        train_root = root if _missing_dirs(root, "images", "masks") is None else root / "train"
        records, unmatched_images, unmatched_masks = self._split_records(train_root)
        val_records: list[Record] = []
        if _missing_dirs(root / "val", "images", "masks") is None and train_root != root:
            val_records, val_images, val_masks = self._split_records(root / "val")
            unmatched_images += val_images
            unmatched_masks += val_masks
        return Discovery(self.name, root, records, val_records, None, unmatched_images, unmatched_masks)

    @staticmethod
    def _split_records(folder: Path) -> tuple[list[Record], list[Path], list[Path]]:
        pairs, unmatched_images, unmatched_masks = _pair_by_stem(_images_in(folder / "images"), _images_in(folder / "masks"))
        instances = {_mask_key(path): path for path in _images_in(folder / "instances")}
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
        return _missing_dirs(root, "train", "train_masks")

    def collect(self, root: Path, options: Options) -> Discovery:
        pairs, unmatched_images, unmatched_masks = _pair_by_stem(_images_in(root / "train"), _images_in(root / "train_masks"))
        records = [Record(image, (mask,), group=image.stem.rsplit("_", 1)[0]) for image, mask in pairs]
        return Discovery(
            self.name, root, records, [], _binary_labels("car"), unmatched_images, unmatched_masks
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

    def collect(self, root: Path, options: Options) -> Discovery:
        records, unmatched_images, warnings = [], [], []
        for sample in self._samples(root):
            image = sample / "images" / f"{sample.name}.png"
            if not (sample / "masks").is_dir():
                unmatched_images.append(image)
                continue
            masks = tuple(_images_in(sample / "masks"))
            if not masks:
                warnings.append(f"{sample / 'masks'} is empty: {sample.name} is kept as all background")
            records.append(Record(image, masks, group=sample.name, mask_kind="instance_files"))
        return Discovery(self.name, root, records, [], _binary_labels("nucleus"), unmatched_images, [], warnings)

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
    PET, BACKGROUND, BORDER = 1, 2, 3

    def missing(self, root: Path) -> str | None:
        return _missing_dirs(root, "images", "annotations/trimaps")

    def collect(self, root: Path, options: Options) -> Discovery:
        pairs, unmatched_images, unmatched_masks = _pair_by_stem(
            _images_in(root / "images"), _images_in(root / "annotations" / "trimaps")
        )
        records = [Record(image, (mask,), group=image.stem) for image, mask in pairs]
        trainval, test = (self._listed(root / "annotations" / name) for name in ("trainval.txt", "test.txt"))
        val_records: list[Record] = []
        if trainval is not None and test is not None:
            val_records = [record for record in records if record.image.stem in test]
            records = [record for record in records if record.image.stem in trainval]
        return Discovery(
            self.name, root, records, val_records, self.labels(options.pets_mode), unmatched_images, unmatched_masks
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


class Isbi2012Layout(Layout):
    """ISBI 2012 EM: ``train/image/N.png`` + ``train/label/N.png``, or the ``train-volume.tif`` +
    ``train-labels.tif`` stacks (one record per page). Membranes (stored as 0) are the class of interest."""

    name = "isbi2012"
    expected = "train/image/ and train/label/ (or train-volume.tif and train-labels.tif)"
    VOLUME, LABELS = "train-volume.tif", "train-labels.tif"

    def missing(self, root: Path) -> str | None:
        if (root / self.VOLUME).is_file() or _missing_dirs(root, "train/image", "train/label") is None:
            return None
        return f"no {self.expected}"

    def collect(self, root: Path, options: Options) -> Discovery:
        labels = _binary_labels("membrane", threshold=128, invert=True)
        if (root / self.VOLUME).is_file():
            return Discovery(self.name, root, self._volume_records(root), [], labels)
        pairs, unmatched_images, unmatched_masks = _pair_by_stem(
            sorted(_images_in(root / "train" / "image"), key=_natural_key), _images_in(root / "train" / "label")
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
    FRAME = re.compile(r"t(\d+)\.tiff?", re.IGNORECASE)
    TRUTH = re.compile(r"man_seg(\d+)\.tiff?", re.IGNORECASE)  # man_segNNN_ZZZ (3D slices) left out

    def missing(self, root: Path) -> str | None:
        return None if self._sequences(root) else f"no {self.expected}"

    def collect(self, root: Path, options: Options) -> Discovery:
        records, unmatched_masks = [], []
        for sequence in self._sequences(root):
            frames = self._numbered(sequence, self.FRAME)
            truth = self._truth(root, sequence.name, options.ctc_truth)
            unmatched_masks += [path for number, path in sorted(truth.items()) if number not in frames]
            records += [
                Record(frames[number], (truth[number],), group=sequence.name, mask_kind="instances")
                for number in sorted(frames)
                if number in truth
            ]
        return Discovery(self.name, root, records, [], _binary_labels("cell"), [], unmatched_masks)

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


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (FolderLayout(), CarvanaLayout(), Dsb2018Layout(), PetsLayout(), Isbi2012Layout(), CtcLayout())
}


# ----------------------------------------------------------------------------------- discover


def discover(
    path: str | Path,
    layout: str = "auto",
    *,
    strict: bool = False,
    pets_mode: PetsMode = "trimap",
    ctc_truth: CtcTruth = "gold",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Discovery:
    """Find the image/mask records of the dataset at ``path``, in ``layout`` or the one detected.

    Only names and headers are read, so ``max_pixels`` (kept for a uniform call with the readers)
    does not come into play here; ``strict`` turns unmatched files from warnings into an error.
    """
    root = Path(path).expanduser()
    _check_root(root)
    chosen = _choose_layout(root, layout)
    discovery = chosen.collect(root, Options(pets_mode, ctc_truth))
    _report_unmatched(discovery, strict)
    if not discovery.records:
        raise DataError(
            f"no image/mask pairs found in {root} ({chosen.name} layout: {chosen.expected}); check the file names"
        )
    return discovery


def _check_root(root: Path) -> None:
    if not root.exists():
        raise DataError(f"dataset folder {root} does not exist; check --data")
    if not root.is_dir():
        raise DataError(f"{root} is a file, not a dataset folder; pass the folder holding the data to --data")
    if not any(root.iterdir()):
        raise DataError(f"dataset folder {root} is empty; put a dataset there or point --data elsewhere")


def _choose_layout(root: Path, name: str) -> Layout:
    if name != "auto":
        if name not in LAYOUTS:
            raise ConfigError(f"unknown layout {name!r}; use auto or one of {', '.join(LAYOUTS)}")
        reason = LAYOUTS[name].missing(root)
        if reason is not None:
            raise DataError(f"{root} is not in the {name} layout: {reason}; arrange it so or pass another --layout")
        return LAYOUTS[name]
    reasons = {layout.name: layout.missing(root) for layout in LAYOUTS.values()}
    found = [name for name, reason in reasons.items() if reason is None]
    if len(found) == 1:
        return LAYOUTS[found[0]]
    if found:
        raise DataError(f"{root} matches several layouts ({', '.join(found)}); choose one with --layout")
    looked_for = "; ".join(f"{name}: {reason}" for name, reason in reasons.items())
    raise DataError(f"cannot recognise the layout of {root} ({looked_for}); arrange it as one of these or pass --layout")


def _report_unmatched(discovery: Discovery, strict: bool) -> None:
    for what, paths in (("images without a mask", discovery.unmatched_images), ("masks without an image", discovery.unmatched_masks)):
        if not paths:
            continue
        shown = ", ".join(str(path) for path in paths[:LISTED_UNMATCHED])
        more = f" and {len(paths) - LISTED_UNMATCHED} more" if len(paths) > LISTED_UNMATCHED else ""
        message = f"{len(paths)} {what} in {discovery.root}: {shown}{more}"
        if strict:
            raise DataError(f"{message}; fix the names or leave out --strict")
        discovery.warnings.append(message)
