"""Training patches of volumes: a torch Dataset of random 3D patches with their labels.

Each item is a ``data.patch_shape`` patch of one volume (mirror-padded where the volume is
smaller), a ``data.foreground_oversample`` share of them centred on a random foreground voxel
(nnU-Net's third), normalised by the rule fitted to the whole volume, then augmented
(``volume_augment``). Validation predicts whole volumes through the Predictor instead.
Randomness comes from the seed ``StepBatches`` pairs with each index, as for images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from unetkit.config import DataConfig
from unetkit.data.dataset import PRIOR_RECORDS, RecordDataset, evenly_spaced, target_shares
from unetkit.data.reading import to_channels
from unetkit.data.records import Record, map_labels
from unetkit.data.transforms import check_normalization, intensity_rule
from unetkit.data.volume_augment import augment_patch, check_mode
from unetkit.data.volumes import read_volume_annotation, read_volume_record
from unetkit.errors import ConfigError, DataError

DEFAULT_PATCH = (32, 64, 64)  # without a plan (depth, height, width)
FOREGROUND_SAMPLES = 10_000  # foreground voxel positions kept per volume to centre patches on


@dataclass
class _Decoded:
    image: np.ndarray  # raw (D, H, W, C), mirror-padded to at least the patch
    labels: np.ndarray  # class ids (D, H, W) uint8, padded alike
    foreground: np.ndarray  # (n, 3) positions of foreground voxels (a sample)
    rule: Callable[[np.ndarray], np.ndarray]  # the intensity rule fitted to the whole volume


class VolumePatches(RecordDataset):
    """Items ``{image (C, d, h, w) float32, mask (d, h, w) int64, name}`` of random training patches."""

    def __init__(
        self, records: Sequence[Record], data: DataConfig, in_channels: int, samples_per_image: int = 1
    ) -> None:
        if not records:
            raise DataError(f"no volumes to load from {data.path or 'the dataset'}; check --data and the layout")
        check_normalization(data.normalize, in_channels)
        check_mode(data.augment)
        super().__init__(records, data, samples_per_image)
        self.in_channels = in_channels
        self.patch = tuple(data.patch_shape or DEFAULT_PATCH)
        if len(self.patch) != 3 or min(self.patch) < 1:
            raise ConfigError(f"data.patch_shape must be 3 sides (depth, height, width), got {list(self.patch)}")

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor | str]:
        record_index, seed = self._record_and_seed(key)
        rng = np.random.default_rng(seed)
        decoded = self._decoded(record_index)
        window = self._window(decoded, rng)
        image = decoded.rule(decoded.image[window]).transpose(3, 0, 1, 2)
        image, labels = augment_patch(image, decoded.labels[window], self.data.augment, rng)
        return {
            "image": torch.from_numpy(image),
            "mask": torch.from_numpy(labels.astype(np.int64)),
            "name": self.records[record_index].name,
        }

    def _window(self, decoded: _Decoded, rng: np.random.Generator) -> tuple[slice, ...]:
        """A random patch, centred on a foreground voxel for a ``foreground_oversample`` share."""
        shape = decoded.labels.shape
        if len(decoded.foreground) and rng.random() < self.data.foreground_oversample:
            centre = decoded.foreground[rng.integers(len(decoded.foreground))]
            starts = [int(np.clip(c - p // 2, 0, s - p)) for c, p, s in zip(centre, self.patch, shape)]
        else:
            starts = [int(rng.integers(s - p + 1)) for p, s in zip(self.patch, shape)]
        return tuple(slice(start, start + p) for start, p in zip(starts, self.patch))

    def sigmoid_target_shares(self, count: int = PRIOR_RECORDS) -> list[float]:
        """The foreground's share of the counted voxels (binary labels), over up to ``count`` evenly
        spaced volumes, for ``UNet``'s ``start_sigmoids_at_`` (volumes have no instance maps)."""
        decoded = ((self._decoded(index).labels, None) for index in evenly_spaced(len(self.records), count))
        return target_shares(decoded, self.data.labels.ignore_index, maps=0)

    def _decode(self, record: Record) -> _Decoded:
        volume = read_volume_record(record, self.data.max_pixels)
        image = to_channels(volume.array, self.in_channels)
        raw, _ = read_volume_annotation(record, self.data.max_pixels)
        if raw.shape != volume.shape:
            raise DataError(
                f"labels {record.masks[0]} are {_dhw(raw.shape)} but the volume {record.image} is {_dhw(volume.shape)}; "
                "labels must match their volume"
            )
        try:
            labels = map_labels(raw, self.data.labels)
        except ValueError as exc:
            raise DataError(f"labels {record.masks[0]}: {exc}; fix data.labels (unetkit data inspect lists the values)") from exc
        rule = intensity_rule(image, self.data.normalize)
        image, labels = (_mirror_pad(array, self.patch) for array in (image, labels))
        return _Decoded(image, labels, _foreground_sample(labels, self.data.labels.ignore_index), rule)


def _mirror_pad(array: np.ndarray, patch: tuple[int, ...]) -> np.ndarray:
    """``array`` mirrored at its far ends up to the patch on each of its first three axes."""
    pads = [(0, max(0, p - s)) for p, s in zip(patch, array.shape[:3])] + [(0, 0)] * (array.ndim - 3)
    if not any(after for _, after in pads):
        return array
    return np.pad(array, pads, mode="symmetric")


def _foreground_sample(labels: np.ndarray, ignore_index: int) -> np.ndarray:
    """Up to FOREGROUND_SAMPLES positions (n, 3) of labelled non-background voxels, evenly strided."""
    positions = np.argwhere((labels != 0) & (labels != ignore_index))
    return positions[:: max(1, len(positions) // FOREGROUND_SAMPLES)]


def _dhw(shape: Sequence[int]) -> str:
    return "x".join(str(side) for side in shape[:3])
