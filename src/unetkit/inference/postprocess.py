"""From probabilities to the final outputs: class labels with small objects removed, and labelled
object instances (nuclei, cells) split by a seeded watershed, seeded by the network's own instance
maps where it learned some (``UNetConfig.instance_target``).

The settings live in ``PredictConfig``; ``inference/tuning.py`` chooses them on the validation
images after training, and the defaults reproduce plain thresholding / argmax.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.morphology import local_maxima, reconstruction
from skimage.segmentation import relabel_sequential, watershed

from unetkit.config import Config, InstanceSeeds, PredictConfig, UNetConfig
from unetkit.errors import ConfigError
from unetkit.model.unet import to_labels

# The PredictConfig fields that tuning chooses; --no-postprocess puts them back to their defaults.
POSTPROCESS_FIELDS = (
    "threshold", "min_object_size", "keep_largest", "instance_threshold", "instance_seeds",
    "instance_min_distance", "instance_h", "instance_seed_threshold", "instance_map_h", "instance_min_size",
)

# 8-connectivity, so that a thin diagonal structure (a vessel) stays one object.
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)

# Pixels per step when turning probabilities into labels, so the int64 argmax stays small.
LABEL_PIXELS = 2**20


def postprocessing_settings(predict: PredictConfig) -> dict:
    """The post-processing part of ``predict`` as a plain dict."""
    return {name: getattr(predict, name) for name in POSTPROCESS_FIELDS}


def without_postprocessing(config: Config) -> PredictConfig:
    """``config.predict`` with the post-processing fields at their defaults (tiling kept)."""
    return dataclasses.replace(config.predict, **postprocessing_settings(PredictConfig()))


def has_postprocessing(config: Config) -> bool:
    """Whether ``config.predict`` decodes otherwise than the defaults would for this model."""
    return _effective(config.predict, config.model) != _effective(PredictConfig(), config.model)


def _effective(predict: PredictConfig, model: UNetConfig) -> dict:
    settings = postprocessing_settings(predict)
    settings["instance_seeds"] = resolved_seeds(predict.instance_seeds, bool(model.instance_maps))
    return settings


def resolved_seeds(seeds: InstanceSeeds, has_maps: bool) -> InstanceSeeds:
    """``auto`` seeds: the model's instance maps where it learned them, else the distance transform."""
    if seeds != "auto":
        return seeds
    return "maps" if has_maps else "distance"


def class_probabilities(probabilities: np.ndarray | torch.Tensor, model: UNetConfig) -> np.ndarray | torch.Tensor:
    """The class channels (K, H, W) of a predictor's output; the instance maps follow them."""
    return probabilities[: model.classes]


def foreground_probability(probabilities: np.ndarray, model: UNetConfig) -> np.ndarray:
    """Foreground probability (H, W): the single channel of a binary model, else 1 - P(background)."""
    classes = class_probabilities(probabilities, model)
    return classes[0] if classes.shape[0] == 1 else 1.0 - classes[0]


def object_centres(probabilities: np.ndarray, model: UNetConfig) -> np.ndarray | None:
    """The model's object-centre map (H, W) in 0..1 from its instance maps, high inside objects and
    low at their borders: the predicted distance to the border, else the predicted core, else the
    foreground, each times (1 - predicted border) where the model has a border map. None without
    instance maps."""
    if not model.instance_maps:
        return None
    maps = dict(zip(model.instance_maps, probabilities[model.classes :]))
    centres = next((maps[name] for name in ("distance", "core") if name in maps), None)
    centres = foreground_probability(probabilities, model) if centres is None else centres
    return centres * (1.0 - maps["border"]) if "border" in maps else centres


def labels_from_probabilities(probabilities: np.ndarray | torch.Tensor, config: Config) -> np.ndarray:
    """Class ids uint8 (H, W) from a predictor's probabilities (K + maps, H, W): ``predict.threshold``
    for binary, argmax for K classes, then ``clean_labels`` with the stored object settings.
    Volumes (K + maps, D, H, W) give (D, H, W)."""
    predict = config.predict
    probabilities = torch.as_tensor(class_probabilities(probabilities, config.model))
    labels = np.empty(probabilities.shape[1:], dtype=np.uint8)
    rows = max(1, LABEL_PIXELS // max(1, labels[0].size))  # rows of an image, slices of a volume
    for top in range(0, labels.shape[0], rows):
        band = probabilities[:, top : top + rows]
        labels[top : top + rows] = to_labels(band, predict.threshold, spatial_dims=labels.ndim).numpy()
    return clean_labels(labels, predict.min_object_size, predict.keep_largest)


def clean_labels(labels: np.ndarray, min_size: int = 0, keep_largest: bool = False) -> np.ndarray:
    """``labels`` (in place) with the objects of each class that are smaller than ``min_size``
    pixels, or (``keep_largest``) all but the largest, set to background (0)."""
    if min_size <= 0 and not keep_largest:
        return labels
    for class_id in np.unique(labels):
        if class_id == 0:
            continue
        objects, _ = ndimage.label(labels == class_id, np.ones((3,) * labels.ndim, dtype=bool))  # 8- (26-) connected
        sizes = np.bincount(objects.ravel())
        sizes[0] = 0
        drop = sizes < min_size
        if keep_largest:
            drop |= np.arange(sizes.size) != sizes.argmax()
        drop[0] = False
        labels[drop[objects]] = 0
    return labels


def instances_for(probabilities: np.ndarray, config: Config) -> np.ndarray:
    """Instance labels of a predictor's probabilities (K + maps, H, W) with the watershed settings
    of ``config.predict``, seeded from the model's instance maps where it has them and asks for it."""
    predict = config.predict
    centres = object_centres(probabilities, config.model)
    if resolved_seeds(predict.instance_seeds, centres is not None) == "maps" and centres is None:
        raise ConfigError(
            "instance_seeds 'maps' needs a model trained with instance maps (model.instance_target), and this one "
            "has none: use distance, h-maxima or probability seeds"
        )
    return instances_from_probabilities(
        foreground_probability(probabilities, config.model),
        threshold=predict.instance_threshold,
        min_distance=predict.instance_min_distance,
        min_size=predict.instance_min_size,
        seeds=predict.instance_seeds,
        h=predict.instance_h,
        seed_threshold=predict.instance_seed_threshold,
        map_h=predict.instance_map_h,
        centres=centres,
    )


def instances_from_probabilities(
    foreground_prob: np.ndarray,
    threshold: float = 0.5,
    min_distance: int = 5,
    min_size: int = 16,
    seeds: InstanceSeeds = "distance",
    h: float = 2.0,
    seed_threshold: float = 0.9,
    map_h: float = 0.2,
    centres: np.ndarray | None = None,
) -> np.ndarray:
    """Instance labels int32 (H, W), 0 = background, objects numbered 1..n.

    Pixels with probability >= ``threshold`` are foreground; a watershed splits touching objects
    from one seed per object. ``seeds``:

    - ``auto``: ``maps`` where ``centres`` are given, else ``distance``;
    - ``maps``: the maxima of ``centres`` (the network's object-centre map, ``object_centres``)
      that rise at least ``map_h`` above their surroundings, flooded along it: the network itself
      says where one object ends and the next begins (the DSB-2018 winners' way); the maxima's
      prominence, not their height, counts, so a map learned faintly still gives one seed per object;
    - ``distance``: local maxima of the distance transform at least ``min_distance`` px apart;
    - ``h-maxima``: maxima of the distance transform that rise at least ``h`` px above their
      surroundings (one seed per object however irregular its outline);
    - ``probability``: connected cores with probability >= ``seed_threshold`` (a network that
      learned the gaps between touching objects separates them there), flooded along the
      probability.

    A foreground component without a seed is one object. Objects smaller than ``min_size``
    pixels are dropped.
    """
    foreground_prob = np.asarray(foreground_prob)
    foreground = foreground_prob >= threshold
    components, _ = ndimage.label(foreground)
    seeds = resolved_seeds(seeds, centres is not None)
    if seeds == "maps":
        if centres is None:
            raise ConfigError("maps seeds need the network's object-centre map (centres)")
        landscape = np.asarray(centres)
        markers, _ = ndimage.label(h_maxima(landscape, map_h) & foreground)
        surface = -landscape
    elif seeds == "probability":
        markers, _ = ndimage.label(foreground_prob >= max(seed_threshold, threshold))
        surface = -foreground_prob
    else:
        distance = ndimage.distance_transform_edt(foreground)
        # Neighbouring maxima on a plateau of the distance map are one seed, not several.
        markers, _ = ndimage.label(_distance_maxima(distance, components, seeds, min_distance, h))
        surface = -distance
    markers = _seed_unseeded_components(markers, components)
    return drop_small_instances(watershed(surface, markers, mask=foreground), min_size)


def drop_small_instances(instances: np.ndarray, min_size: int) -> np.ndarray:
    """``instances`` without the objects under ``min_size`` pixels, renumbered 1..n (int32)."""
    sizes = np.bincount(instances.ravel())
    kept = np.where(sizes[instances] < min_size, 0, instances)
    return relabel_sequential(kept)[0].astype(np.int32)


def h_maxima(landscape: np.ndarray, h: float) -> np.ndarray:
    """Regional maxima of the h-maxima transform (the map reconstructed from itself lowered by h):
    maxima joined by a saddle less than ``h`` below them form one plateau, so one seed; a peak's
    height itself does not matter, only how far it rises above its surroundings."""
    domes = reconstruction(landscape - h, landscape, method="dilation")
    return local_maxima(domes, allow_borders=True)


def _distance_maxima(
    distance: np.ndarray, components: np.ndarray, seeds: InstanceSeeds, min_distance: int, h: float
) -> np.ndarray:
    if seeds == "h-maxima":
        return h_maxima(distance, h) & (components > 0)
    # One search over the whole image, not one per component (slow with hundreds of objects): a
    # component whose maxima lie near a higher one of a neighbour is left unseeded, so kept whole.
    peaks = peak_local_max(distance, min_distance=max(1, min_distance), exclude_border=False)
    peak_mask = np.zeros(distance.shape, dtype=bool)
    peak_mask[tuple(peaks.T)] = True
    return peak_mask


def _seed_unseeded_components(markers: np.ndarray, components: np.ndarray) -> np.ndarray:
    """``markers`` plus, for every foreground component holding no marker, the whole component."""
    seeded = np.zeros(components.max() + 1, dtype=bool)
    seeded[np.unique(components[markers > 0])] = True
    seeded[0] = True
    unseeded = ~seeded[components]
    if not unseeded.any():
        return markers
    return np.where(unseeded, components + markers.max(), markers)
