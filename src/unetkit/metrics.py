"""Segmentation metrics: a confusion-matrix accumulator for semantic labels (pixel accuracy, Dice,
IoU) and per-image instance scores (the DSB-2018 score, the Cell Tracking Challenge SEG measure)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from unetkit.errors import ConfigError

# DSB-2018: the precision is averaged over these IoU thresholds.
DSB_THRESHOLDS = np.linspace(0.5, 0.95, 10)


class ConfusionMatrix:
    """Accumulates a (truth x prediction) pixel count matrix over a whole evaluation.

    ``num_classes`` is at least 2: a binary (one-logit) model has classes background and
    foreground. The matrix lives on the device of the labels it is fed and ``update`` never waits
    for the device, so evaluation keeps the GPU busy; ``compute`` reads it back once.

    ``compute`` returns plain Python values (JSON-ready):

    - ``pixel_accuracy``: correct / all non-ignored pixels;
    - ``dice``, ``iou``: means over the foreground classes 1..K-1 (for binary: the foreground
      class) that are *present*, i.e. in the truth or in the prediction. A class absent from both
      has no defined score: it is left out of the means and reported as None in ``per_class``.
    - ``per_class``: one ``{class, name, dice, iou, support}`` per class, support = truth pixels.

    Where nothing is present at all (empty truth, empty prediction, or no pixel counted) there is
    nothing to get wrong: the means and the accuracy are 1.0, never NaN.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, names: list[str] | None = None) -> None:
        self.num_classes = max(2, num_classes)
        self.ignore_index = ignore_index
        if names is not None and len(names) != self.num_classes:
            raise ConfigError(
                f"data.labels.names has {len(names)} names for {self.num_classes} classes; give one name per class"
            )
        self.names = list(names) if names is not None else [f"class {index}" for index in range(self.num_classes)]
        self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Count the pixels of ``pred`` against ``target`` (both long, (N, H, W) or (H, W)).

        Target pixels equal to ``ignore_index`` or outside 0..K-1 are not counted; predictions must
        lie in 0..K-1. Counting is a scatter-add rather than ``torch.bincount``, whose CUDA kernel
        reads the input's min and max back to the host.
        """
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        if self.matrix.device != target.device:
            self.matrix = self.matrix.to(target.device)
        classes = self.num_classes
        target = target.reshape(-1).long()
        pred = pred.reshape(-1).long().to(target.device)
        counted = (target != self.ignore_index) & (target >= 0) & (target < classes)
        # Uncounted pixels go to an extra bin past the matrix, dropped below: no boolean indexing,
        # whose output size would have to be read back from the device.
        cell = torch.where(counted, target * classes + pred, classes * classes)
        counts = torch.zeros(classes * classes + 1, dtype=torch.int64, device=target.device)
        counts.scatter_add_(0, cell, torch.ones_like(cell))
        self.matrix += counts[:-1].view(classes, classes)

    def reset(self) -> None:
        self.matrix.zero_()

    def reduce_from_all_processes(self) -> None:
        """Sum the matrices of all processes (torch.distributed); a no-op in a single process."""
        if not (dist.is_available() and dist.is_initialized()):
            return
        device = self.matrix.device
        if dist.get_backend() == "nccl":  # NCCL reduces only CUDA tensors
            device = torch.device("cuda", torch.cuda.current_device())
        reduced = self.matrix.to(device)
        dist.all_reduce(reduced)
        self.matrix = reduced

    def compute(self) -> dict[str, Any]:
        matrix = self.matrix.cpu().double()
        true_positive = matrix.diag()
        truth = matrix.sum(dim=1)
        predicted = matrix.sum(dim=0)
        union = truth + predicted - true_positive
        present = union > 0
        dice = torch.where(present, 2 * true_positive / (truth + predicted).clamp_min(1), 1.0)
        iou = torch.where(present, true_positive / union.clamp_min(1), 1.0)
        foreground = present[1:]
        total = matrix.sum()
        per_class = [
            {
                "class": index,
                "name": self.names[index],
                "dice": float(dice[index]) if present[index] else None,
                "iou": float(iou[index]) if present[index] else None,
                "support": int(truth[index]),
            }
            for index in range(self.num_classes)
        ]
        return {
            "pixel_accuracy": float(true_positive.sum() / total) if total > 0 else 1.0,
            "dice": float(dice[1:][foreground].mean()) if foreground.any() else 1.0,
            "iou": float(iou[1:][foreground].mean()) if foreground.any() else 1.0,
            "per_class": per_class,
        }


def _object_index(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Flat labels renumbered 0 (background), 1..n (objects, in label order), and n."""
    ids = np.unique(labels)
    ids = ids[ids != 0]
    flat = labels.ravel()
    index = np.where(flat == 0, 0, np.searchsorted(ids, flat) + 1)
    return index, ids.size


def _overlaps(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(intersection (n_true, n_pred), true areas (n_true,), predicted areas (n_pred,)) in pixels.

    Labels are any integers, 0 = background. One joint histogram of the paired labels gives every
    pairwise intersection at once, with no loop over objects.
    """
    if pred.shape != true.shape:
        raise ValueError(f"predicted instances {pred.shape} and true instances {true.shape} differ in shape")
    pred_index, n_pred = _object_index(pred)
    true_index, n_true = _object_index(true)
    joint = np.bincount(true_index * (n_pred + 1) + pred_index, minlength=(n_true + 1) * (n_pred + 1))
    joint = joint.reshape(n_true + 1, n_pred + 1)
    return joint[1:, 1:], joint[1:, :].sum(axis=1), joint[:, 1:].sum(axis=0)


def _iou(intersection: np.ndarray, true_area: np.ndarray, pred_area: np.ndarray) -> np.ndarray:
    union = true_area[:, None] + pred_area[None, :] - intersection
    return intersection / np.maximum(union, 1)


def instance_iou(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """IoU matrix (n_true, n_pred) between the objects of two instance label images (0 = background)."""
    return _iou(*_overlaps(pred, true))


def dsb_score(pred_instances: np.ndarray, true_instances: np.ndarray) -> float:
    """The Data Science Bowl 2018 score of one image.

    For each IoU threshold t in 0.5, 0.55, ..., 0.95 a predicted object matches a true one when
    their IoU > t (above 0.5 a match is unique); the image's precision at t is
    TP / (TP + FP + FN), and the score is its mean over the thresholds. Both images empty: 1.0.
    """
    return dsb_score_of_iou(instance_iou(pred_instances, true_instances))


def dsb_score_of_iou(iou: np.ndarray) -> float:
    """``dsb_score`` from the IoU matrix (n_true, n_pred) of ``instance_iou``; dropping predicted
    objects drops their columns, so many filterings of one prediction are scored cheaply."""
    n_true, n_pred = iou.shape
    if n_true == 0 and n_pred == 0:
        return 1.0
    precisions = []
    for threshold in DSB_THRESHOLDS:
        true_positive = int((iou > threshold).sum())
        precisions.append(true_positive / (n_true + n_pred - true_positive))
    return float(np.mean(precisions))


def seg_measure(pred: np.ndarray, true: np.ndarray) -> float:
    """The Cell Tracking Challenge SEG measure of one image: the mean over reference objects R of
    the Jaccard index |R n S| / |R u S| with the predicted object S covering more than half of R
    (0 when there is none). False positives do not count, as in the challenge.

    With no reference object the measure is undefined and this returns NaN, so that averaging
    over a dataset with ``np.nanmean`` skips such images instead of rewarding or punishing them.
    (The challenge itself averages over all reference objects of a dataset; weight by the object
    count to reproduce that.)
    """
    intersection, true_area, pred_area = _overlaps(pred, true)
    if true_area.size == 0:
        return float("nan")
    covers_half = 2 * intersection > true_area[:, None]
    jaccard = np.where(covers_half, _iou(intersection, true_area, pred_area), 0.0)
    return float(jaccard.max(axis=1, initial=0.0).mean())
