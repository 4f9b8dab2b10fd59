"""Intensity normalisation and the Albumentations pipelines for training and evaluation.

An image goes ``raw -> to_unit_range -> build_transform(...) -> standardize_rule(raw)``: geometric
and photometric augmentations act on float32 data in 0..1 (Albumentations' photometric transforms
clip to 0..1), and the standardisation (``meanstd``: the dataset's statistics, ``zscore``: the
image's own, measured on the whole image before any crop) comes last. ``normalize`` is the same
rule in one call, for prediction, where there is no augmentation.
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any, Callable, Iterable, Sequence

import albumentations as A
import cv2
import numpy as np

from unetkit.config import DataConfig, NormalizeConfig
from unetkit.data.reading import read_image, to_channels
from unetkit.data.records import Record
from unetkit.errors import ConfigError

MIRROR = cv2.BORDER_REFLECT_101  # mirror without repeating the edge pixel, as in the paper
FIT_MAX_IMAGES = 50
STAT_PIXELS = 1_000_000  # an image's own mean/std (zscore) from at most about this many pixels


def dtype_scale(dtype: np.dtype) -> float:
    """The value that maps to 1.0: 255 for uint8, 65535 for uint16, 1 for float images."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return 1.0
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    return 1.0


def unit_range_rule(image: np.ndarray, config: NormalizeConfig) -> Callable[[np.ndarray], np.ndarray]:
    """The map of ``image`` (H, W, C), or a volume (D, H, W, C), to float32 in 0..1, for the image or
    any crop of it: scaled by its dtype, or by the image's own percentiles (measured here, on the
    whole image); ``ct``: clipped to the dataset's intensity window (raw units)."""
    if config.mode == "ct":
        low, high = np.float32(config.clip[0]), np.float32(config.clip[1])
        return lambda crop: np.clip(crop.astype(np.float32), low, high)
    if config.mode != "percentile":
        scale = np.float32(1.0 / dtype_scale(image.dtype))
        return lambda crop: crop.astype(np.float32) * scale
    image = _hwc(image)
    spatial = tuple(range(image.ndim - 1))  # (H, W) of images, (D, H, W) of volumes
    low, high = np.percentile(image, [config.low, config.high], axis=spatial).astype(np.float32)
    span = np.maximum(high - low, np.float32(1e-6))  # a flat channel maps to 0, not to NaN
    return lambda crop: np.clip((crop.astype(np.float32) - low) / span, 0.0, 1.0)


def intensity_rule(image: np.ndarray, config: NormalizeConfig) -> Callable[[np.ndarray], np.ndarray]:
    """The full intensity rule fitted to ``image``, to apply to it or to any crop of it (the
    predictor normalises tile by tile, so a big image never has a float copy)."""
    unit = unit_range_rule(image, config)
    standardize = standardize_rule(image, config)
    return lambda crop: standardize(unit(crop))


def to_unit_range(image: np.ndarray, config: NormalizeConfig) -> np.ndarray:
    """Raw image (H, W[, C]) -> float32 (H, W, C) in 0..1."""
    return unit_range_rule(image, config)(_hwc(image))


def standardize_rule(image: np.ndarray, config: NormalizeConfig) -> Callable[[np.ndarray], np.ndarray]:
    """The last step for unit-range crops of the raw ``image`` (H, W, C) or volume (D, H, W, C):
    subtract a mean and divide by a std per channel, the dataset's (``meanstd``, ``ct``) or the whole
    image's own (``zscore``, from a strided sample of at most about STAT_PIXELS pixels); other modes
    leave the crop unchanged."""
    if config.mode in ("meanstd", "ct"):
        mean, std = _mean_std(config, image.shape[-1])
    elif config.mode == "zscore":
        spatial = image.shape[:-1]
        stride = max(1, math.ceil((math.prod(spatial) / STAT_PIXELS) ** (1 / len(spatial))))
        sample = image[(slice(None, None, stride),) * len(spatial)]
        own_mean, own_std = _channel_mean_std([to_unit_range(sample, config)], image.shape[-1])
        mean, std = np.asarray(own_mean, np.float32), np.asarray(own_std, np.float32)
    else:
        return lambda crop: crop
    return lambda crop: (crop - mean) / std


def normalize(image: np.ndarray, config: NormalizeConfig) -> np.ndarray:
    """The full intensity rule for a raw image (H, W[, C]): float32 (H, W, C), ready for the model."""
    return intensity_rule(image, config)(_hwc(image))


def _hwc(image: np.ndarray) -> np.ndarray:
    return image[..., None] if image.ndim == 2 else image


def check_normalization(config: NormalizeConfig, channels: int) -> None:
    """Raise ConfigError now, not in a loader worker, when ``meanstd`` lacks stats for ``channels``."""
    if config.mode in ("meanstd", "ct"):
        _mean_std(config, channels)
    if config.mode == "ct" and (len(config.clip) != 2 or config.clip[0] >= config.clip[1]):
        raise ConfigError(f"data.normalize: ct needs the intensity window clip: [low, high], got {config.clip}")


def _mean_std(config: NormalizeConfig, channels: int) -> tuple[np.ndarray, np.ndarray]:
    if len(config.mean) != channels or len(config.std) != channels:
        raise ConfigError(
            f"data.normalize: meanstd needs {channels} mean and std values, got {config.mean} and "
            f"{config.std}; fit them with fit_normalization or set them in the config"
        )
    return np.asarray(config.mean, np.float32), np.asarray(config.std, np.float32)


def fit_normalization(
    records: Sequence[Record],
    mode: NormalizeConfig | str,
    in_channels: int,
    *,
    max_images: int = FIT_MAX_IMAGES,
    max_pixels: int = DataConfig.max_pixels,
) -> NormalizeConfig:
    """``mode`` (a NormalizeConfig, or its mode name) ready to use: for ``meanstd`` with the
    per-channel mean and std of the dataset's unit-range images, streamed over at most
    ``max_images`` evenly spaced records; other modes have nothing to fit."""
    config = mode if isinstance(mode, NormalizeConfig) else NormalizeConfig(mode=mode)
    if config.mode not in ("scale", "meanstd", "percentile", "zscore", "ct"):
        raise ConfigError(f"normalization mode {config.mode!r} is not one of scale, meanstd, percentile, zscore, ct")
    if config.mode != "meanstd":
        return config
    images = (
        to_unit_range(to_channels(read_image(r.image, r.page, max_pixels), in_channels), NormalizeConfig())
        for r in _evenly_spaced(records, max_images)
    )
    mean, std = _channel_mean_std(images, in_channels)
    return dataclasses.replace(config, mean=mean, std=std)


def _evenly_spaced(records: Sequence[Record], count: int) -> list[Record]:
    if not records:
        raise ConfigError("fit_normalization: there are no images to compute the mean and std from")
    picks = np.unique(np.linspace(0, len(records) - 1, min(count, len(records))).round().astype(int))
    return [records[i] for i in picks]


def _channel_mean_std(images: Iterable[np.ndarray], channels: int) -> tuple[list[float], list[float]]:
    """Streaming sums in float64, so memory stays at one image whatever the subsample size."""
    count = 0
    total = np.zeros(channels)
    squares = np.zeros(channels)
    for image in images:
        pixels = image.reshape(-1, channels).astype(np.float64)
        count += len(pixels)
        total += pixels.sum(axis=0)
        squares += np.square(pixels).sum(axis=0)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - np.square(mean), 0.0))
    std[std < 1e-6] = 1.0  # a constant channel: centre it, do not blow it up
    return mean.tolist(), std.tolist()


class PaperElasticDeform(A.DualTransform):
    """The U-Net paper's elastic deformation: random displacement vectors on a coarse
    ``grid`` x ``grid`` lattice (``sigma`` pixels standard deviation), interpolated bicubically to a
    smooth per-pixel field; the image is resampled bilinearly, masks and weight maps nearest."""

    def __init__(self, grid: int = 3, sigma: float = 10.0, p: float = 0.5):
        super().__init__(p=p)
        self.grid = grid
        self.sigma = sigma

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        coarse = self.random_generator.normal(0.0, self.sigma, (2, self.grid, self.grid)).astype(np.float32)
        dx, dy = (cv2.resize(c, (width, height), interpolation=cv2.INTER_CUBIC) for c in coarse)
        ys, xs = np.indices((height, width), dtype=np.float32)
        return {"map_x": xs + dx, "map_y": ys + dy}

    def apply(self, img: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, **params: Any) -> np.ndarray:
        return _remap(img, map_x, map_y, cv2.INTER_LINEAR)

    def apply_to_mask(self, mask: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, **params: Any) -> np.ndarray:
        return _remap(mask, map_x, map_y, cv2.INTER_NEAREST)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("grid", "sigma")


def _remap(array: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, interpolation: int) -> np.ndarray:
    out = cv2.remap(array, map_x, map_y, interpolation, borderMode=MIRROR)
    return out.reshape(array.shape)  # OpenCV drops a trailing channel axis of length 1


def augmentations(mode: str, square: bool) -> list[A.BasicTransform]:
    """The augmentation steps of ``--augment mode``; 90-degree rotations only for square samples,
    so that every sample of a batch keeps one shape."""
    light: list[A.BasicTransform] = [A.HorizontalFlip(), A.VerticalFlip()]
    if square:
        light.append(A.RandomRotate90())
    paper = light + [
        A.Affine(
            translate_percent=(-0.05, 0.05), scale=(0.9, 1.1), rotate=(-15, 15),
            border_mode=MIRROR, p=0.5,
        ),
        PaperElasticDeform(p=0.5),
    ]
    strong = paper + [
        # p=1: the brightness/contrast step also clips to 0..1, which RandomGamma needs (no NaN)
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=1.0),
        A.RandomGamma(gamma_limit=(80, 120), p=0.3),
        A.OneOf([A.GaussNoise(std_range=(0.01, 0.05)), A.GaussianBlur(sigma_limit=(0.3, 1.2))], p=0.3),
    ]
    modes = {"none": [], "light": light, "paper": paper, "strong": strong}
    if mode not in modes:
        raise ConfigError(f"--augment {mode!r} is not one of {sorted(modes)}")
    return modes[mode]


def color_augmentations(mode: str) -> list[A.BasicTransform]:
    """``data.color_augment``: ``mild`` varies stain and illumination a little (hue +-14 degrees);
    ``strong`` makes any hue and saturation down to grey (photographs, where an object's colour
    says nothing about what it is: a model trained on one blue car must find a silver one)."""
    modes: dict[str, list[A.BasicTransform]] = {
        "none": [],
        "mild": [A.ColorJitter(brightness=0.15, contrast=0.15, saturation=0.2, hue=0.04, p=0.8)],
        "strong": [
            A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.9, hue=0.5, p=0.8),
            A.ToGray(num_output_channels=3, p=0.1),
        ],
    }
    if mode not in modes:
        raise ConfigError(f"data.color_augment {mode!r} is not one of {sorted(modes)}")
    return modes[mode]


def training_crop(data: DataConfig, crop: int) -> A.BasicTransform:
    """A random ``crop`` x ``crop`` patch (mirror-padded when the image is smaller); a
    ``data.foreground_oversample`` share of the patches contain a random foreground pixel."""
    share = data.foreground_oversample
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"data.foreground_oversample must lie in 0..1, got {share}")
    if share == 0.0:
        return A.RandomCrop(crop, crop, pad_if_needed=True, border_mode=MIRROR)
    ignored = [data.labels.ignore_index]
    return A.Sequential([
        A.PadIfNeeded(crop, crop, border_mode=MIRROR),
        A.OneOf([A.CropNonEmptyMaskIfExists(crop, crop, ignore_values=ignored, p=share), A.RandomCrop(crop, crop, p=1.0 - share)], p=1.0),
    ], p=1.0)  # Sequential's default p is 0.5


def build_transform(
    data: DataConfig, train: bool, crop: int | None = None, *, margin: int = 0, seed: int | None = None
) -> A.Compose:
    """The pipeline for a unit-range image (H, W, C float32) with ``mask`` and optional ``weight``.

    Resize to ``data.image_size`` (image linear, masks nearest) when set. Training: mirror-pad every
    side by ``margin`` (valid-padding models see real context around every output pixel), take a
    random ``crop`` x ``crop`` patch (mirror-padded when the image is smaller), augment by
    ``data.augment`` and ``data.color_augment``. Evaluation: a centred ``crop`` when given, no
    augmentation. The standardisation is not part of it (``standardize_rule``, measured on the
    whole image). The weight map and the instance maps ride along as further masks.
    """
    steps: list[A.BasicTransform] = []
    if data.image_size:
        steps.append(A.Resize(data.image_size, data.image_size))
    if train and margin:
        steps.append(A.Pad(margin, border_mode=MIRROR))
    if crop:
        steps.append(training_crop(data, crop) if train else A.CenterCrop(crop, crop, pad_if_needed=True, border_mode=MIRROR))
    if train:
        steps += augmentations(data.augment, square=bool(crop or data.image_size))
        steps += color_augmentations(data.color_augment)
    pipeline = A.Compose(steps, additional_targets={"weight": "mask", "maps": "mask"})
    if seed is not None:
        seed_transform(pipeline, seed)
    return pipeline


def seed_transform(pipeline: A.Compose, seed: int) -> None:
    """Restart ``pipeline``'s randomness from ``seed``, all steps drawing from one generator.

    Not ``A.Compose(seed=...)``: in Albumentations 2.0 that gives every step its own generator
    with the same seed, so equal-probability steps decide alike (both flips or neither).
    """
    pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
