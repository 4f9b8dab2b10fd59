"""What the network learns about objects besides their class (``UNetConfig.instance_target``),
made from instance labels as the paper's weight maps are:

- ``border``: 1 on each object's inner outline (where it meets the background or another object),
  so touching objects are apart by a line the network must draw (the DSB-2018 winners' contour
  class);
- ``distance``: each pixel's distance to its object's border, divided by the object's largest, so 1
  at the centre of every object whatever its size and 0 at its border (StarDist's object
  probability): one peak per object for the watershed's seeds and landscape;
- ``core``: 1 where that distance is at least ``CORE_LEVEL``: one blob per object, apart from its
  neighbours' however they touch, a mask as easy to learn as the foreground (the seeds themselves).

The maps are float32 in 0..1, made once per image (before augmentation, which moves them with the
mask) and learned by the sigmoid channels after the class logits.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage
from skimage.segmentation import find_boundaries

from unetkit.config import LabelConfig

CORE_LEVEL = 0.5  # an object's core: the pixels at least half as far from its border as its centre


def objects_of(labels: np.ndarray, instances: np.ndarray | None, label_config: LabelConfig) -> np.ndarray:
    """The objects (int labels, 0 = none) of one mask: ``instances`` when the annotation has them,
    else the connected components of the class that fills the objects: the foreground, or with
    ``invert`` (the class of interest is the border itself, e.g. ISBI membranes) class 0, the cells
    that the membranes separate. Ignored pixels belong to no object."""
    if instances is not None:
        return instances
    ignore = label_config.ignore_index
    filled = labels == 0 if label_config.invert else (labels != 0) & (labels != ignore)
    return ndimage.label(filled)[0]


def instance_target_maps(objects: np.ndarray, maps: Sequence[str]) -> np.ndarray:
    """The named ``maps`` (H, W, len(maps)) float32 of an object label image (module docstring)."""
    outlines = find_boundaries(objects, mode="inner") & (objects != 0)
    made = {
        "border": lambda: outlines,
        "distance": lambda: _normalised_distance(objects, outlines),
        "core": lambda: _normalised_distance(objects, outlines) >= CORE_LEVEL,
    }
    unknown = sorted(set(maps) - set(made))
    if unknown:
        raise ValueError(f"unknown instance maps {unknown}; known: {sorted(made)}")
    return np.stack([made[name]().astype(np.float32) for name in maps], axis=-1).reshape(*objects.shape, len(maps))


def _normalised_distance(objects: np.ndarray, outlines: np.ndarray) -> np.ndarray:
    """Distance to the own object's outline (0 on it), divided by the object's largest distance."""
    inside = (objects != 0) & ~outlines
    distance = ndimage.distance_transform_edt(inside)
    ids = np.unique(objects)
    ids = ids[ids != 0]
    if not ids.size:
        return distance
    largest = np.zeros(int(ids.max()) + 1)
    largest[ids] = ndimage.maximum(distance, objects, ids)
    scale = largest[objects]
    return np.divide(distance, scale, out=np.zeros_like(distance), where=scale > 0)
