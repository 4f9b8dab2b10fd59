"""The U-Net paper's per-pixel loss weight map (Ronneberger et al. 2015, eq. 2).

``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))`` where ``w_c`` balances the class
frequencies and d1, d2 are the distances to the nearest and the second-nearest object. The border
term exists to make the network separate touching objects, so it is added to background pixels
only: the thin background gaps between two objects get the largest weights (about ``w_c + w0``),
objects themselves get just their class weight.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from unetkit.config import DataConfig
from unetkit.data.instance_maps import objects_of
from unetkit.errors import ConfigError

# Objects farther than this many sigmas are not looked at: their border term would be below
# w0 * exp(-CUTOFF_SIGMAS**2 / 2) = 3.7e-6 * w0, and the cut makes the map fast with many objects.
CUTOFF_SIGMAS = 5.0


def balanced_class_weights(semantic: np.ndarray) -> tuple[float, float]:
    """(w_background, w_foreground) = total / (2 * count) for each class; nonzero is foreground.

    Each class then carries half of the total weight, and the mean weight over the image is
    exactly 1, so the loss keeps its unweighted scale. With one class absent there is nothing to
    balance: (1.0, 1.0).
    """
    total = semantic.size
    foreground = int(np.count_nonzero(semantic))
    background = total - foreground
    if foreground == 0 or background == 0:
        return 1.0, 1.0
    return total / (2 * background), total / (2 * foreground)


def border_weight_map(
    instances: np.ndarray,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: tuple[float, float] | None = None,
) -> np.ndarray:
    """The paper's weight map (float32, (H, W)) for an instance label image (0 = background).

    ``class_weights`` = (w_background, w_foreground) gives w_c; None balances this image's own
    class frequencies (``balanced_class_weights``). With fewer than two objects the border term
    is 0 everywhere. Distances are Euclidean between pixel centres, so a one-pixel gap between two
    objects has d1 = d2 = 1.
    """
    if instances.ndim != 2 or not np.issubdtype(instances.dtype, np.integer):
        raise ValueError(f"instances must be a 2-D integer label image, got {instances.dtype} {instances.shape}")
    if sigma <= 0:
        raise ConfigError(f"data.weight_sigma must be > 0, got {sigma}")
    foreground = instances != 0
    if class_weights is None:
        class_weights = balanced_class_weights(foreground)
    background_weight, foreground_weight = class_weights
    nearest, second = _two_nearest_object_distances(instances, cutoff=CUTOFF_SIGMAS * sigma)
    border = w0 * np.exp(-((nearest + second) ** 2) / (2 * sigma**2))
    weights = np.where(foreground, foreground_weight, background_weight + border)
    return weights.astype(np.float32)


def _two_nearest_object_distances(instances: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the distances to the nearest and second-nearest object (inf where none within
    ``cutoff``): one distance transform per object, on its bounding box grown by ``cutoff``."""
    nearest = np.full(instances.shape, np.inf)
    second = np.full(instances.shape, np.inf)
    ids, inverse = np.unique(instances, return_inverse=True)
    consecutive = inverse.reshape(instances.shape) + 1  # any label values -> 1..len(ids), boxes below
    margin = math.ceil(cutoff)
    for label, (value, box) in enumerate(zip(ids, ndimage.find_objects(consecutive)), start=1):
        if value == 0:
            continue
        window = tuple(
            slice(max(axis.start - margin, 0), min(axis.stop + margin, size))
            for axis, size in zip(box, instances.shape)
        )
        distance = ndimage.distance_transform_edt(consecutive[window] != label)
        # Keep the two smallest of (nearest, second, distance), knowing nearest <= second.
        second[window] = np.minimum(second[window], np.maximum(nearest[window], distance))
        nearest[window] = np.minimum(nearest[window], distance)
    return nearest, second


def weight_map_for(labels: np.ndarray, instances: np.ndarray | None, data: DataConfig) -> np.ndarray:
    """The border weight map of one mask (class ids, (H, W)) with ``data``'s w0 and sigma, around
    its objects (``instance_maps.objects_of``: the instances, else connected components). Touching
    foreground objects without instance labels merge into one, so their border gets no extra weight."""
    return border_weight_map(objects_of(labels, instances, data.labels), data.weight_w0, data.weight_sigma)
