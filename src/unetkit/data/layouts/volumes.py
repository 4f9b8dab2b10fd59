"""Layouts of volumes: a folder of volumes (``images/`` + ``labels/`` or ``masks/``) and the Medical
Segmentation Decathlon / nnU-Net raw layout (``imagesTr/``, ``labelsTr/``, ``dataset.json``).

Their records carry ``extra["volume"]`` (every reader then reads the whole volume), the channel
files of a case (``extra["channels"]``: nnU-Net's ``_0000``, ``_0001``...) and the imaging
modality where ``dataset.json`` names it (``extra["modality"]``: ``CT`` takes nnU-Net's CT
normalisation).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

from unetkit.config import LabelConfig
from unetkit.data.layouts.base import Discovery, Layout, missing_dirs
from unetkit.data.records import Record
from unetkit.data.volumes import is_volume_file, volume_stem, volumes_in
from unetkit.errors import DataError

CHANNEL_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
LABEL_FOLDERS = ("labels", "masks")


def volume_record(channels: list[Path], labels: Path, group: str, **extra: object) -> Record:
    """The record of one case: its channel files, its label volume, ``volume`` marked."""
    return Record(channels[0], (labels,), group=group, extra={"volume": True, "channels": tuple(channels), **extra})


def holds_volumes(folder: Path) -> bool:
    """Whether the first NIfTI or TIFF file of ``folder`` is a volume (2D folders are not opened
    file by file)."""
    candidates = sorted(p for p in folder.iterdir() if p.name.lower().endswith((".nii", ".nii.gz", ".tif", ".tiff"))
                        and not p.name.startswith(".")) if folder.is_dir() else []  # fmt: skip
    return bool(candidates) and is_volume_file(candidates[0])


class VolumeFolderLayout(Layout):
    """``images/`` of volumes (NIfTI, multi-page TIFF) + ``labels/`` or ``masks/`` of label volumes
    of the same names (classes, or instance ids as PlantSeg and CellSeg3D publish them)."""

    name = "volumes"
    expected = "images/ of volumes (.nii, .nii.gz or multi-page .tif) and labels/ (or masks/) of the same names"

    def missing(self, root: Path) -> str | None:
        if not (root / "images").is_dir() or self._labels_folder(root) is None:
            return "no images/ and labels/ (or masks/)"
        return None if holds_volumes(root / "images") else "images/ holds no volumes"

    def collect(self, root: Path) -> Discovery:
        labels = {volume_stem(path): path for path in volumes_in(self._labels_folder(root))}
        records, unmatched = [], []
        for image in volumes_in(root / "images"):
            label = labels.pop(volume_stem(image), None)
            if label is None:
                unmatched.append(image)
            else:
                records.append(volume_record([image], label, volume_stem(image)))
        return Discovery(self.name, root, records, [], None, unmatched, sorted(labels.values()))

    @staticmethod
    def _labels_folder(root: Path) -> Path | None:
        return next((root / name for name in LABEL_FOLDERS if (root / name).is_dir()), None)


class DecathlonLayout(Layout):
    """The Medical Segmentation Decathlon and nnU-Net raw layout: ``imagesTr/<case>_0000.nii.gz``
    (one file per channel; MSD's own 4D files too), ``labelsTr/<case>.nii.gz``, and ``dataset.json``
    naming the classes (MSD: ``{"0": "background"}``; nnU-Net v2: ``{"background": 0}``) and the
    modality (``modality`` / ``channel_names``)."""

    name = "msd"
    expected = "imagesTr/, labelsTr/ and dataset.json"

    def missing(self, root: Path) -> str | None:
        absent = missing_dirs(root, "imagesTr", "labelsTr")
        if absent is None and not (root / "dataset.json").is_file():
            return "no dataset.json"
        return absent

    def collect(self, root: Path) -> Discovery:
        description = _dataset_json(root / "dataset.json")
        labels = _decathlon_labels(description.get("labels"), root / "dataset.json")
        modalities = description.get("channel_names") or description.get("modality") or {}
        modality = str(modalities.get("0", "")) if isinstance(modalities, dict) else ""
        cases: dict[str, list[Path]] = defaultdict(list)
        for path in volumes_in(root / "imagesTr"):
            match = CHANNEL_SUFFIX.match(volume_stem(path))
            cases[match["case"] if match else volume_stem(path)].append(path)
        truth = {volume_stem(path): path for path in volumes_in(root / "labelsTr")}
        records, unmatched = [], []
        for case, channels in sorted(cases.items()):
            label = truth.pop(case, None)
            if label is None:
                unmatched.extend(channels)
            else:
                records.append(volume_record(sorted(channels), label, case, modality=modality))
        return Discovery(self.name, root, records, [], labels, unmatched, sorted(truth.values()))


def _dataset_json(path: Path) -> dict:
    try:
        description = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(description, dict):
        raise DataError(f"{path}: expected a JSON object with 'labels'")
    return description


def _decathlon_labels(labels: object, path: Path) -> LabelConfig:
    """The class mapping ``dataset.json`` gives: ``{"0": "background", "1": "liver"}`` (MSD) or
    ``{"background": 0, "liver": 1}`` (nnU-Net v2); label ids must be 0..K-1."""
    if not isinstance(labels, dict) or not labels:
        raise DataError(f"{path}: no 'labels' mapping; list the classes, e.g. {{\"0\": \"background\", \"1\": \"organ\"}}")
    try:
        if all(str(key).isdigit() for key in labels):
            names = {int(key): str(name) for key, name in labels.items()}
        else:
            names = {int(value): str(name) for name, value in labels.items()}
    except (TypeError, ValueError):
        raise DataError(f"{path}: 'labels' must map ids to names (regions are not supported)") from None
    ids = sorted(names)
    if ids != list(range(len(ids))):
        raise DataError(f"{path}: label ids {ids} must be 0..{len(ids) - 1}")
    if len(ids) <= 2:
        return LabelConfig(mode="threshold", threshold=1, names=[names[i] for i in ids] + ["foreground"] * (2 - len(ids)))
    return LabelConfig(mode="values", values={i: i for i in ids}, names=[names[i] for i in ids])
