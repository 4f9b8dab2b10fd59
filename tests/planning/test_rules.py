"""The planning rules pinned on made-up fingerprints: each input that should change a choice does."""

from __future__ import annotations

import pytest
from planning_helpers import fingerprint

from unetkit.model.sizes import valid_output_size
from unetkit.planning import rules, targets

GIB = 2**30


@pytest.mark.parametrize(
    "changes, mode",
    [
        ({}, "meanstd"),
        ({"image_std": 0.04}, "zscore"),  # DIC-like: std 0.04 after /255
        ({"mean_spread": 0.2}, "zscore"),  # exposure varies between images
        ({"bit_depth": 16, "percentiles": [[0.0, 0.02, 0.06]]}, "zscore"),  # 16 bit using a few levels
        ({"bit_depth": 16}, "meanstd"),  # 16 bit using its range
    ],
    ids=["steady", "low-contrast", "brightness-varies", "16bit-few-levels", "16bit-full-range"],
)
def test_normalisation_follows_bit_depth_and_intensity_statistics(changes: dict, mode: str) -> None:
    choice = rules.normalization(fingerprint(**changes))
    assert choice.path == "data.normalize.mode" and choice.value == mode


@pytest.mark.parametrize(
    "size, device, patch, depth",
    [
        ((584, 565), "cpu", 256, 5),  # retinal images: capped on a CPU
        ((1000, 1000), "cuda", 512, 5),  # bigger patches on a GPU, depth still capped
        ((100, 120), "cpu", 96, 3),  # small images: the whole image, bottleneck 12 px
        ((20, 24), "cpu", 32, 2),  # tiny images: padded to the smallest patch
    ],
)
def test_patch_is_the_largest_multiple_of_32_the_median_image_allows_and_depth_keeps_8_px(
    size: tuple[int, int], device: str, patch: int, depth: int
) -> None:
    chosen = rules.patch_size(fingerprint(median_size=size), 0, device).value
    assert chosen == patch
    assert rules.depth(chosen).value == depth
    assert chosen % 2**depth == 0 and chosen // 2**depth >= min(8, chosen // 4)


@pytest.mark.parametrize("patch, depth, tile", [(100, 2, 100), (96, 3, 96), (200, 3, 200), (30, 2, 32)])
def test_a_patch_you_set_gets_a_depth_it_divides_and_tiles_the_predictor_accepts(patch: int, depth: int, tile: int) -> None:
    assert rules.depth(patch).value == depth
    assert rules.tile_size(patch, depth).value == tile


@pytest.mark.parametrize(
    "patch, depth, taken, output",
    [
        (572, 4, 572, 388),  # the paper's tile (depth 5 would keep 196 px, 34 %)
        (256, 3, 252, 164),  # the CPU cap: depth 4 would keep 68 of 252 px
        (512, 4, 508, 324),  # the GPU cap
        (32, 2, 44, 4),  # below the smallest input: that one, images mirror-padded to it
    ],
)
def test_valid_padding_gets_the_deepest_network_keeping_half_the_side_and_a_patch_it_takes(
    patch: int, depth: int, taken: int, output: int
) -> None:
    assert rules.depth(patch, "valid").value == depth
    assert rules.valid_patch(patch, depth).value == taken
    assert valid_output_size(taken, depth) == output
    assert rules.tile_size(taken, depth, "valid").value == taken  # tiles the overlap-tile predictor takes


def test_a_smaller_patch_you_set_downscales_large_objects_further() -> None:
    cars = fingerprint(median_size=(1280, 1918), objects={"median_diameter": 800, "median_thickness": 400, "per_image": 1})
    assert 0 < rules.image_size(cars, 128).value < rules.image_size(cars, 256).value


def test_patch_follows_a_downscaled_image_size() -> None:
    assert rules.patch_size(fingerprint(median_size=(1280, 1918)), 160, "cpu").value == 160


@pytest.mark.parametrize(
    "patch, width, device, memory, batch",
    [
        (256, 32, "cpu", 16 * GIB, 4),  # a million px per step on a CPU is too slow
        (128, 32, "cpu", 16 * GIB, 16),
        (512, 64, "cuda", 80 * GIB, 8),
        (512, 64, "cuda", 2 * GIB, 2),  # too little memory for more: the minimum
        (32, 8, "cpu", 16 * GIB, 32),  # at most 32
    ],
)
def test_batch_size_from_patch_size_and_memory(patch: int, width: int, device: str, memory: int, batch: int) -> None:
    assert rules.batch_size(patch, width, device, memory).value == batch


def test_memory_caps_the_batch_between_the_minimum_and_the_pixel_target() -> None:
    per_sample = rules.ACTIVATION_BYTES * 64 * 512**2
    assert rules.batch_size(512, 64, "cuda", memory_bytes=2 * 5 * per_sample).value == 5


def test_large_objects_in_large_images_are_downscaled_until_they_fit_a_patch() -> None:
    cars = fingerprint(median_size=(1280, 1918), objects={"median_diameter": 800, "median_thickness": 400, "per_image": 1})
    choice = rules.image_size(cars, 256)
    scale = choice.value / (1280 * 1918) ** 0.5
    assert choice.value % 32 == 0 and 256 <= choice.value <= 512
    assert 800 * scale <= 256 * 1.1  # the median object now about fits a 256 px patch
    assert "resized" in choice.reason


@pytest.mark.parametrize(
    "objects, size",
    [
        ({"median_diameter": 600, "median_thickness": 3}, (584, 565)),  # a vessel tree: thin, never downscaled
        ({"median_diameter": 20, "median_thickness": 12}, (1000, 1000)),  # small nuclei
        ({"median_diameter": 300, "median_thickness": 200}, (1000, 1000)),  # x0.85: not worth it
    ],
    ids=["thin-vessels", "small-objects", "small-gain"],
)
def test_full_resolution_when_downscaling_would_lose_structures_or_gain_little(objects: dict, size: tuple) -> None:
    assert rules.image_size(fingerprint(median_size=size, objects=objects), 256).value == 0


@pytest.mark.parametrize(
    "objects, expected",
    [
        ({"touching": 0.3, "per_image": 200, "source": "instances"}, True),  # histology nuclei
        ({"touching": 0.19, "per_image": 100}, True),  # cells between membranes, 2 px apart
        ({"touching": 0.02, "per_image": 20}, False),
        ({"touching": 0.0, "per_image": 1}, False),  # one car
        ({"touching": 0.3, "per_image": 30, "median_diameter": 300, "median_thickness": 3}, False),  # vessel pieces
    ],
)
def test_border_weight_map_where_objects_touch(objects: dict, expected: bool) -> None:
    assert targets.weight_map(fingerprint(objects=objects)).value is expected


@pytest.mark.parametrize(
    "objects, target",
    [
        ({"source": "instances", "per_image": 40, "touching": 0.02}, "core+border"),  # annotated nuclei
        ({"source": "components", "per_image": 40, "touching": 0.3}, "core+border"),  # cells drawn close together
        ({"source": "components", "per_image": 40, "touching": 0.0}, "none"),  # components apart: they are the objects
        ({"source": "instances", "per_image": 1}, "none"),  # one car
        ({"source": "instances", "per_image": 30, "median_diameter": 300, "median_thickness": 3}, "none"),  # vessels
        ({"source": "instances", "per_image": 300, "median_diameter": 4, "median_thickness": 3}, "none"),  # specks
        ({"source": "none", "per_image": 0}, "none"),
    ],
)
def test_instance_maps_where_several_compact_objects_must_be_told_apart(objects: dict, target: str) -> None:
    assert targets.instance_target(fingerprint(objects=objects)).value == target


def test_no_instance_maps_where_the_class_of_interest_is_the_border_and_no_weight_map_with_them() -> None:
    cells = fingerprint(objects={"source": "components", "per_image": 100, "touching": 0.3})  # between membranes
    assert targets.instance_target(cells, inverted=True).value == "none"
    assert targets.weight_map(cells, "none").value is True
    assert targets.weight_map(cells, "core+border").value is False  # the maps keep the objects apart


@pytest.mark.parametrize(
    "changes, mode",
    [
        ({"coloured": 0.05, "hue_range": 65, "dark": 0.02}, "strong"),  # Carvana cars in a studio
        ({"coloured": 0.01, "hue_range": 91, "dark": 0.01}, "strong"),  # a silver car: few coloured pixels
        ({"coloured": 0.8, "hue_range": 97, "dark": 0.06}, "strong"),  # everyday photographs
        ({"coloured": 0.6, "hue_range": 36, "dark": 0.0}, "mild"),  # H&E-like DSB-2018 images
        ({"coloured": 0.8, "hue_range": 22, "dark": 0.24}, "mild"),  # a fundus photograph
        ({"coloured": 0.4, "hue_range": 160, "dark": 0.6}, "mild"),  # fluorescence channels on black
        ({"coloured": 0.0}, "none"),  # grey stored as RGB
    ],
)
def test_colour_augmentation_follows_the_spread_of_hues_never_the_file_format(changes: dict, mode: str) -> None:
    for jpeg_share in (0.0, 1.0):
        rgb = fingerprint(channels=3, jpeg_share=jpeg_share, **changes)
        assert rules.color_augment(rgb).value == mode
    assert rules.color_augment(fingerprint()).value == "none"  # grey


def test_foreground_oversampling_where_foreground_is_rare_and_patches_small() -> None:
    rare = fingerprint(median_size=(1000, 1000), foreground=[0.9, 0.1])
    assert rules.foreground_oversample(rare, 256, 0).value == pytest.approx(1 / 3, abs=1e-3)
    assert rules.foreground_oversample(rare, 1024, 0).value == 0.0  # a patch is the whole image
    common = fingerprint(median_size=(1000, 1000), foreground=[0.6, 0.4])
    assert rules.foreground_oversample(common, 256, 0).value == 0.0


def test_multi_class_data_trains_with_softmax_dice_and_cross_entropy() -> None:
    assert targets.loss(fingerprint()).value == "bce+dice"
    assert targets.loss(fingerprint(classes=4, foreground=[0.7, 0.1, 0.1, 0.1])).value == "ce+dice"


def test_augmentation_grows_with_how_often_each_image_is_seen() -> None:
    fp = fingerprint(median_size=(512, 512), train_images=100)
    seldom = rules.passes(steps=100, batch=4, patch=256, fp=fp, resized=0)
    often = rules.passes(steps=10_000, batch=4, patch=256, fp=fp, resized=0)
    assert seldom == pytest.approx(1.0) and often == pytest.approx(100.0)
    assert rules.augment(seldom).value == "light" and rules.augment(often).value == "paper"


def test_small_datasets_are_cached_in_memory_big_ones_are_not() -> None:
    assert rules.cache(fingerprint(images=40), weight_maps=True, processes=2, ram_bytes=8 * GIB).value == "ram"
    cars = fingerprint(images=5000, median_size=(1280, 1918), channels=3)  # 45 GiB decoded
    assert rules.cache(cars, False, processes=2, ram_bytes=100 * GIB).value == "none"
    some_cars = fingerprint(images=500, median_size=(1280, 1918), channels=3)  # 4.6 GiB
    assert rules.cache(some_cars, False, processes=2, ram_bytes=100 * GIB).value == "ram"
    assert rules.cache(some_cars, False, processes=14, ram_bytes=100 * GIB).value == "none"  # a copy per process


def test_a_gpu_gets_loader_processes_for_its_cores_a_cpu_keeps_two() -> None:
    assert rules.workers("cuda", 16).value == 14
    assert rules.workers("cuda", 4).value == 2
    assert rules.workers("cuda", 64).value == 16
    assert rules.workers("cpu", 2).value == 2 and rules.workers("cpu", 64).value == 2
