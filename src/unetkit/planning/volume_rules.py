"""The fingerprint of a volume dataset and the rules that plan a 3D (or 2D-slice) U-Net for it,
each value with its reason (nnU-Net's rules, fitted to a time budget and the machine's speed).

Pure functions of their arguments, so tests pin them on made-up fingerprints; the fingerprint
itself reads every volume once.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from unetkit.config import DataConfig
from unetkit.data.records import Record, map_labels
from unetkit.data.volumes import read_volume_annotation, read_volume_record
from unetkit.planning.rules import Choice

ANISOTROPY = 3.0  # coarsest / finest spacing from which nnU-Net's 2D network wins on slices
FLAT = 0.125  # volumes whose depth (physical) is below this share of their in-plane extent are stacks of slices
COARSE = 2.0  # an axis whose spacing exceeds this many times the finest is not pooled (nor convolved) yet
MIN_FEATURE = 4  # voxels a side the deepest feature map keeps (nnU-Net)
MAX_DEPTH = 5
PATCH_VOXELS = {"cpu": 40**3, "cuda": 128**3}  # voxels per training patch (a CPU step of 2 x 40^3 at width 8: about 1 s on 2 cores)
MIN_3D_STEPS = 100  # fewer 3D steps than this in the budget: train 2D slices instead (the 3D demo learns in 150)
WIDTHS_3D = {"cpu": (8, 16, 32), "cuda": (16, 32)}
BATCH_3D = 2  # nnU-Net's 3D batch
CT_PERCENTILES = (0.5, 99.5)
FOREGROUND_SAMPLE = 10_000  # foreground voxels kept per volume for the CT statistics


@dataclass
class VolumeFingerprint:
    volumes: int
    train_volumes: int
    median_shape: tuple[int, int, int]  # (z, y, x) voxels
    median_spacing: tuple[float, float, float]
    channels: int
    modality: str  # from dataset.json ("CT", "MRI", "T2"...), "" if unknown
    foreground: float  # share of labelled foreground voxels
    foreground_intensity: dict[str, float]  # percentiles 0.5 / 99.5, mean, std of foreground voxels (channel 0)
    classes: int

    @property
    def anisotropy(self) -> float:
        return max(self.median_spacing) / min(self.median_spacing)

    @property
    def flatness(self) -> float:
        """Physical depth over the in-plane extent: 30 x 512 x 512 EM sections give 0.06."""
        extent = [side * spacing for side, spacing in zip(self.median_shape, self.median_spacing)]
        return extent[0] / max(extent[1:])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def volume_fingerprint(train: Sequence[Record], val: Sequence[Record], data: DataConfig, channels: int, classes: int) -> VolumeFingerprint:
    """Shapes and spacings of every volume; intensities of the training volumes' foreground."""
    records = list(train) + list(val)
    shapes, spacings, samples, foreground = [], [], [], []
    for record in records:
        volume = read_volume_record(record, data.max_pixels)
        shapes.append(volume.shape)
        spacings.append(volume.spacing)
        if record in train and record.has_mask:
            raw, _ = read_volume_annotation(record, data.max_pixels)
            mask = map_labels(raw, data.labels)
            inside = (mask != 0) & (mask != data.labels.ignore_index)
            foreground.append(inside.mean())
            values = volume.array[..., 0][inside]
            samples.append(values[:: max(1, len(values) // FOREGROUND_SAMPLE)].astype(np.float64))
    voxels = np.concatenate(samples) if samples and sum(map(len, samples)) else np.zeros(1)
    low, high = np.percentile(voxels, CT_PERCENTILES)
    return VolumeFingerprint(
        volumes=len(records), train_volumes=len(train),
        median_shape=tuple(int(v) for v in np.median(shapes, axis=0)),
        median_spacing=tuple(round(float(v), 4) for v in np.median(spacings, axis=0)),
        channels=channels, modality=str(records[0].extra.get("modality", "")),
        foreground=round(float(np.mean(foreground)) if foreground else 0.0, 4),
        foreground_intensity={"p0.5": float(low), "p99.5": float(high), "mean": float(voxels.mean()),
                              "std": float(max(voxels.std(), 1e-6))},  # fmt: skip
        classes=max(2, classes),
    )  # fmt: skip


def dims(fp: VolumeFingerprint, steps_3d: float | None = None) -> Choice:
    """3D unless the slices are much coarser than the pixels, the volumes are thin stacks of
    sections, or the budget holds too few 3D steps on this machine."""
    if fp.anisotropy >= ANISOTROPY:
        return Choice("model.dims", 2, (
            f"spacing {list(fp.median_spacing)} is {fp.anisotropy:.1f}x coarser along one axis (>= {ANISOTROPY:.0f}): "
            "a 2D U-Net on slices (nnU-Net's 2D configuration wins on such data)"
        ))
    if fp.flatness < FLAT:
        return Choice("model.dims", 2, (
            f"volumes of {_shape(fp.median_shape)} voxels are thin stacks of sections (depth {fp.flatness:.0%} of "
            f"the in-plane extent, < {FLAT:.0%}): a 2D U-Net on slices sees far more context per step"
        ))
    if steps_3d is not None and steps_3d < MIN_3D_STEPS:
        return Choice("model.dims", 2, (
            f"the narrowest 3D U-Net makes only {steps_3d:.0f} steps in the budget on this machine (< {MIN_3D_STEPS}): "
            "a 2D U-Net on slices learns more in the time"
        ))
    measured = f", {steps_3d:.0f} steps of the narrowest fit the budget" if steps_3d is not None else ""
    return Choice("model.dims", 3, (
        f"volumes of {_shape(fp.median_shape)} voxels, spacing {list(fp.median_spacing)} (anisotropy "
        f"{fp.anisotropy:.1f} < {ANISOTROPY:.0f}){measured}: a 3D U-Net sees the objects whole"
    ))


def topology(patch: Sequence[int], spacing: Sequence[float]) -> tuple[list[list[int]], list[list[int]]]:
    """nnU-Net's pooling and kernels: at each stage an axis is pooled (and convolved with 3) when
    its spacing is within COARSE of the finest and its side keeps MIN_FEATURE voxels after
    halving; coarse axes get kernel 1 until pooling the others has caught up."""
    sizes, current = list(patch), list(spacing)
    pool, kernels = [], []
    for _ in range(MAX_DEPTH):
        finest = min(current)
        kernels.append([3 if s <= COARSE * finest else 1 for s in current])
        stride = [2 if s <= COARSE * finest and size >= 2 * MIN_FEATURE else 1 for s, size in zip(current, sizes)]
        if stride == [1, 1, 1]:
            break
        pool.append(stride)
        sizes = [size // k for size, k in zip(sizes, stride)]
        current = [s * k for s, k in zip(current, stride)]
    else:
        finest = min(current)
        kernels.append([3 if s <= COARSE * finest else 1 for s in current])
    return pool, kernels


def patch_shape(fp: VolumeFingerprint, device_type: str) -> Choice:
    """The median volume, shrunk (the physically longest axis first) to PATCH_VOXELS, each side a
    multiple of what its poolings divide by."""
    patch = [float(side) for side in fp.median_shape]
    while math.prod(patch) > PATCH_VOXELS[device_type]:
        extents = [side * s for side, s in zip(patch, fp.median_spacing)]
        longest = int(np.argmax(extents))
        patch[longest] *= 0.9
    pool, _ = topology([int(side) for side in patch], fp.median_spacing)
    multiples = [math.prod(stage[axis] for stage in pool) for axis in range(3)]
    shape = [max(m, int(side) // m * m) for side, m in zip(patch, multiples)]
    return Choice("data.patch_shape", shape, (
        f"the median volume ({_shape(fp.median_shape)}) within {PATCH_VOXELS[device_type]} voxels per patch on a "
        f"{'GPU' if device_type == 'cuda' else 'CPU'}, shrunk along its physically longest axis first (nnU-Net)"
    ))


def normalization(fp: VolumeFingerprint) -> Choice:
    if fp.modality.upper() == "CT":
        return Choice("data.normalize.mode", "ct", (
            f"CT (dataset.json): Hounsfield units mean the same in every volume, so clip to the foreground's "
            f"{CT_PERCENTILES[0]}-{CT_PERCENTILES[1]} percentiles and z-score with its mean and std (nnU-Net)"
        ))
    kind = fp.modality or "microscopy or MRI"
    return Choice("data.normalize.mode", "zscore", (
        f"{kind}: intensities vary between scans, so each volume is z-scored by its own mean and std (nnU-Net)"
    ))


def ct_values(fp: VolumeFingerprint) -> list[Choice]:
    stats = fp.foreground_intensity
    where = "of the foreground voxels of the training volumes"
    return [
        Choice("data.normalize.clip", [round(stats["p0.5"], 2), round(stats["p99.5"], 2)], f"the 0.5 and 99.5 percentiles {where}"),
        Choice("data.normalize.mean", [round(stats["mean"], 4)], f"the mean {where}"),
        Choice("data.normalize.std", [round(stats["std"], 4)], f"the std {where}"),
    ]


def _shape(shape: Sequence[int]) -> str:
    return "x".join(str(side) for side in shape)
