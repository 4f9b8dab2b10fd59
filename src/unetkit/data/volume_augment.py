"""Augmentation of 3D training patches, in numpy: mirroring along every axis, quarter turns in-plane
(z stays z: slices are often coarser than pixels) and, beyond ``light``, nnU-Net's intensity
augmentations (brightness, contrast, gamma, noise) on the normalised patch.

TorchIO and MONAI hold the same transforms but bring heavy dependencies; these few lines are the
part a U-Net needs, seeded by the caller's generator so a patch depends only on its seed.
"""

from __future__ import annotations

import numpy as np

from unetkit.errors import ConfigError

MODES = ("none", "light", "paper", "strong")
BRIGHTNESS = (0.75, 1.25)  # nnU-Net's multiplicative brightness range
CONTRAST = (0.75, 1.25)
GAMMA = (0.7, 1.5)
NOISE_STD = (0.0, 0.1)  # of the normalised intensities (unit std)
P_BRIGHTNESS = P_CONTRAST = 0.15
P_GAMMA = 0.3
P_NOISE = 0.1


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ConfigError(f"--augment {mode!r} is not one of {list(MODES)}")


def augment_patch(image: np.ndarray, labels: np.ndarray, mode: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (C, D, H, W) normalised float32 and ``labels`` (D, H, W), augmented alike."""
    check_mode(mode)
    if mode == "none":
        return image, labels
    for axis in range(3):
        if rng.random() < 0.5:
            image, labels = np.flip(image, axis + 1), np.flip(labels, axis)
    if image.shape[-1] == image.shape[-2]:
        turns = int(rng.integers(4))
        image, labels = np.rot90(image, turns, axes=(2, 3)), np.rot90(labels, turns, axes=(1, 2))
    image = np.ascontiguousarray(image, dtype=np.float32)
    if mode != "light":
        image = _intensity(image, rng)
    return image, np.ascontiguousarray(labels)


def _intensity(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """nnU-Net's intensity steps on a normalised patch, each with its own probability."""
    if rng.random() < P_BRIGHTNESS:
        image = image * np.float32(rng.uniform(*BRIGHTNESS))
    if rng.random() < P_CONTRAST:
        mean = image.mean(axis=(1, 2, 3), keepdims=True)
        image = (image - mean) * np.float32(rng.uniform(*CONTRAST)) + mean
    if rng.random() < P_GAMMA:
        image = _gamma(image, float(rng.uniform(*GAMMA)))
    if rng.random() < P_NOISE:
        image = image + rng.normal(0.0, rng.uniform(*NOISE_STD), image.shape).astype(np.float32)
    return image.astype(np.float32, copy=False)


def _gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    """Gamma on each channel's range mapped to 0..1 and back (the intensities keep their span)."""
    low = image.min(axis=(1, 2, 3), keepdims=True)
    span = np.maximum(image.max(axis=(1, 2, 3), keepdims=True) - low, 1e-6)
    return np.power((image - low) / span, gamma) * span + low
