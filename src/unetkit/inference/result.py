"""What a predictor gives for one image in Python: the mask, the class probabilities and, on first
use, the objects (``predictor(image)``)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from unetkit.config import Config
from unetkit.data.reading import read_image
from unetkit.inference.postprocess import class_probabilities, instances_for

if TYPE_CHECKING:
    from unetkit.inference.predictor import Predictor

ImageLike = Union[np.ndarray, str, Path]


@dataclass
class Result:
    """One image's prediction.

    Attributes:
        mask: class ids, uint8 (H, W), after the post-processing chosen on validation (threshold,
            small objects removed).
        probabilities: float32 (K, H, W): the foreground's probability (K = 1, binary models) or
            each class's (K >= 2).
        instances: object ids, int32 (H, W), 0 for background: the objects cut apart by a seeded
            watershed (on the model's instance maps where it learned some). Computed when first read.
    """

    mask: np.ndarray
    probabilities: np.ndarray
    outputs: np.ndarray = field(repr=False)  # every output channel: the classes', then the instance maps'
    config: Config = field(repr=False)

    @functools.cached_property
    def instances(self) -> np.ndarray:
        return instances_for(self.outputs, self.config)


def predict(predictor: Predictor, image: ImageLike) -> Result:
    """``predictor``'s Result for an image array (H, W[, C]) as ``read_image`` gives it, or an image file."""
    if isinstance(image, (str, Path)):
        image = read_image(image, None, predictor.config.data.max_pixels)
    outputs = predictor.predict_image(image)
    return Result(predictor.labels(outputs), class_probabilities(outputs, predictor.config.model), outputs, predictor.config)
