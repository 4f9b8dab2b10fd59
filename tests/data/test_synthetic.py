from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from unetkit.data.synthetic import generate_dataset, make_sample

SIZE = 128


@pytest.fixture(scope="module")
def samples() -> list[tuple[np.ndarray, np.ndarray]]:
    return [make_sample(np.random.default_rng([7, i]), SIZE) for i in range(16)]


def _dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    return 2 * np.logical_and(prediction, truth).sum() / max(prediction.sum() + truth.sum(), 1)


def _best_mean_dice(scores: list[np.ndarray], truths: list[np.ndarray], thresholds: np.ndarray) -> float:
    """The mean Dice of the single threshold that suits the whole set best."""
    return max(np.mean([_dice(s > t, m) for s, m in zip(scores, truths)]) for t in thresholds)


def _local_contrast(image: np.ndarray) -> np.ndarray:
    """Intensity above a background estimate (grey opening wider than any blob): a local rule."""
    smooth = ndimage.gaussian_filter(image.astype(np.float32) / 255, 1)
    return smooth - ndimage.gaussian_filter(ndimage.grey_opening(smooth, size=(31, 31)), 4)


def test_a_sample_is_a_grey_image_with_instance_labels(samples) -> None:
    image, instances = samples[0]
    assert image.shape == (SIZE, SIZE) and image.dtype == np.uint8
    assert instances.shape == (SIZE, SIZE) and instances.dtype == np.int32
    ids = np.unique(instances)
    np.testing.assert_array_equal(ids, np.arange(len(ids)))  # 0 and consecutive object ids
    assert len(ids) > 3


def test_samples_are_deterministic_for_a_seed() -> None:
    first, again, other = (make_sample(np.random.default_rng(seed), 64) for seed in (3, 3, 4))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


def test_some_objects_touch(samples) -> None:
    def touching_pairs(instances: np.ndarray) -> int:
        grown = ndimage.grey_dilation(instances, size=3)
        return int(np.sum((instances > 0) & (grown > 0) & (grown != instances)))

    assert sum(touching_pairs(instances) > 0 for _, instances in samples) >= len(samples) // 2


def test_no_global_threshold_segments_it_but_local_contrast_does(samples) -> None:
    images = [image for image, _ in samples]
    truths = [instances > 0 for _, instances in samples]
    global_dice = _best_mean_dice(images, truths, np.arange(256))
    local_dice = _best_mean_dice([_local_contrast(i) for i in images], truths, np.linspace(0, 0.3, 31))
    assert global_dice < 0.8
    assert local_dice > 0.85  # the information is there, locally: learnable


def test_generate_dataset_writes_matching_images_masks_and_instances(tmp_path) -> None:
    out = generate_dataset(tmp_path / "demo", n_images=3, size=48, seed=1)
    names = sorted(p.name for p in (out / "images").iterdir())
    assert len(names) == 3
    for folder in ("masks", "instances"):
        assert sorted(p.name for p in (out / folder).iterdir()) == names
    for name in names:
        image = np.asarray(Image.open(out / "images" / name))
        mask = np.asarray(Image.open(out / "masks" / name))
        instances = np.asarray(Image.open(out / "instances" / name))
        assert image.dtype == np.uint8 and image.shape == (48, 48)
        assert set(np.unique(mask)) <= {0, 255}
        np.testing.assert_array_equal(mask == 255, instances > 0)
    expected_image, expected_instances = make_sample(np.random.default_rng([1, 0]), 48)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "images" / names[0])), expected_image)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "instances" / names[0])), expected_instances)
