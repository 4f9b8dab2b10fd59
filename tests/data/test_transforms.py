from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pytest
from PIL import Image

from unetkit.config import DataConfig, NormalizeConfig
from unetkit.data.records import Record
from unetkit.data.synthetic import make_sample
from unetkit.data.transforms import (
    PaperElasticDeform,
    build_transform,
    fit_normalization,
    intensity_rule,
    normalize,
    standardize_rule,
    to_unit_range,
)
from unetkit.errors import ConfigError

AUGMENT_MODES = ["none", "light", "paper", "strong"]
IGNORE = 255


# ------------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    "raw, expected",
    [
        (np.array([[0, 51, 255]], np.uint8), [0.0, 0.2, 1.0]),
        (np.array([[0, 13107, 65535]], np.uint16), [0.0, 0.2, 1.0]),
        (np.array([[0.0, 0.2, 1.0]], np.float32), [0.0, 0.2, 1.0]),
    ],
    ids=["uint8", "uint16", "float32"],
)
def test_scale_divides_by_the_dtype_range(raw: np.ndarray, expected: list[float]) -> None:
    out = normalize(raw[..., None], NormalizeConfig(mode="scale"))
    assert out.dtype == np.float32 and out.shape == (1, 3, 1)
    np.testing.assert_allclose(out[0, :, 0], expected, atol=1e-6)


def test_meanstd_standardises_each_channel_after_scaling() -> None:
    raw = np.array([[[0, 255], [255, 0]]], np.uint8)  # (1, 2, 2): two pixels, two channels
    config = NormalizeConfig(mode="meanstd", mean=[0.5, 0.25], std=[0.25, 0.5])
    np.testing.assert_allclose(normalize(raw, config)[0], [[-2.0, 1.5], [2.0, -0.5]], atol=1e-6)


def test_meanstd_without_stats_for_every_channel_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="fit_normalization"):
        normalize(np.zeros((2, 2, 3), np.uint8), NormalizeConfig(mode="meanstd", mean=[0.5], std=[0.2]))


def test_percentile_maps_each_channels_own_range_to_unit() -> None:
    ramp = np.arange(101, dtype=np.uint16).reshape(1, 101)
    raw = np.stack([ramp * 10, ramp * 100 + 500], axis=-1)  # very different exposures
    out = normalize(raw, NormalizeConfig(mode="percentile", low=10, high=90))
    for channel in range(2):
        np.testing.assert_allclose(out[0, [0, 10, 50, 90, 100], channel], [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-6)


def test_percentile_of_a_flat_image_is_zero_not_nan() -> None:
    out = to_unit_range(np.full((4, 4, 1), 7, np.uint8), NormalizeConfig(mode="percentile"))
    assert np.all(out == 0)


def _write_rgb(path, value: tuple[int, int, int]) -> Record:
    Image.fromarray(np.full((6, 8, 3), value, np.uint8)).save(path)
    return Record(image=path)


def test_fit_normalization_streams_the_mean_and_std_per_channel(tmp_path) -> None:
    records = [_write_rgb(tmp_path / "dark.png", (0, 0, 51)), _write_rgb(tmp_path / "bright.png", (255, 0, 153))]
    fitted = fit_normalization(records, NormalizeConfig(mode="meanstd", low=2.0), in_channels=3)
    assert fitted.mode == "meanstd" and fitted.low == 2.0  # the other settings are kept
    np.testing.assert_allclose(fitted.mean, [0.5, 0.0, 0.4], atol=1e-6)
    np.testing.assert_allclose(fitted.std, [0.5, 1.0, 0.2], atol=1e-6)  # the constant channel gets 1


def test_fit_normalization_subsamples_evenly(tmp_path) -> None:
    records = [_write_rgb(tmp_path / f"{i}.png", (i * 50,) * 3) for i in range(5)]
    fitted = fit_normalization(records, "meanstd", in_channels=1, max_images=2)  # first and last
    np.testing.assert_allclose(fitted.mean, [100 / 255], atol=1e-6)


@pytest.mark.parametrize("mode", ["scale", "percentile", "zscore"])
def test_fit_normalization_has_nothing_to_fit_for_per_image_modes(mode: str) -> None:
    assert fit_normalization([], mode, in_channels=3) == NormalizeConfig(mode=mode)


def test_fit_normalization_rejects_an_unknown_mode() -> None:
    with pytest.raises(ConfigError, match="zscore"):
        fit_normalization([], "robust", in_channels=3)


def test_zscore_gives_each_channel_of_a_low_contrast_image_zero_mean_and_unit_std() -> None:
    rng = np.random.default_rng(0)
    raw = np.clip(rng.normal([100, 180], [10, 3], (40, 50, 2)), 0, 255).astype(np.uint8)  # std 0.04, 0.01
    out = normalize(raw, NormalizeConfig(mode="zscore"))
    np.testing.assert_allclose(out.mean(axis=(0, 1)), [0.0, 0.0], atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(0, 1)), [1.0, 1.0], atol=1e-3)


def test_zscore_of_a_crop_uses_the_whole_images_statistics() -> None:
    raw = np.zeros((20, 20, 1), np.uint8)
    raw[:, 10:] = 255
    rule = intensity_rule(raw, NormalizeConfig(mode="zscore"))
    np.testing.assert_allclose(rule(raw[:, :10]), -1.0, atol=1e-5)  # the dark half: one std below the mean


def test_zscore_of_a_big_image_is_measured_on_a_sample_close_to_the_whole() -> None:
    raw = np.random.default_rng(1).integers(0, 256, (1500, 1400, 1), dtype=np.uint8)
    out = normalize(raw, NormalizeConfig(mode="zscore"))
    assert abs(float(out.mean())) < 0.01 and abs(float(out.std()) - 1.0) < 0.01


# ------------------------------------------------------------------------------- pipelines


def _labelled_scene(seed: int, size: int = 96) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An image whose two intensity levels say where the objects are, a multi-class mask with an
    ignored region, and a weight map that is a known function of the mask."""
    instances = make_sample(np.random.default_rng(seed), size)[1]
    mask = np.where(instances > 0, 1 + instances % 2, 0).astype(np.uint8)
    mask[:8, :8] = IGNORE
    image = np.where(instances > 0, 0.8, 0.2).astype(np.float32)[..., None]
    return image, mask, _weight_of(mask)


def _weight_of(mask: np.ndarray) -> np.ndarray:
    return (1.0 + 2.5 * mask).astype(np.float32)


@pytest.mark.parametrize("mode", AUGMENT_MODES)
def test_augmentation_keeps_image_mask_and_weight_aligned(mode: str) -> None:
    transform = build_transform(DataConfig(augment=mode), train=True, crop=64, seed=3)
    for seed in range(6):
        image, mask, weight = _labelled_scene(seed)
        out = transform(image=image, mask=mask, weight=weight)
        assert out["image"].shape == (64, 64, 1) and out["image"].dtype == np.float32
        assert set(np.unique(out["mask"])) <= {0, 1, 2, IGNORE}  # nearest: no blended labels
        np.testing.assert_array_equal(out["weight"], _weight_of(out["mask"]))
        labelled = out["mask"] != IGNORE
        objects = out["mask"][labelled] > 0
        pixels = out["image"][..., 0][labelled]
        if objects.all() or not objects.any():
            continue
        threshold = (pixels[objects].mean() + pixels[~objects].mean()) / 2
        assert np.mean((pixels > threshold) == objects) > 0.95


def test_augmentation_is_reproducible_for_a_seed() -> None:
    image, mask, weight = _labelled_scene(0)
    runs = [build_transform(DataConfig(augment="strong"), True, 48, seed=11)(image=image, mask=mask) for _ in range(2)]
    np.testing.assert_array_equal(runs[0]["image"], runs[1]["image"])
    np.testing.assert_array_equal(runs[0]["mask"], runs[1]["mask"])


def test_flips_are_drawn_independently() -> None:
    transform = build_transform(DataConfig(augment="light"), train=True, seed=0)
    image = np.arange(12, dtype=np.float32).reshape(3, 4, 1)  # non-square: flips only
    corners = {float(transform(image=image, mask=np.zeros((3, 4), np.uint8))["image"][0, 0, 0]) for _ in range(40)}
    assert corners == {0.0, 3.0, 8.0, 11.0}  # none, horizontal, vertical, both


def test_non_square_samples_keep_their_shape_without_crop_or_resize() -> None:
    transform = build_transform(DataConfig(augment="paper"), train=True, seed=0)
    image, mask = np.zeros((40, 70, 1), np.float32), np.zeros((40, 70), np.uint8)
    assert {transform(image=image, mask=mask)["image"].shape for _ in range(20)} == {(40, 70, 1)}


def test_crop_larger_than_the_image_mirror_pads() -> None:
    image = np.linspace(0, 1, 20 * 30, dtype=np.float32).reshape(20, 30, 1)
    out = build_transform(DataConfig(augment="none"), train=True, crop=48, seed=0)(image=image, mask=np.zeros((20, 30), np.uint8))
    assert out["image"].shape == (48, 48, 1)
    assert len(np.unique(out["image"])) == image.size  # mirrored copies of real pixels only, no fill value


def test_resize_is_linear_for_images_and_nearest_for_masks() -> None:
    image, mask, _ = _labelled_scene(1)
    out = build_transform(DataConfig(image_size=40), train=False)(image=image, mask=mask)
    assert out["image"].shape == (40, 40, 1) and out["mask"].shape == (40, 40)
    assert set(np.unique(out["mask"])) <= set(np.unique(mask))
    assert len(np.unique(out["image"])) > 2  # blended edges


@pytest.mark.parametrize(
    "config",
    [NormalizeConfig(mode="meanstd", mean=[0.4, 0.5, 0.6], std=[0.2, 0.25, 0.3]), NormalizeConfig(mode="zscore")],
    ids=["meanstd", "zscore"],
)
def test_evaluation_pipeline_then_standardisation_equals_normalize(config: NormalizeConfig) -> None:
    raw = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    transform = build_transform(DataConfig(normalize=config), train=False)
    out = transform(image=to_unit_range(raw, config), mask=np.zeros((16, 24), np.uint8))["image"]
    np.testing.assert_allclose(standardize_rule(raw, config)(out), normalize(raw, config), atol=1e-5)


def _hue_spread(image: np.ndarray) -> float:
    hsv = cv2.cvtColor(image.astype(np.float32), cv2.COLOR_RGB2HSV)
    return float(np.ptp(hsv[..., 0]))


@pytest.mark.parametrize("mode, least_hue_range", [("mild", 5.0), ("strong", 90.0)])
def test_colour_augmentation_varies_the_hue_of_a_blue_image_and_leaves_the_mask(mode: str, least_hue_range: float) -> None:
    blue = np.zeros((16, 16, 3), np.float32)
    blue[..., 2] = 0.8
    blue[..., 0] = 0.2
    mask = np.eye(16, dtype=np.uint8)
    transform = build_transform(DataConfig(augment="none", color_augment=mode), train=True, seed=0)
    outs = [transform(image=blue, mask=mask) for _ in range(40)]
    hues = np.stack([cv2.cvtColor(out["image"], cv2.COLOR_RGB2HSV)[0, 0, 0] for out in outs])
    assert np.ptp(hues) >= least_hue_range  # degrees
    assert all(np.array_equal(out["mask"], mask) for out in outs)


def test_no_colour_augmentation_keeps_colours() -> None:
    image = np.random.default_rng(2).random((16, 16, 3), dtype=np.float32)
    out = build_transform(DataConfig(augment="none"), train=True, seed=0)(image=image, mask=np.zeros((16, 16), np.uint8))
    np.testing.assert_array_equal(out["image"], image)


def _patches_with_foreground(share: float, count: int = 60) -> int:
    mask = np.zeros((128, 128), np.uint8)
    mask[100:104, 20:24] = 1  # 0.1 % of the pixels
    mask[:4, :4] = IGNORE  # ignored pixels are not foreground
    image = np.zeros((128, 128, 1), np.float32)
    transform = build_transform(DataConfig(augment="none", foreground_oversample=share), train=True, crop=32, seed=5)
    patches = [transform(image=image, mask=mask) for _ in range(count)]
    assert all(patch["image"].shape == (32, 32, 1) and patch["mask"].shape == (32, 32) for patch in patches)
    return sum(bool((patch["mask"] == 1).any()) for patch in patches)


def test_foreground_oversampling_puts_rare_foreground_into_its_share_of_patches() -> None:
    assert _patches_with_foreground(1.0) == 60
    assert 15 <= _patches_with_foreground(0.5) <= 45
    assert _patches_with_foreground(0.0) <= 12  # a random 32 px patch meets the object 7 % of the time


def test_foreground_oversampling_outside_zero_to_one_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="foreground_oversample"):
        build_transform(DataConfig(foreground_oversample=1.5), train=True, crop=32)


def test_unknown_augment_mode_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="heavy"):
        build_transform(DataConfig(augment="heavy"), train=True)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- elastic deformation


def _deform(array: np.ndarray, seed: int, **targets: np.ndarray) -> dict[str, np.ndarray]:
    compose = A.Compose([PaperElasticDeform(p=1.0)], additional_targets={"weight": "mask"}, seed=seed)
    return compose(image=array, **targets)


def test_elastic_deformation_moves_pixels_by_about_the_paper_amount() -> None:
    grid = np.indices((128, 128), dtype=np.float32).transpose(1, 2, 0)  # each pixel holds its (y, x)
    shifts = [np.linalg.norm(_deform(grid, seed)["image"] - grid, axis=-1) for seed in range(8)]
    interior = np.stack(shifts)[:, 16:-16, 16:-16]  # away from the mirrored border
    assert 3.0 < interior.mean() < 20.0  # 3x3 grid of 10 px standard deviation
    neighbour_step = np.abs(np.diff(np.stack(shifts), axis=-1))[:, 16:-16, 16:-16]
    assert neighbour_step.mean() < 0.5  # smooth: neighbours move together


def test_elastic_deformation_resamples_masks_nearest_and_keeps_channels() -> None:
    image, mask, weight = _labelled_scene(2, size=64)
    out = _deform(image, 5, mask=mask, weight=weight)
    assert out["image"].shape == (64, 64, 1)
    assert not np.array_equal(out["mask"], mask)
    assert set(np.unique(out["mask"])) <= set(np.unique(mask))
    np.testing.assert_array_equal(out["weight"], _weight_of(out["mask"]))
