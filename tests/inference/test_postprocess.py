from __future__ import annotations

import numpy as np
import pytest

from unetkit.config import Config, PredictConfig, UNetConfig
from unetkit.errors import ConfigError
from unetkit.inference.postprocess import (
    clean_labels,
    drop_small_instances,
    has_postprocessing,
    instances_for,
    instances_from_probabilities,
    object_centres,
)
from unetkit.metrics import dsb_score, dsb_score_of_iou, instance_iou


def discs(shape: tuple[int, int], centres: list[tuple[int, int]], radius: int) -> np.ndarray:
    """Foreground probability 0.9 inside each disc, 0.1 outside."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    inside = np.zeros(shape, dtype=bool)
    for row, col in centres:
        inside |= (rows - row) ** 2 + (cols - col) ** 2 <= radius**2
    return np.where(inside, 0.9, 0.1).astype(np.float32)


def test_two_touching_discs_become_two_instances() -> None:
    probabilities = discs((64, 96), [(32, 30), (32, 56)], radius=15)  # centres 26 px apart: overlapping
    assert np.unique(probabilities[32, 30:57]).tolist() == [pytest.approx(0.9)]  # one connected blob
    instances = instances_from_probabilities(probabilities)
    assert instances.dtype == np.int32
    assert sorted(np.unique(instances).tolist()) == [0, 1, 2]
    assert instances[32, 30] != instances[32, 56]
    sizes = np.bincount(instances.ravel())[1:]
    assert abs(int(sizes[0]) - int(sizes[1])) < 0.1 * sizes.max()
    np.testing.assert_array_equal(instances > 0, probabilities >= 0.5)


def test_small_objects_are_removed_and_labels_stay_consecutive() -> None:
    probabilities = discs((60, 60), [(15, 15), (45, 45)], radius=8)
    probabilities[2:4, 50:52] = 0.9  # a 4-pixel speck
    instances = instances_from_probabilities(probabilities, min_size=10)
    assert sorted(np.unique(instances).tolist()) == [0, 1, 2]
    assert instances[2:4, 50:52].max() == 0


def test_threshold_decides_the_foreground() -> None:
    probabilities = discs((40, 40), [(20, 20)], radius=10)
    assert instances_from_probabilities(probabilities, threshold=0.95).max() == 0
    assert instances_from_probabilities(probabilities, threshold=0.05).max() == 1


def test_thin_objects_survive_the_watershed() -> None:
    probabilities = np.full((20, 30), 0.1, dtype=np.float32)
    probabilities[10, 5:25] = 0.9  # one pixel wide: a plateau of the distance map
    instances = instances_from_probabilities(probabilities, min_distance=30, min_size=5)
    np.testing.assert_array_equal(instances > 0, probabilities >= 0.5)


def test_no_foreground_gives_no_instances() -> None:
    instances = instances_from_probabilities(np.zeros((16, 16), dtype=np.float32))
    assert instances.shape == (16, 16) and instances.max() == 0


def peanut(shape: tuple[int, int] = (48, 64)) -> np.ndarray:
    """One cell of two lobes (radius 12, centres 20 px apart): two maxima of the distance map."""
    return discs(shape, [(24, 22), (24, 42)], radius=12)


def test_h_maxima_seeds_keep_a_two_lobed_cell_whole_where_distance_maxima_cut_it() -> None:
    probabilities = peanut()
    assert instances_from_probabilities(probabilities).max() == 2
    assert instances_from_probabilities(probabilities, seeds="h-maxima", h=6.0).max() == 1
    assert instances_from_probabilities(probabilities, seeds="h-maxima", h=1.0).max() == 2


def test_probability_seeds_split_where_the_network_marks_a_gap() -> None:
    probabilities = discs((48, 80), [(24, 22), (24, 56)], radius=16)  # touching along a wide front
    probabilities[:, 38:40] = np.minimum(probabilities[:, 38:40], 0.6)  # the learned border: above 0.5
    instances = instances_from_probabilities(probabilities, seeds="probability", seed_threshold=0.8)
    assert instances.max() == 2 and instances[24, 22] != instances[24, 56]
    np.testing.assert_array_equal(instances > 0, probabilities >= 0.5)


def test_an_object_without_a_seed_is_kept_whole() -> None:
    probabilities = discs((40, 40), [(20, 20)], radius=6)
    instances = instances_from_probabilities(probabilities, seeds="probability", seed_threshold=0.95, min_size=0)
    np.testing.assert_array_equal(instances, (probabilities >= 0.5).astype(np.int32))


def test_clean_labels_drops_small_objects_per_class_and_keeps_the_largest() -> None:
    labels = np.zeros((20, 20), dtype=np.uint8)
    labels[0:6, 0:6] = 1  # 36 px
    labels[10:12, 10:12] = 1  # 4 px
    labels[15:20, 15:20] = 2  # 25 px, another class
    labels[0:2, 18:20] = 2  # 4 px
    cleaned = clean_labels(labels.copy(), min_size=5)
    assert np.bincount(cleaned.ravel(), minlength=3).tolist() == [400 - 61, 36, 25]
    largest = clean_labels(labels.copy(), keep_largest=True)
    np.testing.assert_array_equal(largest, cleaned)
    assert clean_labels(labels.copy()).tolist() == labels.tolist()


def test_diagonal_pixels_are_one_object() -> None:
    labels = np.eye(6, dtype=np.uint8)  # a one-pixel-wide diagonal line, 6 px
    assert clean_labels(labels.copy(), min_size=6).sum() == 6


def test_dropping_small_instances_drops_their_columns_of_the_iou_matrix() -> None:
    """What the tuning relies on to score many minimum sizes from one watershed."""
    probabilities = discs((60, 80), [(20, 20), (20, 44), (45, 60)], radius=9)
    probabilities[50:53, 5:8] = 0.9  # a 9-pixel object
    truth = instances_from_probabilities(discs((60, 80), [(20, 20), (20, 44), (46, 60)], radius=9))
    whole = instances_from_probabilities(probabilities, min_size=0)
    iou, areas = instance_iou(whole, truth), np.bincount(whole.ravel())[1:]
    for size in (0, 10, 300):
        expected = dsb_score(drop_small_instances(whole, size), truth)
        assert dsb_score_of_iou(iou[:, areas >= size]) == pytest.approx(expected)


def two_boxes_touching() -> tuple[np.ndarray, np.ndarray]:
    """Foreground of two 16x20 boxes side by side (one 16x40 block: no distance-transform cue to cut
    it) and the object-centre map a network with instance maps would give: a peak in each box."""
    foreground = np.full((24, 48), 0.1, np.float32)
    foreground[4:20, 4:44] = 0.9
    rows, cols = np.mgrid[:24, :48]
    centres = np.zeros_like(foreground)
    for left in (4, 24):
        inside = (rows >= 4) & (rows < 20) & (cols >= left) & (cols < left + 20)
        distance = np.minimum.reduce([rows - 3, 20 - rows, cols - left + 1, left + 20 - cols]).astype(np.float32)
        centres[inside] = (distance / distance[inside].max())[inside]
    return foreground, centres


def test_map_seeds_cut_touching_objects_the_foreground_alone_cannot() -> None:
    foreground, centres = two_boxes_touching()
    # One 16x40 block for the distance transform: a flat ridge, one object or arbitrary pieces.
    assert instances_from_probabilities(foreground, seeds="h-maxima", h=2.0).max() == 1
    assert instances_from_probabilities(foreground).max() > 2
    instances = instances_from_probabilities(foreground, seeds="maps", map_h=0.2, centres=centres)
    assert instances.max() == 2 and instances[12, 10] != instances[12, 38]
    assert abs(int((instances == 1).sum()) - int((instances == 2).sum())) <= 16  # cut near the middle
    np.testing.assert_array_equal(instances > 0, foreground >= 0.5)
    auto = instances_from_probabilities(foreground, centres=centres, seeds="auto")
    np.testing.assert_array_equal(auto, instances)  # auto: the maps where there are some


def test_a_models_maps_give_its_object_centres_and_its_default_seeds() -> None:
    foreground, centres = two_boxes_touching()
    border = np.zeros_like(foreground)
    border[4:20, 23:25] = 1.0  # the learned contact line
    model = UNetConfig(classes=1, instance_target="border+distance")
    probabilities = np.stack([foreground, border, centres])
    np.testing.assert_allclose(object_centres(probabilities, model), centres * (1 - border))
    config = Config(model=model)
    assert instances_for(probabilities, config).max() == 2
    assert not has_postprocessing(config)  # auto seeds are this model's defaults
    plain = Config(model=UNetConfig(classes=1))  # no maps: auto means distance-transform seeds
    np.testing.assert_array_equal(instances_for(foreground[None], plain), instances_from_probabilities(foreground))
    with pytest.raises(ConfigError, match="instance maps"):
        instances_for(foreground[None], Config(predict=PredictConfig(instance_seeds="maps")))
