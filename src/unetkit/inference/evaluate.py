"""Full-resolution evaluation of a Predictor over records: the one path behind `unetkit evaluate`
and the validation of every training epoch."""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from unetkit.config import Config, DataConfig
from unetkit.data.annotations import read_annotation
from unetkit.data.reading import read_image
from unetkit.data.records import Record, map_labels
from unetkit.data.volumes import is_volume_record, read_volume_record, slice_records
from unetkit.data.instance_maps import instance_target_maps, objects_of
from unetkit.data.weights import weight_map_for
from unetkit.errors import DataError, UnetkitError, naming
from unetkit.inference.postprocess import (
    has_postprocessing,
    instances_for,
    labels_from_probabilities,
    without_postprocessing,
)
from unetkit.inference.predictor import Predictor
from unetkit.metrics import ConfusionMatrix, object_scores, pooled_scores

LossFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None", "torch.Tensor | None"], torch.Tensor]
Objects = tuple[np.ndarray, np.ndarray]  # (predicted instances, true instances)
SampleFn = Callable[[np.ndarray, np.ndarray, np.ndarray, "Objects | None"], None]

log = logging.getLogger(__name__)

# Per-image object metrics averaged over the images in a report (``metrics.object_scores``).
OBJECT_METRICS = ("dsb_score", "ap_50", "precision_50", "recall_50", "f1_50", "pq", "aji", "seg")


@dataclass
class EvaluationState:
    """What a (possibly sharded) evaluation accumulates; sums, so ranks can be all-reduced."""

    confusion: ConfusionMatrix
    loss_sum: float = 0.0
    images: list[dict] = field(default_factory=list)
    raw_confusion: ConfusionMatrix | None = None  # without the post-processing, where there is some
    failed: dict[str, str] = field(default_factory=dict)  # image -> why it was skipped

    @property
    def count(self) -> int:
        return len(self.images)


def logits_from_probabilities(probabilities: torch.Tensor, classes: int | None = None) -> torch.Tensor:
    """Logits whose sigmoid/softmax (``to_probabilities``) gives ``probabilities`` (N, K + maps, H, W)
    back, so the training loss applies to stitched (tiled, blended) predictions."""
    eps = 1e-6
    classes = probabilities.shape[1] if classes is None else classes
    clamped = probabilities.clamp(eps, 1 - eps)
    sigmoid_logits = torch.log(clamped) - torch.log1p(-clamped)
    if classes == 1:
        return sigmoid_logits
    return torch.cat([torch.log(clamped[:, :classes]), sigmoid_logits[:, classes:]], dim=1)


def read_truth(record: Record, config: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(image, class ids uint8 (H, W), instances or None) of a record, the mask checked against the
    image; a volume record's are (D, H, W, C) and (D, H, W)."""
    if is_volume_record(record):
        image = read_volume_record(record, config.data.max_pixels).array
    else:
        image = read_image(record.image, record.page, config.data.max_pixels)
    raw, instances = read_annotation(record, config.data.max_pixels)
    if raw.shape != image.shape[: raw.ndim]:
        raise DataError(
            f"{record.masks[0] if record.masks else record.image}: mask is {raw.shape[1]}x{raw.shape[0]} "
            f"but image {record.image} is {image.shape[1]}x{image.shape[0]}"
        )
    try:
        return image, map_labels(raw, config.data.labels), instances
    except ValueError as exc:
        raise DataError(f"{record.masks[0]}: {exc}; retrain with matching --classes") from None


def evaluate_records(
    predictor: Predictor,
    records: Sequence[Record],
    config: Config,
    *,
    loss_fn: LossFn | None = None,
    instances: bool = False,
    on_sample: SampleFn | None = None,
    samples: int = 0,
    skip_failed: bool = False,
) -> EvaluationState:
    """Predict every record at full resolution and accumulate confusion matrix, loss and per-image
    scores. ``on_sample(image, truth, prediction, objects)`` receives the first ``samples``
    images; ``objects`` is (predicted, true) instances where ``instances`` scored them, else None.
    ``skip_failed``: a record that cannot be read or predicted is logged and listed in ``failed``.

    Where ``config.predict`` holds post-processing (chosen on validation), the scores without it
    are kept beside (``raw_confusion``, each image's ``raw``)."""
    if config.model.dims == 2 and records and is_volume_record(records[0]):
        records = slice_records(records)  # a 2D model is evaluated on the volumes' slices
    raw = dataclasses.replace(config, predict=without_postprocessing(config)) if has_postprocessing(config) else None
    state = EvaluationState(_confusion(config), raw_confusion=_confusion(config) if raw else None)
    for index, record in enumerate(records):
        try:
            image, truth, true_instances = read_truth(record, config)
            probabilities = predictor.predict_image(image)
        except UnetkitError as error:
            reason = naming(record.image, error)  # one image among many
            if not skip_failed:
                raise type(error)(reason) from None
            state.failed[str(record.image)] = reason
            log.error("unetkit: error: %s (skipped)", reason)
            continue
        prediction = predictor.labels(probabilities)
        target = torch.from_numpy(truth.astype(np.int64))
        scores = {"name": record.name, "image": str(record.image), **_count(state.confusion, prediction, target)}
        if loss_fn is not None:
            scores["loss"] = _loss(loss_fn, probabilities, truth, true_instances, config)
            state.loss_sum += scores["loss"]
        objects = None
        if instances and true_instances is not None:
            objects = (instances_for(probabilities, config), true_instances)
            scores.update(object_scores(*objects))
        if raw is not None:
            scores["raw"] = _count(state.raw_confusion, labels_from_probabilities(probabilities, raw), target)
            if instances and true_instances is not None:
                scores["raw"].update(object_scores(instances_for(probabilities, raw), true_instances))
        state.images.append(scores)
        if on_sample is not None and index < samples:
            on_sample(image, truth, prediction, objects)
    return state


def summarize(state: EvaluationState) -> dict:
    """The evaluation report: means over the whole set (from the pooled confusion matrix), per class,
    per image, and the instance scores averaged over images when they were computed; ``raw``: the
    same means without the post-processing, where there was some."""
    report = state.confusion.compute()
    report["images"] = state.images
    report["failed"] = state.failed
    if state.count and "loss" in state.images[0]:
        report["loss"] = state.loss_sum / state.count
    report.update(_mean_instance_scores(state.images))
    if state.raw_confusion is not None:
        raw = state.raw_confusion.compute()
        raw.update(_mean_instance_scores([image["raw"] for image in state.images]))
        report["raw"] = raw
    return report


def _confusion(config: Config) -> ConfusionMatrix:
    labels = config.data.labels
    return ConfusionMatrix(max(2, config.model.classes), labels.ignore_index, labels.names)


def _count(pooled: ConfusionMatrix, prediction: np.ndarray, target: torch.Tensor) -> dict:
    """Add one image to the pooled matrix; its own Dice, IoU and accuracy."""
    predicted = torch.from_numpy(prediction.astype(np.int64))
    pooled.update(predicted, target)
    image = ConfusionMatrix(pooled.num_classes, pooled.ignore_index, pooled.names)
    image.update(predicted, target)
    result = image.compute()
    return {key: result[key] for key in ("dice", "iou", "pixel_accuracy")}


def _mean_instance_scores(images: list[dict]) -> dict:
    """The object metrics averaged over the images that have them (SEG skips images without true
    objects, where it is NaN), and under ``pooled`` the dataset-level figures of the summed counts."""
    scored = [image for image in images if "dsb_score" in image]
    if not scored:
        return {}
    means = {}
    for key in OBJECT_METRICS:
        values = [image[key] for image in scored if not math.isnan(image[key])]
        if values:
            means[key] = float(np.mean(values))
    means["pooled"] = pooled_scores(scored)
    return means


def _loss(loss_fn: LossFn, probabilities: np.ndarray, truth: np.ndarray, true_instances: np.ndarray | None, config: Config) -> float:
    """The training loss of one stitched prediction, with the weight map and instance maps the
    training loader would give it."""
    logits = logits_from_probabilities(torch.from_numpy(probabilities)[None], config.model.classes)
    weight = _loss_weight(loss_fn, truth, true_instances, config.data)
    maps = None
    if config.model.instance_maps:
        objects = objects_of(truth, true_instances, config.data.labels)
        maps = torch.from_numpy(instance_target_maps(objects, config.model.instance_maps)).permute(2, 0, 1)[None]
    return float(loss_fn(logits, torch.from_numpy(truth.astype(np.int64))[None], weight, maps))


def _loss_weight(
    loss_fn: LossFn, truth: np.ndarray, true_instances: np.ndarray | None, data: DataConfig
) -> torch.Tensor | None:
    """The border weight map (1, H, W) of the truth for losses that need one (``weighted-*``), as
    the training loader makes it; None for the others, which then weigh every pixel alike."""
    if not getattr(loss_fn, "needs_weight_map", False):
        return None
    return torch.from_numpy(weight_map_for(truth, true_instances, data))[None]
