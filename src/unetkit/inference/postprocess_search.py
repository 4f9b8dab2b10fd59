"""The search over post-processing settings, scored on validation samples (``tuning.py`` collects
them and stores the choice).

Each step scores a grid of settings on the samples, image by image:

1. binary models: the threshold over the foreground probability (K classes keep the argmax);
2. small-object removal: ``min_object_size`` at fractions of the median true object size, and
   ``keep_largest`` where the validation masks hold one object (per class) per image;
3. instance data (records with instance masks): the watershed of ``postprocess`` (seeding by the
   network's object-centre map at several levels where it learned instance maps, by distance
   maxima, h-maxima or probability cores with their parameter at fractions of the true object
   radius, then the foreground threshold and the minimum instance size), scored by the DSB-2018
   score, which punishes merged, split, missed and invented objects alike. The grid is scored on
   as many validation images as let all of it finish in its time (an evenly spaced subset where
   all would not), so it never stops half-way.

Semantic settings are scored by the Dice of the pooled confusion matrix, as validation is. A step
keeps the setting it starts from unless another wins on all images and, cross-validated over the
images, on images left out of the choice (``selection.choose``; one image: defaults kept); ties
keep the default. Each step stops at its deadline with the best setting found so far.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from scipy import ndimage

from unetkit.config import Config
from unetkit.inference.postprocess import EIGHT_CONNECTED, clean_labels, instances_from_probabilities
from unetkit.inference.selection import Selection, choose
from unetkit.metrics import ConfusionMatrix, dsb_score_of_iou, instance_iou

log = logging.getLogger(__name__)

THRESHOLDS = tuple(round(0.1 + 0.05 * step, 2) for step in range(17))  # 0.1 .. 0.9
SIZE_FRACTIONS = (0.01, 0.03, 0.1, 0.3)  # min object size: fractions of the median true object
ONE_OBJECT_SHARE = 0.9  # keep_largest is tried where this share of the masks hold one object
RADIUS_FRACTIONS = (0.25, 0.5, 1.0)  # distance seeds: min_distance as fractions of the object radius
H_FRACTIONS = (0.05, 0.1, 0.2, 0.4)  # h-maxima seeds: h as fractions of the object radius
SEED_THRESHOLDS = (0.7, 0.8, 0.9, 0.95)  # probability seeds
MAP_HEIGHTS = (0.1, 0.15, 0.2, 0.3, 0.4)  # maps seeds: how far a maximum of the object-centre map rises
TIMING_IMAGES = 4  # images whose watershed is timed to size the instance search
MIN_SEARCH_IMAGES = 8  # the instance search scores at least this many images, even past its time
INSTANCE_THRESHOLDS = (0.3, 0.4, 0.6, 0.7, 0.8)
INSTANCE_SIZE_FRACTIONS = (0.05, 0.1, 0.25)  # min instance size: fractions of the median true instance


@dataclass
class Sample:
    """What the search needs of one validation image."""

    foreground: np.ndarray  # foreground probability (H, W) float32
    labels: np.ndarray | None  # argmax class ids (H, W) for K classes; None for binary
    truth: np.ndarray  # class ids (H, W) uint8
    instances: np.ndarray | None  # true instances (H, W), where the data has them
    centres: np.ndarray | None = None  # the model's object-centre map (H, W), where it has instance maps


def tune_semantic(samples: Sequence[Sample], config: Config, deadline: float) -> tuple[dict, dict]:
    """(threshold, min_object_size, keep_largest) and the report of the Dice they reach."""
    classes = max(2, config.model.classes)
    ignore_index = config.data.labels.ignore_index

    def scored(candidates: Iterable[dict]) -> Iterator[tuple[dict, np.ndarray]]:
        return ((candidate, _confusions(samples, classes, ignore_index, **candidate)) for candidate in candidates)

    def dice(confusions: np.ndarray) -> float:
        pooled = ConfusionMatrix(classes, ignore_index)
        pooled.matrix = torch.from_numpy(confusions.sum(axis=0).reshape(classes, classes))
        return pooled.compute()["dice"]

    start = {name: getattr(config.predict, name) for name in ("threshold", "min_object_size", "keep_largest")}
    binary = samples[0].labels is None
    thresholds = [{**start, "threshold": value} for value in THRESHOLDS if binary and value != start["threshold"]]
    first = choose(scored([start, *thresholds]), dice, deadline)
    sizes = _object_sizes([sample.truth for sample in samples], classes)
    removals = [{**first.settings, "min_object_size": size} for size in _sizes_at(sizes, SIZE_FRACTIONS)]
    if _one_object_per_image(samples, classes):
        removals.append({**first.settings, "keep_largest": True})
    last = choose(scored([first.settings, *removals]), dice, deadline)
    return last.settings, _part_report("dice", first, last)


def tune_instances(samples: Sequence[Sample], current: dict, deadline: float) -> tuple[dict, dict]:
    """The watershed settings (``instance_*``), starting from those of ``current``, and the report
    of the DSB score they reach, on as many of ``samples`` as the whole grid has time for."""
    start = {name: value for name, value in current.items() if name.startswith("instance_")}
    areas = np.concatenate([np.bincount(sample.instances.ravel())[1:] for sample in samples])
    areas = areas[areas > 0]
    radius = math.sqrt(float(np.median(areas)) / math.pi) if areas.size else 0.0
    min_sizes = [start["instance_min_size"], 0, *_sizes_at(areas, INSTANCE_SIZE_FRACTIONS)]
    seedings = _seedings(radius, with_maps=samples[0].centres is not None)
    seedings = [start] + [{**start, **seeding} for seeding in seedings if {**start, **seeding} != start]
    samples = _affordable(samples, start, len(seedings) + len(INSTANCE_THRESHOLDS), deadline)
    first = choose(_scored_watersheds(samples, seedings, min_sizes), np.mean, deadline)
    thresholds = [{**first.settings, "instance_threshold": value} for value in INSTANCE_THRESHOLDS]
    last = choose(_scored_watersheds(samples, [first.settings, *thresholds], min_sizes), np.mean, deadline)
    return last.settings, {**_part_report("dsb_score", first, last), "images": len(samples)}


def _affordable(samples: Sequence[Sample], settings: dict, candidates: int, deadline: float) -> Sequence[Sample]:
    """``samples``, or an evenly spaced subset of them (at least MIN_SEARCH_IMAGES) on which
    ``candidates`` watersheds per image finish before ``deadline``, timed on a few of them."""
    timed = samples[:: max(1, len(samples) // TIMING_IMAGES)][:TIMING_IMAGES]
    began = time.monotonic()
    for sample in timed:
        _watershed(sample, settings)
    per_image = (time.monotonic() - began) / len(timed)
    fits = int((deadline - time.monotonic()) / max(per_image * candidates, 1e-9))
    if fits >= len(samples):
        return samples
    keep = min(len(samples), max(MIN_SEARCH_IMAGES, fits))
    log.info(
        "post-processing: the instance search scores %d of %d validation images, to finish in its time",
        keep,
        len(samples),
    )
    return [samples[index] for index in np.linspace(0, len(samples) - 1, keep).round().astype(int)]


def _watershed(sample: Sample, settings: dict) -> np.ndarray:
    """The instances of ``sample`` under the ``instance_*`` ``settings``, none dropped for size."""
    keywords = {name.removeprefix("instance_"): value for name, value in settings.items()}
    return instances_from_probabilities(sample.foreground, **{**keywords, "min_size": 0}, centres=sample.centres)


def _part_report(metric: str, first: Selection, last: Selection) -> dict:
    """The validation score of the reference and of the choice of two steps, and ``held_out``: the
    cross-validated score of the last step that changed a setting (the reference's if none did)."""
    changed = [step for step in (last, first) if step.changed]
    held_out = changed[0].held_out if changed else first.default_score
    return {
        "metric": metric,
        "default": float(first.default_score),
        "tuned": float(last.score),
        "held_out": float(held_out),
    }


def _seedings(radius: float, with_maps: bool) -> list[dict]:
    """Seeding variants, one kind after another: maxima of the network's object-centre map (models
    with instance maps) by their prominence, then the distance-transform and probability seeds with their parameter at
    fractions of the median object radius (pixels)."""
    distances = sorted({max(1, round(radius * fraction)) for fraction in RADIUS_FRACTIONS})
    heights = sorted({max(0.5, round(radius * fraction, 1)) for fraction in H_FRACTIONS})
    maps = [{"instance_seeds": "maps", "instance_map_h": value} for value in MAP_HEIGHTS] if with_maps else []
    return (
        maps
        + [{"instance_seeds": "distance", "instance_min_distance": value} for value in distances]
        + [{"instance_seeds": "h-maxima", "instance_h": value} for value in heights]
        + [{"instance_seeds": "probability", "instance_seed_threshold": value} for value in SEED_THRESHOLDS]
    )


def _scored_watersheds(
    samples: Sequence[Sample], candidates: Sequence[dict], min_sizes: Sequence[int]
) -> Iterator[tuple[dict, np.ndarray]]:
    """(settings, DSB score per image) for each candidate with each minimum size; one watershed
    per candidate and image, the minimum sizes applied to its result."""
    min_sizes = list(dict.fromkeys(min_sizes))
    for candidate in candidates:
        scores = np.zeros((len(min_sizes), len(samples)))
        for image, sample in enumerate(samples):
            whole = _watershed(sample, candidate)  # labels 1..n
            iou, areas = instance_iou(whole, sample.instances), np.bincount(whole.ravel())[1:]
            scores[:, image] = [dsb_score_of_iou(iou[:, areas >= size]) for size in min_sizes]
        # The candidate's own minimum size first, so that it is the reference of the first step.
        ordered = sorted(zip(min_sizes, scores), key=lambda pair: pair[0] != candidate["instance_min_size"])
        for size, per_image in ordered:
            yield {**candidate, "instance_min_size": int(size)}, per_image


def _confusions(
    samples: Sequence[Sample],
    classes: int,
    ignore_index: int,
    threshold: float,
    min_object_size: int,
    keep_largest: bool,
) -> np.ndarray:
    """Per image, the confusion matrix (flattened) of the post-processed labels against the truth."""
    rows = []
    for sample in samples:
        labels = (
            sample.labels.copy() if sample.labels is not None else (sample.foreground >= threshold).astype(np.uint8)
        )
        clean_labels(labels, min_object_size, keep_largest)
        confusion = ConfusionMatrix(classes, ignore_index)
        confusion.update(torch.from_numpy(labels.astype(np.int64)), torch.from_numpy(sample.truth.astype(np.int64)))
        rows.append(confusion.matrix.numpy().ravel())
    return np.stack(rows)


def _object_sizes(truths: Sequence[np.ndarray], classes: int) -> np.ndarray:
    """Pixel counts of the true objects (8-connected, per foreground class) of all images."""
    sizes = [np.zeros(0, dtype=np.int64)]
    for truth in truths:
        for class_id in range(1, classes):
            objects, count = ndimage.label(truth == class_id, EIGHT_CONNECTED)
            sizes.append(np.bincount(objects.ravel(), minlength=count + 1)[1:])
    return np.concatenate(sizes)


def _sizes_at(sizes: np.ndarray, fractions: Sequence[float]) -> list[int]:
    """Distinct positive sizes at ``fractions`` of the median of ``sizes`` (none if empty)."""
    if not sizes.size:
        return []
    median = float(np.median(sizes))
    return sorted({round(median * fraction) for fraction in fractions} - {0})


def _one_object_per_image(samples: Sequence[Sample], classes: int) -> bool:
    """Whether most masks hold one object of each class they contain (a car, an organ)."""
    counts = [
        ndimage.label(sample.truth == class_id, EIGHT_CONNECTED)[1]
        for sample in samples
        for class_id in range(1, classes)
    ]
    present = [count for count in counts if count > 0]
    return bool(present) and sum(count == 1 for count in present) >= ONE_OBJECT_SHARE * len(present)
