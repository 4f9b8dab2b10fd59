"""The plan's colour augmentation comes from the pixels, not the file format: the same images saved
as PNG, JPEG and TIFF get the same choice (generated photographs, stains, fluorescence and grey
images here; the Carvana and DSB-2018 samples in the slow suite)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from sample_data import SAMPLE_DATA, needs_sample

from unetkit.config import Config
from unetkit.data.synthetic import make_sample
from unetkit.planning.plan import make_plan
from unetkit.data.prepare import prepare_data

FORMATS = ("png", "jpg", "tif")
Pair = tuple[np.ndarray, np.ndarray]  # an RGB image (uint8) and its mask (0/255)


def planned_colour(folder: Path) -> str:
    """The colour augmentation ``unetkit train`` would plan (a constant fake speed: no probing)."""
    config = Config()
    config.data.path = str(folder)
    prepared = prepare_data(config, None, None)
    plan = make_plan(prepared, budget_seconds=60, device=torch.device("cpu"), fixed={}, speed=lambda *_, **__: 100.0)
    return plan.config.data.color_augment


def save_dataset(pairs: Iterable[Pair], folder: Path, suffix: str) -> Path:
    """An images/ + masks/ dataset with the images in the format of ``suffix`` (JPEG at quality 90)."""
    for kind in ("images", "masks"):
        (folder / kind).mkdir(parents=True)
    for index, (image, mask) in enumerate(pairs):
        Image.fromarray(image).save(folder / "images" / f"{index:03d}.{suffix}", quality=90)
        Image.fromarray(mask).save(folder / "masks" / f"{index:03d}.png")
    return folder


def coloured_blobs(colour: Callable[[np.random.Generator], tuple[float, float, float]], background: float) -> list[Pair]:
    """Blob images whose blobs take HSV colours (degrees, 0..1, 0..1) drawn by ``colour``, on a
    grey background of brightness ``background``, with a little noise."""
    pairs = []
    for index in range(8):
        rng = np.random.default_rng(index)
        instances = make_sample(rng, 96)[1]
        hsv = np.zeros((96, 96, 3), np.float32)
        hsv[..., 2] = background
        for label in range(1, instances.max() + 1):
            hsv[instances == label] = colour(rng)
        rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) + rng.normal(0, 0.01, (96, 96, 3))
        pairs.append(((np.clip(rgb, 0, 1) * 255).astype(np.uint8), ((instances > 0) * 255).astype(np.uint8)))
    return pairs


KINDS: dict[str, tuple[Callable[[], list[Pair]], str]] = {
    # Objects of any colour in a light studio.
    "photographs": (lambda: coloured_blobs(lambda rng: (rng.uniform(0, 360), 0.7, 0.8), 0.8), "strong"),
    # Purple nuclei on white, their shade varying over 30 degrees of hue, as a stain's does.
    "stains": (lambda: coloured_blobs(lambda rng: (rng.uniform(285, 315), 0.5, 0.6), 0.95), "mild"),
    # Red, green or blue cells on black.
    "fluorescence": (lambda: coloured_blobs(lambda rng: (float(rng.choice([0, 120, 240])), 1.0, 0.8), 0.02), "mild"),
    "grey": (lambda: coloured_blobs(lambda rng: (0.0, 0.0, 0.5), 0.8), "none"),
}


@pytest.mark.parametrize("kind", KINDS)
def test_the_same_images_as_png_jpeg_or_tiff_get_the_same_colour_augmentation(kind: str, tmp_path: Path) -> None:
    make, expected = KINDS[kind]
    pairs = make()
    choices = {suffix: planned_colour(save_dataset(pairs, tmp_path / suffix, suffix)) for suffix in FORMATS}
    assert choices == dict.fromkeys(FORMATS, expected)


def converted(folder: Path, out: Path, suffix: str) -> Path:
    """A copy of an images/ + masks/ dataset with its images re-saved as ``suffix`` (JPEG at
    quality 90; a JPEG copied as it is)."""
    shutil.copytree(folder / "masks", out / "masks")
    (out / "images").mkdir()
    for image in sorted((folder / "images").iterdir()):
        target = out / "images" / f"{image.stem}.{suffix}"
        if image.suffix.lstrip(".") == suffix:
            shutil.copyfile(image, target)
        else:
            Image.open(image).convert("RGB").save(target, quality=90)
    return out


def carvana_cars(out: Path) -> Path:
    """Eight views of the sample's cars, their own JPEG files, masks as PNG."""
    views = sorted((SAMPLE_DATA / "carvana" / "train").glob("*.jpg"))[::4]
    for kind in ("images", "masks"):
        (out / kind).mkdir(parents=True)
    for view in views:
        shutil.copyfile(view, out / "images" / view.name)
        mask = SAMPLE_DATA / "carvana" / "train_masks" / f"{view.stem}_mask.gif"
        Image.open(mask).convert("L").save(out / "masks" / f"{view.stem}.png")
    return out


def dsb_colour_images(out: Path) -> Path:
    """DSB-2018's colour (H&E-like) images, their PNG files, nuclei merged into one mask."""
    pairs = []
    for folder in sorted((SAMPLE_DATA / "dsb2018" / "stage1_train").iterdir()):
        image = np.asarray(Image.open(folder / "images" / f"{folder.name}.png").convert("RGB"))
        if np.ptp(image.astype(int), axis=2).mean() > 5:  # grey images stored as RGB have none
            masks = [np.asarray(Image.open(path)) > 0 for path in (folder / "masks").glob("*.png")]
            pairs.append((image, (np.any(masks, axis=0) * 255).astype(np.uint8)))
    assert len(pairs) >= 4, "the sample has too few colour images"
    return save_dataset(pairs, out, "png")


@needs_sample("carvana")
@needs_sample("dsb2018")
@pytest.mark.parametrize(("make", "expected"), [(carvana_cars, "strong"), (dsb_colour_images, "mild")], ids=["cars", "stains"])
def test_the_samples_get_the_same_colour_augmentation_in_every_format(make, expected: str, tmp_path: Path) -> None:  # noqa: ANN001
    original = make(tmp_path / "original")
    choices = {suffix: planned_colour(converted(original, tmp_path / suffix, suffix)) for suffix in FORMATS}
    assert choices == dict.fromkeys(FORMATS, expected)
