"""Per-image pictures of an evaluation: image | truth | prediction | errors (| objects, where
instances were scored), drawn as it runs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from unetkit.report.figures import data_uri, display_rgb, error_overlay, label_rgb, object_outlines, png_bytes

PANEL_SIDE = 256  # longest side of an embedded picture: the report stays small for big images


@dataclass(frozen=True)
class Panel:
    false_positives: int
    false_negatives: int
    pictures: dict[str, str]  # title -> data URI: image, truth, prediction, errors (and objects)

    @property
    def errors(self) -> int:
        return self.false_positives + self.false_negatives


class PanelCollector:
    """An ``on_sample`` callback for ``evaluate_records``: one ``Panel`` per evaluated image, in order."""

    def __init__(self, ignore_index: int, side: int = PANEL_SIDE) -> None:
        self.ignore_index = ignore_index
        self.side = side
        self.panels: list[Panel] = []

    def __call__(
        self, image: np.ndarray, truth: np.ndarray, prediction: np.ndarray, objects: tuple[np.ndarray, np.ndarray] | None = None
    ) -> None:
        wrong = (truth != self.ignore_index) & (prediction != truth)
        rgb = display_rgb(image)
        pictures = {
            "image": rgb,
            "truth": label_rgb(truth, self.ignore_index),
            "prediction": label_rgb(prediction, self.ignore_index),
            "errors": error_overlay(rgb, truth, prediction, self.ignore_index),
        }
        if objects is not None:  # (predicted, true) instances
            pictures["objects"] = object_outlines(rgb, *objects, width=math.ceil(max(rgb.shape[:2]) / self.side))
        self.panels.append(
            Panel(
                false_positives=int((wrong & (prediction > 0)).sum()),
                false_negatives=int((wrong & (prediction == 0)).sum()),
                pictures={title: data_uri(png_bytes(self._shrunk(picture))) for title, picture in pictures.items()},
            )
        )

    def _shrunk(self, picture: np.ndarray) -> np.ndarray:
        height, width = picture.shape[:2]
        scale = self.side / max(height, width)
        if scale >= 1:
            return picture
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        return np.asarray(Image.fromarray(picture).resize(size, Image.Resampling.NEAREST))
