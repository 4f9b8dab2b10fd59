"""Object (instance) metrics of the field, from a predicted and a true instance label image
(0 = background, any other value one object):

- ``dsb_score``: the Data Science Bowl 2018 score, the mean over IoU thresholds 0.5, 0.55, ..., 0.95
  of TP / (TP + FP + FN) (the "mean average precision" of the DSB and of StarDist's papers);
- ``ap_50``: that ratio at IoU 0.5 alone; ``precision_50``, ``recall_50``, ``f1_50`` at IoU 0.5;
- ``pq``: panoptic quality (Kirillov et al. 2019), the summed IoU of the matches at IoU 0.5 over
  TP + FP / 2 + FN / 2: the mean IoU of the matches times the F1 at 0.5;
- ``aji``: the aggregated Jaccard index (Kumar et al. 2017, MoNuSeg): every true object with the
  predicted object of largest IoU with it, summed intersections over summed unions, plus the area
  of every predicted object no true object chose;
- ``seg``: the Cell Tracking Challenge SEG measure;
- ``split_objects``: true objects cut into pieces (two or more predicted objects lie mostly inside
  one), ``merged_objects``: predicted objects that swallow several true ones (two or more true
  objects lie mostly inside one); ``object_errors`` says which objects they are, for pictures.

A predicted object matches a true one when their IoU exceeds the threshold; above 0.5 a match is
unique (two objects cannot both cover more than half of a third), so no assignment is needed.
Per image both empty scores 1 (nothing to find, nothing invented), except SEG, which is NaN then.
``pooled_scores`` gives the dataset-level figures from the summed counts of every image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

# DSB-2018: the precision is averaged over these IoU thresholds.
DSB_THRESHOLDS = np.linspace(0.5, 0.95, 10)
MATCH_IOU = 0.5
# Per-image sums behind the pooled (dataset-level) figures.
COUNTS = ("true_objects", "predicted_objects", "matched_50", "matched_iou_50", "aji_intersection", "aji_union")
MOSTLY = 0.5  # an object lies mostly inside another when more than this share of its pixels do


def _object_index(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Flat labels renumbered 0 (background), 1..n (objects, in label order), and n."""
    ids = np.unique(labels)
    ids = ids[ids != 0]
    flat = labels.ravel()
    index = np.where(flat == 0, 0, np.searchsorted(ids, flat) + 1)
    return index, ids.size


def _overlaps(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(intersection (n_true, n_pred), true areas (n_true,), predicted areas (n_pred,)) in pixels.

    One joint histogram of the paired labels gives every pairwise intersection at once, with no
    loop over objects.
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
    """The Data Science Bowl 2018 score of one image (module docstring); both images empty: 1.0."""
    return dsb_score_of_iou(instance_iou(pred_instances, true_instances))


def dsb_score_of_iou(iou: np.ndarray) -> float:
    """``dsb_score`` from the IoU matrix (n_true, n_pred) of ``instance_iou``; dropping predicted
    objects drops their columns, so many filterings of one prediction are scored cheaply."""
    n_true, n_pred = iou.shape
    if n_true == 0 and n_pred == 0:
        return 1.0
    matched = np.array([_matched(iou, threshold) for threshold in DSB_THRESHOLDS])
    return float(np.mean(matched / (n_true + n_pred - matched)))


def _matched(iou: np.ndarray, threshold: float) -> int:
    return int((iou > threshold).sum())


def seg_measure(pred: np.ndarray, true: np.ndarray) -> float:
    """The Cell Tracking Challenge SEG measure of one image: the mean over reference objects R of
    the Jaccard index |R n S| / |R u S| with the predicted object S covering more than half of R
    (0 when there is none). False positives do not count, as in the challenge.

    With no reference object the measure is undefined and this returns NaN, so that averaging
    over a dataset with ``np.nanmean`` skips such images instead of rewarding or punishing them.
    (The challenge itself averages over all reference objects of a dataset; weight by the object
    count to reproduce that.)
    """
    return _seg(*_overlaps(pred, true))


def _seg(intersection: np.ndarray, true_area: np.ndarray, pred_area: np.ndarray) -> float:
    if true_area.size == 0:
        return float("nan")
    covers_half = 2 * intersection > true_area[:, None]
    jaccard = np.where(covers_half, _iou(intersection, true_area, pred_area), 0.0)
    return float(jaccard.max(axis=1, initial=0.0).mean())


def _aji_sums(intersection: np.ndarray, true_area: np.ndarray, pred_area: np.ndarray) -> tuple[int, int]:
    """(summed intersections, summed unions) of the aggregated Jaccard index. A true object that
    overlaps no prediction adds its area to the union alone (Hover-Net's reading of the definition)."""
    iou = _iou(intersection, true_area, pred_area)
    overlapping = iou.max(axis=1, initial=0.0) > 0
    rows = np.flatnonzero(overlapping)
    best = iou[rows].argmax(axis=1) if rows.size else np.zeros(0, dtype=int)
    inter = intersection[rows, best]
    union = true_area[rows] + pred_area[best] - inter
    unchosen = np.ones(pred_area.size, dtype=bool)
    unchosen[best] = False
    return int(inter.sum()), int(union.sum() + true_area[~overlapping].sum() + pred_area[unchosen].sum())


def _splits_and_merges(intersection: np.ndarray, true_area: np.ndarray, pred_area: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(true objects split, predicted objects merged) as boolean masks over their indices."""
    pieces = (intersection > MOSTLY * pred_area[None, :]).sum(axis=1)  # predictions mostly inside each true object
    swallowed = (intersection > MOSTLY * true_area[:, None]).sum(axis=0)  # true objects mostly inside each prediction
    return pieces >= 2, swallowed >= 2


@dataclass
class ObjectErrors:
    """Which objects of one image went wrong, as label sets of the two images."""

    matched: set[int]  # predicted labels matching a true object at IoU 0.5
    invented: set[int]  # predicted labels matching none and lying mostly outside every true object
    split: set[int]  # predicted labels that are pieces of a split true object
    merged: set[int]  # predicted labels covering several true objects
    missed: set[int]  # true labels no prediction matches


def object_errors(pred: np.ndarray, true: np.ndarray) -> ObjectErrors:
    """The objects behind the counts of ``object_scores``, named by their labels (for pictures)."""
    intersection, true_area, pred_area = _overlaps(pred, true)
    pred_ids, true_ids = _labels(pred), _labels(true)
    matches = _iou(intersection, true_area, pred_area) > MATCH_IOU
    split, merged = _splits_and_merges(intersection, true_area, pred_area)
    inside = intersection > MOSTLY * pred_area[None, :]
    pieces = inside[split].any(axis=0)
    matched = matches.any(axis=0)
    return ObjectErrors(
        matched=set(pred_ids[matched].tolist()),
        invented=set(pred_ids[~matched & ~inside.any(axis=0) & ~merged].tolist()),
        split=set(pred_ids[pieces & ~matched].tolist()),
        merged=set(pred_ids[merged].tolist()),
        missed=set(true_ids[~matches.any(axis=1)].tolist()),
    )


def _labels(labels: np.ndarray) -> np.ndarray:
    ids = np.unique(labels)
    return ids[ids != 0]


def object_scores(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Every metric of the module docstring for one image, and the counts behind them (``COUNTS``)."""
    intersection, true_area, pred_area = _overlaps(pred, true)
    iou = _iou(intersection, true_area, pred_area)
    aji_intersection, aji_union = _aji_sums(intersection, true_area, pred_area)
    split, merged = _splits_and_merges(intersection, true_area, pred_area)
    counts = {
        "true_objects": int(true_area.size),
        "predicted_objects": int(pred_area.size),
        "matched_50": _matched(iou, MATCH_IOU),
        "matched_iou_50": float(iou[iou > MATCH_IOU].sum()),
        "aji_intersection": aji_intersection,
        "aji_union": aji_union,
    }
    return {
        "dsb_score": dsb_score_of_iou(iou), **_ratios(counts), "seg": _seg(intersection, true_area, pred_area),
        "split_objects": int(split.sum()), "merged_objects": int(merged.sum()), **counts,
    }


def pooled_scores(images: Iterable[dict]) -> dict[str, float]:
    """Dataset-level AP, precision, recall, F1, PQ and AJI at IoU 0.5 from the summed counts of
    ``object_scores`` over ``images`` (every object weighs alike, as StarDist and MoNuSeg pool)."""
    totals = dict.fromkeys(COUNTS, 0.0)
    for image in images:
        for name in COUNTS:
            totals[name] += image[name]
    return _ratios(totals)


def _ratios(counts: dict) -> dict[str, float]:
    """The ratio metrics of summed counts; each is 1 where its denominator is 0 (nothing to get wrong)."""
    matched, n_true, n_pred = counts["matched_50"], counts["true_objects"], counts["predicted_objects"]
    missed, invented = n_true - matched, n_pred - matched
    half_errors = matched + (missed + invented) / 2
    return {
        "ap_50": _ratio(matched, matched + missed + invented),
        "precision_50": _ratio(matched, n_pred),
        "recall_50": _ratio(matched, n_true),
        "f1_50": _ratio(matched, half_errors),
        "pq": _ratio(counts["matched_iou_50"], half_errors),
        "aji": _ratio(counts["aji_intersection"], counts["aji_union"]),
    }


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 1.0
