"""The embedded demo dataset: microscopy-like images of touching blobs, generated on the fly.

Each image has nuclei-like blobs of varied size and shape, some touching, on a textured, noisy,
unevenly lit background. A blob is brighter than the background right around it, but the
illumination gradient and the texture make bright background patches brighter than dim blobs, so
no global intensity threshold segments the image: the model has to learn local contrast and
shape, which is what a U-Net is for. Deterministic for a seed; about 10 ms per 128x128 image.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from unetkit.atomic import atomic_path
from unetkit.data.writing import write_instances, write_mask

BLOBS_PER_128_SQUARE = (8, 16)  # blob count range, scaled with the image area
RADIUS_FRACTION = (0.04, 0.10)  # blob semi-axes as a fraction of the image side
TOUCHING_PROBABILITY = 0.5  # a new blob is placed against an earlier one
BLOB_CONTRAST = (0.2, 0.4)  # blob brightness above its local background
NOISE_STD = 0.03


def make_sample(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One image (size x size uint8 grey) and its instance labels (int32, 0 = background)."""
    instances, contrast = _blobs(rng, size)
    background = 0.15 + 0.3 * _smooth_noise(rng, size, cells=4) + 0.08 * _smooth_noise(rng, size, cells=16)
    image = (background + contrast) * _illumination(rng, size)
    image = cv2.GaussianBlur(image, (0, 0), 0.8)  # optics: soft blob edges
    image += rng.normal(0.0, NOISE_STD, image.shape).astype(np.float32)
    return np.rint(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8), instances


def generate_dataset(out: Path, n_images: int, size: int, seed: int) -> Path:
    """Write ``out/images/*.png`` (8-bit grey), ``out/masks/*.png`` (0/255) and
    ``out/instances/*.png`` (16-bit instance labels); image ``i`` depends only on (seed, i)."""
    out = Path(out)
    for index in range(n_images):
        image, instances = make_sample(np.random.default_rng([seed, index]), size)
        name = f"blobs_{index:04d}.png"
        with atomic_path(out / "images" / name) as tmp:
            Image.fromarray(image).save(tmp, format="PNG")
        write_mask(out / "masks" / name, (instances > 0).astype(np.uint8), classes=1)
        write_instances(out / "instances" / name, instances)
    return out


def _blobs(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Instance labels and each pixel's brightness above the background (0 off the blobs).

    Every blob is a wobbly ellipse with a field that is 1 at its centre and 0 on its outline; a
    pixel belongs to the blob with the highest field, so overlapping blobs meet along a natural
    dividing line, like touching nuclei.
    """
    low, high = BLOBS_PER_128_SQUARE
    count = max(1, round(rng.integers(low, high + 1) * (size / 128) ** 2))
    best_field = np.zeros((size, size), np.float32)
    instances = np.zeros((size, size), np.int32)
    contrast = np.zeros((size, size), np.float32)
    centres: list[np.ndarray] = []
    for label in range(1, count + 1):
        radii = rng.uniform(*RADIUS_FRACTION, 2) * size
        centre = _blob_centre(rng, size, centres, radii.max())
        centres.append(centre)
        window, field = _blob_field(rng, size, centre, radii)
        wins = field > best_field[window]
        best_field[window][wins] = field[wins]
        instances[window][wins] = label
        contrast[window][wins] = rng.uniform(*BLOB_CONTRAST)
    return _consecutive(instances), contrast


def _blob_centre(rng: np.random.Generator, size: int, centres: list[np.ndarray], radius: float) -> np.ndarray:
    if centres and rng.random() < TOUCHING_PROBABILITY:
        neighbour = centres[rng.integers(len(centres))]
        angle = rng.uniform(0, 2 * np.pi)
        return np.clip(neighbour + 1.6 * radius * np.array([np.sin(angle), np.cos(angle)]), 0, size - 1)
    return rng.uniform(0, size, 2)


def _blob_field(
    rng: np.random.Generator, size: int, centre: np.ndarray, radii: np.ndarray
) -> tuple[tuple[slice, slice], np.ndarray]:
    """The blob's bounding window and its field there (> 0 inside the blob)."""
    reach = int(np.ceil(radii.max() * 1.2))
    top, left = (max(int(c) - reach, 0) for c in centre)
    bottom, right = (min(int(c) + reach + 1, size) for c in centre)
    ys, xs = np.mgrid[top:bottom, left:right].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    dy, dx = ys - centre[0], xs - centre[1]
    along = dx * np.cos(angle) + dy * np.sin(angle)
    across = -dx * np.sin(angle) + dy * np.cos(angle)
    theta = np.arctan2(across, along)
    wobble = 1 + 0.08 * np.sin(3 * theta + rng.uniform(0, 2 * np.pi))
    distance = np.sqrt((along / radii[0]) ** 2 + (across / radii[1]) ** 2) / wobble
    return (slice(top, bottom), slice(left, right)), (1 - distance).astype(np.float32)


def _consecutive(instances: np.ndarray) -> np.ndarray:
    """Labels 1..n without gaps (blobs fully covered by later ones disappear)."""
    ids, inverse = np.unique(instances, return_inverse=True)
    offset = 0 if ids[0] == 0 else 1
    return (inverse.reshape(instances.shape) + offset).astype(np.int32)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise in 0..1 varying over about size / cells pixels (Perlin-like texture)."""
    coarse = rng.random((cells + 1, cells + 1)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def _illumination(rng: np.random.Generator, size: int) -> np.ndarray:
    """A linear light gradient across the field of view, from about 0.55 to 1.45."""
    angle = rng.uniform(0, 2 * np.pi)
    strength = rng.uniform(0.5, 0.9)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    return 1 + strength * (xs * np.cos(angle) + ys * np.sin(angle))
