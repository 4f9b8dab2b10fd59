"""From a foreground probability map to labelled object instances (nuclei, cells)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.segmentation import relabel_sequential, watershed



def foreground_probability(probabilities: np.ndarray) -> np.ndarray:
    """(K, H, W) class probabilities -> (H, W): a binary model's one channel, else 1 - P(background)."""
    return probabilities[0] if probabilities.shape[0] == 1 else 1.0 - probabilities[0]

def instances_from_probabilities(
    foreground_prob: np.ndarray,
    threshold: float = 0.5,
    min_distance: int = 5,
    min_size: int = 16,
) -> np.ndarray:
    """Instance labels int32 (H, W), 0 = background, objects numbered 1..n.

    Pixels with probability >= ``threshold`` are foreground. Touching objects are split by a
    watershed on the distance transform, seeded at its local maxima at least ``min_distance``
    pixels apart; objects smaller than ``min_size`` pixels are dropped.
    """
    foreground = np.asarray(foreground_prob) >= threshold
    components, _ = ndimage.label(foreground)
    distance = ndimage.distance_transform_edt(foreground)
    peaks = peak_local_max(distance, min_distance=max(1, min_distance), labels=components, exclude_border=False)
    peak_mask = np.zeros(foreground.shape, dtype=bool)
    peak_mask[tuple(peaks.T)] = True
    # Neighbouring peaks on a plateau of the distance map are one seed, not several.
    markers, _ = ndimage.label(peak_mask)
    instances = watershed(-distance, markers, mask=foreground)
    sizes = np.bincount(instances.ravel())
    instances[sizes[instances] < min_size] = 0
    return relabel_sequential(instances)[0].astype(np.int32)
