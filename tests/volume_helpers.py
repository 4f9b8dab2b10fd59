"""Small volume datasets written to disk for the volume tests: NIfTI and TIFF, the folder layout
and the Decathlon / nnU-Net layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tifffile

AFFINE = np.array([[0.8, 0, 0, -10.0], [0, 0.7, 0, 5.0], [0, 0, 2.5, 20.0], [0, 0, 0, 1]])


def save_nifti(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    """``array`` (z, y, x[, c]) as NIfTI, which stores x first."""
    import nibabel

    path.parent.mkdir(parents=True, exist_ok=True)
    order = (2, 1, 0) if array.ndim == 3 else (2, 1, 0, 3)
    nibabel.save(nibabel.Nifti1Image(np.ascontiguousarray(array.transpose(order)), affine), str(path))
    return path


def save_tiff(path: Path, array: np.ndarray, spacing: tuple[float, float, float] = (2.0, 0.5, 0.5)) -> Path:
    """``array`` (z, y, x) as an ImageJ stack with its spacing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    z, y, x = spacing
    tifffile.imwrite(path, array, imagej=True, resolution=(1 / x, 1 / y), metadata={"spacing": z, "axes": "ZYX"})
    return path


def blob_volume(seed: int, shape: tuple[int, int, int] = (8, 24, 24)) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 image, labels 0/1/2): two bright boxes of two classes on noise."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint8)
    labels[2:6, 3:10, 4:12] = 1
    labels[1:5, 14:20, 12:22] = 2
    image = rng.normal(40, 10, shape) + 60.0 * labels
    return np.clip(image, 0, 255).astype(np.uint8), labels


def nifti_folder(root: Path, cases: int = 3, shape: tuple[int, int, int] = (8, 24, 24)) -> Path:
    """``images/`` + ``labels/`` of NIfTI volumes with classes 0..2."""
    for case in range(cases):
        image, labels = blob_volume(case, shape)
        save_nifti(root / "images" / f"case{case}.nii.gz", image)
        save_nifti(root / "labels" / f"case{case}.nii.gz", labels)
    return root


def decathlon_folder(
    root: Path, cases: int = 3, channels: int = 2, modality: str = "MRI", affine: np.ndarray = AFFINE
) -> Path:
    """``imagesTr/<case>_000k.nii.gz``, ``labelsTr/<case>.nii.gz`` and an MSD ``dataset.json``."""
    for case in range(cases):
        image, labels = blob_volume(case)
        for channel in range(channels):
            save_nifti(root / "imagesTr" / f"organ_{case:03d}_{channel:04d}.nii.gz", image.astype(np.int16) - 100 * channel, affine)
        save_nifti(root / "labelsTr" / f"organ_{case:03d}.nii.gz", labels, affine)
    description = {"name": "organ", "modality": {str(c): modality for c in range(channels)},
                   "labels": {"0": "background", "1": "organ", "2": "tumour"}}  # fmt: skip
    (root / "dataset.json").write_text(json.dumps(description))
    return root
