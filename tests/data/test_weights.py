from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy import ndimage
from skimage.draw import disk

from unetkit.data.weights import balanced_class_weights, border_weight_map
from unetkit.errors import ConfigError

W0, SIGMA = 10.0, 5.0
CLASS_WEIGHTS = (1.0, 3.0)


def exact_weight_map(instances: np.ndarray, class_weights: tuple[float, float]) -> np.ndarray:
    """The paper's formula with a full-image distance transform per object, nothing cut off."""
    ids = [value for value in np.unique(instances) if value != 0]
    distances = np.sort([ndimage.distance_transform_edt(instances != value) for value in ids], axis=0)
    border = W0 * np.exp(-((distances[0] + distances[1]) ** 2) / (2 * SIGMA**2))
    return np.where(instances != 0, class_weights[1], class_weights[0] + border)


def touching_squares(labels: tuple[int, int] = (1, 2)) -> np.ndarray:
    """Two 10x10 squares separated by a one-pixel background gap (column 21), far from the corners."""
    instances = np.zeros((64, 64), dtype=np.int32)
    instances[20:30, 11:21] = labels[0]
    instances[20:30, 22:32] = labels[1]
    return instances


def random_nuclei(size: int, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    instances = np.zeros((size, size), dtype=np.int32)
    for label in range(1, count + 1):
        rows, cols = disk(tuple(rng.integers(0, size, 2)), rng.integers(4, 12), shape=instances.shape)
        instances[rows, cols] = label
    return instances


def test_gap_between_touching_objects_gets_the_border_weight() -> None:
    weights = border_weight_map(touching_squares(), W0, SIGMA, CLASS_WEIGHTS)
    gap = weights[20:30, 21]
    # d1 = d2 = 1 in the gap: w = w_c + w0 * exp(-4 / (2 sigma^2))
    assert gap == pytest.approx(CLASS_WEIGHTS[0] + W0 * math.exp(-4 / (2 * SIGMA**2)), rel=1e-6)
    assert weights.max() == pytest.approx(gap.max())
    assert np.all(weights[20:30, 11:21] == CLASS_WEIGHTS[1])
    assert np.all(weights[20:30, 22:32] == CLASS_WEIGHTS[1])
    assert weights[63, 63] == pytest.approx(CLASS_WEIGHTS[0], abs=1e-6)  # far background


def test_matches_the_untruncated_formula() -> None:
    instances = random_nuclei(96, 30, seed=0)
    fast = border_weight_map(instances, W0, SIGMA, CLASS_WEIGHTS)
    assert fast.dtype == np.float32 and fast.shape == instances.shape
    # objects beyond 5 sigma are cut off: at most w0 * exp(-12.5) lost
    np.testing.assert_allclose(fast, exact_weight_map(instances, CLASS_WEIGHTS), atol=W0 * math.exp(-12.5) + 1e-5)


def test_label_values_do_not_matter() -> None:
    renamed = border_weight_map(touching_squares((-4, 70000)), W0, SIGMA, CLASS_WEIGHTS)
    np.testing.assert_array_equal(renamed, border_weight_map(touching_squares(), W0, SIGMA, CLASS_WEIGHTS))


@pytest.mark.parametrize("objects", [0, 1])
def test_fewer_than_two_objects_have_no_border_term(objects: int) -> None:
    instances = np.zeros((16, 16), dtype=np.int32)
    instances[4:8, 4:8] = objects
    weights = border_weight_map(instances, W0, SIGMA, CLASS_WEIGHTS)
    np.testing.assert_array_equal(weights, np.where(instances != 0, CLASS_WEIGHTS[1], CLASS_WEIGHTS[0]))


def test_class_weights_default_to_balanced() -> None:
    instances = touching_squares()
    background, foreground = balanced_class_weights(instances)
    weights = border_weight_map(instances, w0=0.0)
    assert set(np.unique(weights)) == {np.float32(background), np.float32(foreground)}


def test_balanced_class_weights() -> None:
    semantic = np.zeros((4, 4), dtype=np.uint8)
    semantic[0] = 1  # a quarter is foreground
    background, foreground = balanced_class_weights(semantic)
    assert (background, foreground) == pytest.approx((16 / 24, 16 / 8))
    assert np.where(semantic != 0, foreground, background).mean() == pytest.approx(1.0)
    assert balanced_class_weights(np.zeros((4, 4))) == (1.0, 1.0)
    assert balanced_class_weights(np.ones((4, 4))) == (1.0, 1.0)


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="integer label image"):
        border_weight_map(np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="integer label image"):
        border_weight_map(np.zeros((2, 4, 4), dtype=np.int32))
    with pytest.raises(ConfigError, match="weight_sigma"):
        border_weight_map(np.zeros((4, 4), dtype=np.int32), sigma=0.0)


@pytest.mark.slow
def test_hundred_nuclei_at_512_take_well_under_a_second() -> None:
    instances = random_nuclei(512, 100, seed=1)
    start = time.perf_counter()
    border_weight_map(instances)
    assert time.perf_counter() - start < 1.0
