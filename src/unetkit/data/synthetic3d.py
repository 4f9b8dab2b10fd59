"""The embedded demo volumes: light-sheet-like stacks of touching nuclei, generated on the fly.

The 3D twin of ``synthetic.py``: ellipsoidal blobs of varied size, some touching, each brighter
than the background around it, on textured, noisy, unevenly lit background, blurred by the optics
and with coarser slices than pixels (spacing 2 x 1 x 1), so neither a global threshold nor one
slice alone segments them well. Deterministic for a seed; written as NIfTI with their spacing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from unetkit.data.volumes import Volume, write_volume

SHAPE = (24, 64, 64)  # z, y, x
SPACING = (2.0, 1.0, 1.0)
BLOBS = (6, 12)
RADIUS = (4.0, 9.0)  # in-plane semi-axes, pixels; z semi-axes are halved (coarser slices)
TOUCHING_PROBABILITY = 0.5
BLOB_CONTRAST = (0.2, 0.4)
NOISE_STD = 0.03


def make_volume(rng: np.random.Generator, shape: tuple[int, int, int] = SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """One volume (uint8, z-y-x) and its instance labels (int32, 0 = background)."""
    instances, contrast = _blobs(rng, shape)
    background = 0.15 + 0.3 * _smooth_noise(rng, shape, 3) + 0.08 * _smooth_noise(rng, shape, 8)
    volume = (background + contrast) * _illumination(rng, shape)
    volume = ndimage.gaussian_filter(volume, sigma=(0.4, 0.8, 0.8))
    volume += rng.normal(0.0, NOISE_STD, shape).astype(np.float32)
    return np.rint(np.clip(volume, 0.0, 1.0) * 255).astype(np.uint8), instances


def generate_volumes(out: Path, count: int, seed: int, shape: tuple[int, int, int] = SHAPE) -> Path:
    """Write ``out/images/blobs_NNNN.nii.gz`` and ``out/labels/blobs_NNNN.nii.gz`` (0/1); volume
    ``i`` depends only on (seed, i)."""
    out = Path(out)
    geometry = Volume(np.zeros((1, 1, 1, 1), np.uint8), SPACING)
    for index in range(count):
        image, instances = make_volume(np.random.default_rng([seed, index]), shape)
        name = f"blobs_{index:04d}.nii.gz"
        write_volume(out / "images" / name, image, geometry)
        write_volume(out / "labels" / name, (instances > 0).astype(np.uint8), geometry)
    return out


def _blobs(rng: np.random.Generator, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Instance labels and each voxel's brightness above the background: a voxel belongs to the
    blob whose field (1 at its centre, 0 on its surface) is highest, so touching blobs meet along
    a natural dividing surface."""
    best = np.zeros(shape, np.float32)
    instances = np.zeros(shape, np.int32)
    contrast = np.zeros(shape, np.float32)
    centres: list[np.ndarray] = []
    grid = np.indices(shape, dtype=np.float32)
    for label in range(1, int(rng.integers(BLOBS[0], BLOBS[1] + 1)) + 1):
        radii = rng.uniform(*RADIUS, 3) * np.array([1 / SPACING[0], 1.0, 1.0])
        centre = _centre(rng, shape, centres, radii)
        centres.append(centre)
        distance = np.sqrt(sum(((grid[axis] - centre[axis]) / radii[axis]) ** 2 for axis in range(3)))
        field = 1.0 - distance
        wins = field > best
        best[wins], instances[wins] = field[wins], label
        contrast[wins] = rng.uniform(*BLOB_CONTRAST)
    return instances, contrast


def _centre(rng: np.random.Generator, shape: tuple[int, int, int], centres: list[np.ndarray], radii: np.ndarray) -> np.ndarray:
    if centres and rng.random() < TOUCHING_PROBABILITY:
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        return np.clip(centres[rng.integers(len(centres))] + 1.6 * radii * direction, 0, np.array(shape) - 1)
    return rng.uniform(0, 1, 3) * (np.array(shape) - 1)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int, int], cells: int) -> np.ndarray:
    """Value noise in 0..1 varying over about 1 / cells of each side."""
    coarse = rng.random((cells + 1,) * 3).astype(np.float32)
    zoomed = ndimage.zoom(coarse, [side / (cells + 1) for side in shape], order=3)
    return np.clip(zoomed[: shape[0], : shape[1], : shape[2]], 0.0, 1.0)


def _illumination(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    """A linear light gradient across the volume, from about 0.6 to 1.4."""
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    grid = np.indices(shape, dtype=np.float32) / np.array(shape, np.float32).reshape(3, 1, 1, 1) - 0.5
    return 1 + rng.uniform(0.4, 0.8) * np.tensordot(direction.astype(np.float32), grid, axes=1)
