"""Full-resolution evaluation of a Predictor over records: the one path behind `unetkit evaluate`
and the validation of every training epoch."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from unetkit.config import Config, DataConfig
from unetkit.data.reading import read_annotation, read_image
from unetkit.data.records import Record, map_labels
from unetkit.data.weights import weight_map_for
from unetkit.errors import DataError
from unetkit.inference.postprocess import foreground_probability, instances_from_probabilities
from unetkit.inference.predictor import Predictor
from unetkit.metrics import ConfusionMatrix, dsb_score, seg_measure

LossFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]
SampleFn = Callable[[np.ndarray, np.ndarray, np.ndarray], None]


@dataclass
class EvaluationState:
    """What a (possibly sharded) evaluation accumulates; sums, so ranks can be all-reduced."""

    confusion: ConfusionMatrix
    loss_sum: float = 0.0
    images: list[dict] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.images)


def logits_from_probabilities(probabilities: torch.Tensor) -> torch.Tensor:
    """Logits whose sigmoid/softmax gives ``probabilities`` back, so the training loss applies to
    stitched (tiled, blended) predictions."""
    eps = 1e-6
    clamped = probabilities.clamp(eps, 1 - eps)
    if probabilities.shape[1] == 1:
        return torch.log(clamped) - torch.log1p(-clamped)
    return torch.log(clamped)


def evaluate_records(
    predictor: Predictor,
    records: Sequence[Record],
    config: Config,
    *,
    loss_fn: LossFn | None = None,
    instances: bool = False,
    on_sample: SampleFn | None = None,
    samples: int = 0,
) -> EvaluationState:
    """Predict every record at full resolution and accumulate confusion matrix, loss and per-image
    scores. ``on_sample(image, truth, prediction)`` receives the first ``samples`` images."""
    labels = config.data.labels
    classes = max(2, config.model.classes)
    state = EvaluationState(ConfusionMatrix(classes, labels.ignore_index, labels.names))
    for index, record in enumerate(records):
        image = read_image(record.image, record.page, config.data.max_pixels)
        raw, true_instances = read_annotation(record, config.data.max_pixels)
        if raw.shape != image.shape[:2]:
            raise DataError(
                f"{record.masks[0] if record.masks else record.image}: mask is {raw.shape[1]}x{raw.shape[0]} "
                f"but image {record.image} is {image.shape[1]}x{image.shape[0]}"
            )
        try:
            truth = map_labels(raw, labels)
        except ValueError as exc:
            raise DataError(f"{record.masks[0]}: {exc}; retrain with matching --classes") from None
        probabilities = torch.from_numpy(predictor.predict_image(image))
        prediction = predictor.labels(probabilities.numpy())
        target = torch.from_numpy(truth.astype(np.int64))
        predicted_labels = torch.from_numpy(prediction.astype(np.int64))
        image_confusion = ConfusionMatrix(classes, labels.ignore_index, labels.names)
        image_confusion.update(predicted_labels, target)
        state.confusion.update(predicted_labels, target)
        scores = {"name": record.name, "image": str(record.image), **_image_scores(image_confusion)}
        if loss_fn is not None:
            logits = logits_from_probabilities(probabilities[None])
            weight = _loss_weight(loss_fn, truth, true_instances, config.data)
            loss = float(loss_fn(logits, target[None], weight))
            state.loss_sum += loss
            scores["loss"] = loss
        if instances and true_instances is not None:
            predicted = instances_from_probabilities(foreground_probability(probabilities.numpy()), config.predict.threshold)
            scores["dsb_score"] = dsb_score(predicted, true_instances)
            scores["seg"] = seg_measure(predicted, true_instances)
        state.images.append(scores)
        if on_sample is not None and index < samples:
            on_sample(image, truth, prediction)
    return state


def summarize(state: EvaluationState) -> dict:
    """The evaluation report: means over the whole set (from the pooled confusion matrix), per class,
    per image, and the instance scores averaged over images when they were computed."""
    report = state.confusion.compute()
    report["images"] = state.images
    if state.count and "loss" in state.images[0]:
        report["loss"] = state.loss_sum / state.count
    for key in ("dsb_score", "seg"):
        values = [image[key] for image in state.images if key in image and not math.isnan(image[key])]
        if values:
            report[key] = float(np.mean(values))
    return report


def _loss_weight(
    loss_fn: LossFn, truth: np.ndarray, true_instances: np.ndarray | None, data: DataConfig
) -> torch.Tensor | None:
    """The border weight map (1, H, W) of the truth for losses that need one (``weighted-*``), as
    the training loader makes it; None for the others, which then weigh every pixel alike."""
    if not getattr(loss_fn, "needs_weight_map", False):
        return None
    return torch.from_numpy(weight_map_for(truth, true_instances, data))[None]


def _image_scores(confusion: ConfusionMatrix) -> dict:
    result = confusion.compute()
    return {key: result[key] for key in ("dice", "iou", "pixel_accuracy")}
