"""Segmentation metrics of tensors and label images, no file IO: pixels (a confusion matrix,
all-reduced over processes) and objects (the instance metrics of the field)."""

from unetkit.metrics.objects import (
    DSB_THRESHOLDS,
    dsb_score,
    dsb_score_of_iou,
    ObjectErrors,
    instance_iou,
    object_errors,
    object_scores,
    pooled_scores,
    seg_measure,
)
from unetkit.metrics.pixels import ConfusionMatrix

__all__ = [
    "ConfusionMatrix",
    "DSB_THRESHOLDS",
    "dsb_score",
    "dsb_score_of_iou",
    "ObjectErrors",
    "instance_iou",
    "object_errors",
    "object_scores",
    "pooled_scores",
    "seg_measure",
]
