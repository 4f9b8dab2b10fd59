"""A dataset's fingerprint: what the planning rules need to know about the images and the masks.

Sizes come from every file header (cheap); intensities, classes and objects from an evenly spaced
sample of at most SAMPLE_IMAGES training pairs, each image subsampled to at most SAMPLE_PIXELS
pixels, so planning takes seconds even for hundreds of big images. No torch here.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from unetkit.config import DataConfig
from unetkit.data.annotations import read_annotation
from unetkit.data.reading import is_jpeg, probe_image, read_image, to_channels
from unetkit.data.records import Record, map_labels
from unetkit.data.transforms import dtype_scale
from unetkit.errors import DataError

SAMPLE_IMAGES = 16
SAMPLE_PIXELS = 100_000  # intensity statistics per sampled image
OBJECT_PIXELS = 1_000_000  # bigger masks are subsampled (every k-th row and column) for the object statistics
MAX_HEADERS = 2000
PERCENTILES = (0.5, 50.0, 99.5)
COLOURED = 0.2
DARK = 0.1  # unit range: the brightest channel below this is near black (and its hue unreliable)
HUE_BIN = 20.0  # degrees
NEAR_GAP = 2  # px: objects of a semantic mask this close count as touching (one merged blob otherwise)


@dataclass
class ObjectStats:
    """Objects: instances where the annotation has them, else connected components of the objects'
    class (the foreground, or class 0 for inverted labels: cells between membranes)."""

    source: str = "none"  # "instances" | "components" | "none"
    per_image: float = 0.0  # median count per image
    median_area: float = 0.0  # px
    median_diameter: float = 0.0  # px, of the circle with the median area
    median_thickness: float = 0.0  # px, median width along the objects' skeletons (thin structures)
    touching: float = 0.0  # share of objects that touch another (instances) or lie within NEAR_GAP px


@dataclass
class Fingerprint:
    images: int
    train_images: int
    median_size: tuple[int, int]  # (height, width)
    min_size: tuple[int, int]
    max_size: tuple[int, int]
    channels: int  # the model's input channels
    bit_depth: int  # 8, 16, or 32 for float images
    jpeg_share: float  # share of images stored as JPEG: shown, never decisive (any pixels can be saved as JPEG)
    percentiles: list[list[float]]  # per channel, PERCENTILES of the unit-range intensities
    mean: list[float]  # per channel, unit range
    std: list[float]
    image_std: float  # median over images of an image's own std (its contrast), unit range
    mean_spread: float  # std over images of the image means: how much brightness varies
    coloured: float  # share of pixels with a clear colour (saturation > COLOURED); 0 for grey images
    hue_range: float  # degrees: the effective hue range of the coloured pixels (2^entropy x HUE_BIN); 0 for grey
    dark: float  # share of pixels near black (brightest channel < DARK): a fluorescence background
    classes: int  # classes including background
    foreground: list[float]  # share of labelled pixels per class id (index 0: background)
    objects: ObjectStats = field(default_factory=ObjectStats)
    sampled: int = 0  # images read for the statistics

    @property
    def median_side(self) -> int:
        return min(self.median_size)

    @property
    def median_pixels(self) -> int:
        return self.median_size[0] * self.median_size[1]

    def pixels_at(self, resized: int) -> int:
        """Pixels of a median image as the run trains on it: resized to a ``resized`` square, or as it is (0)."""
        return resized**2 if resized else self.median_pixels

    @property
    def foreground_share(self) -> float:
        return 1.0 - self.foreground[0]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class _ImageFacts:
    pixels: np.ndarray  # (n, C) sampled unit-range intensities
    dtype: np.dtype
    class_pixels: np.ndarray  # counts per class id
    object_areas: np.ndarray
    widths: np.ndarray  # object widths along their skeletons, px
    touching: int
    instances: bool


def fingerprint(
    train: Sequence[Record], val: Sequence[Record], data: DataConfig, channels: int, classes: int
) -> Fingerprint:
    """The fingerprint of a prepared dataset: ``data.labels`` resolved, ``channels`` and
    ``classes`` (1 = binary) as the model will have them."""
    records = list(train) + list(val)
    if not train:
        raise DataError(f"{data.path}: no training images to plan from")
    sizes = np.array([_size(record) for record in _evenly_spaced(records, MAX_HEADERS)])
    class_count = max(classes, 2)
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        facts = list(pool.map(lambda r: _image_facts(r, data, channels, class_count), _evenly_spaced(train, SAMPLE_IMAGES)))
    pixels = np.concatenate([fact.pixels for fact in facts])
    image_means = [float(fact.pixels.mean()) for fact in facts]
    class_pixels = np.sum([fact.class_pixels for fact in facts], axis=0)
    by_area = sizes.prod(axis=1)
    return Fingerprint(
        images=len(records),
        train_images=len(train),
        median_size=(int(np.median(sizes[:, 0])), int(np.median(sizes[:, 1]))),
        min_size=tuple(int(v) for v in sizes[by_area.argmin()]),
        max_size=tuple(int(v) for v in sizes[by_area.argmax()]),
        channels=channels,
        bit_depth=_bit_depth(facts[0].dtype),
        jpeg_share=float(np.mean([is_jpeg(record.image) for record in records])),
        percentiles=_rounded(np.percentile(pixels, PERCENTILES, axis=0).T),
        mean=_rounded(pixels.mean(axis=0)),
        std=_rounded(pixels.std(axis=0)),
        image_std=round(float(np.median([fact.pixels.std(axis=0).mean() for fact in facts])), 4),
        mean_spread=round(float(np.std(image_means)), 4),
        coloured=round(_coloured_share(pixels), 4),
        hue_range=round(_hue_range(pixels), 1),
        dark=round(float(np.mean(pixels.max(axis=1) < DARK)), 4),
        classes=class_count,
        foreground=_rounded(class_pixels / max(1, class_pixels.sum())),
        objects=_object_stats(facts),
        sampled=len(facts),
    )


def _rounded(values: np.ndarray) -> list:
    """Four decimals, as plain floats (float32 values would print their binary tails)."""
    return np.asarray(values, dtype=np.float64).round(4).tolist()


def _evenly_spaced(records: Sequence[Record], count: int) -> list[Record]:
    picks = np.unique(np.linspace(0, len(records) - 1, min(count, len(records))).round().astype(int))
    return [records[i] for i in picks]


def _size(record: Record) -> tuple[int, int]:
    info = probe_image(record.image, record.page)
    return info.height, info.width


def _bit_depth(dtype: np.dtype) -> int:
    return 32 if np.dtype(dtype).kind == "f" else 8 * np.dtype(dtype).itemsize


def _image_facts(record: Record, data: DataConfig, channels: int, classes: int) -> _ImageFacts:
    image = to_channels(read_image(record.image, record.page, data.max_pixels), channels)
    stride = _stride(image.shape, SAMPLE_PIXELS)
    pixels = image[::stride, ::stride].reshape(-1, channels).astype(np.float32) / np.float32(dtype_scale(image.dtype))
    raw, instances = read_annotation(record, data.max_pixels)
    try:
        labels = map_labels(raw, data.labels)
    except ValueError as exc:  # values the class mapping lacks
        raise DataError(f"{record.masks[0] if record.masks else record.image}: {exc}") from exc
    class_pixels = np.bincount(labels[labels != data.labels.ignore_index].ravel(), minlength=classes)[:classes]
    step = _stride(labels.shape, OBJECT_PIXELS)
    objects, touching = _objects(labels[::step, ::step], None if instances is None else instances[::step, ::step], data)
    areas = np.bincount(objects.ravel())[1:] * step**2
    widths = _skeleton_widths(objects) * step
    return _ImageFacts(pixels, image.dtype, class_pixels, areas[areas > 0], widths, touching, instances is not None)


def _stride(shape: tuple[int, ...], pixels: int) -> int:
    """The step that keeps every k-th row and column of an image of ``shape`` to about ``pixels``."""
    return max(1, int(np.ceil(np.sqrt(shape[0] * shape[1] / pixels))))


def _objects(labels: np.ndarray, instances: np.ndarray | None, data: DataConfig) -> tuple[np.ndarray, int]:
    """(object label image, how many objects touch another). Instances touch when they share an
    edge; components of a semantic mask are separate by construction, so they count when a gap of
    at most NEAR_GAP px separates them (the case the border weight map is for)."""
    if instances is not None:
        return instances, len(_touching_ids(instances))
    cells = labels == 0 if data.labels.invert else (labels != 0) & (labels != data.labels.ignore_index)
    components = ndimage.label(cells, structure=np.ones((3, 3)))[0]  # a 1 px diagonal line is one object
    grown = ndimage.grey_dilation(components, size=(NEAR_GAP + 1, NEAR_GAP + 1))
    grown = np.where(components > 0, components, grown)
    return components, len(_touching_ids(grown))


def _touching_ids(objects: np.ndarray) -> set[int]:
    """Labels that share an edge with another label (both nonzero)."""
    ids: set[int] = set()
    for a, b in ((objects[1:], objects[:-1]), (objects[:, 1:], objects[:, :-1])):
        meet = (a != b) & (a > 0) & (b > 0)
        ids.update(np.unique(a[meet]).tolist())
        ids.update(np.unique(b[meet]).tolist())
    return ids


def _skeleton_widths(objects: np.ndarray) -> np.ndarray:
    """The objects' widths (2 x distance to the edge - 1) along their medial ridges (pixels whose
    distance to the edge no neighbour exceeds): a vessel tree gives its vessels' widths, not the
    size of the tree. Touching objects are cut apart first."""
    inner = objects.copy()
    for a, b in ((inner[1:], objects[:-1]), (inner[:, 1:], objects[:, :-1])):
        a[(a != b) & (b > 0)] = 0
    filled = inner > 0
    distance = ndimage.distance_transform_edt(filled)
    ridge = filled & (distance >= ndimage.maximum_filter(distance, size=3))
    return 2.0 * distance[ridge] - 1.0


def _object_stats(facts: Sequence[_ImageFacts]) -> ObjectStats:
    areas = np.concatenate([fact.object_areas for fact in facts])
    if not len(areas):
        return ObjectStats()
    median_area = float(np.median(areas))
    return ObjectStats(
        source="instances" if any(fact.instances for fact in facts) else "components",
        per_image=float(np.median([len(fact.object_areas) for fact in facts])),
        median_area=median_area,
        median_diameter=round(float(np.sqrt(4.0 * median_area / np.pi)), 1),
        median_thickness=float(np.median(np.concatenate([fact.widths for fact in facts]))),
        touching=round(sum(fact.touching for fact in facts) / len(areas), 4),
    )


def _coloured_share(pixels: np.ndarray) -> float:
    """Share of the (not near-black) pixels whose HSV saturation exceeds COLOURED: grey images
    stored as RGB have none, a coloured object on a grey background its area."""
    coloured, lit = _coloured_pixels(pixels)
    return len(coloured) / lit if lit else 0.0


def _hue_range(pixels: np.ndarray) -> float:
    """How wide the coloured pixels' hues spread, in degrees: 2^H x HUE_BIN, with H the entropy
    (bits) of their hue histogram in HUE_BIN bins. Hues spread evenly over a band give its width;
    a few stray pixels add little; two narrow bands (two stains) count as about twice one."""
    coloured, _ = _coloured_pixels(pixels)
    if not len(coloured):
        return 0.0
    red, green, blue = coloured.T
    brightest, spread = coloured.max(axis=1), np.ptp(coloured, axis=1)
    # The HSV hue, in sixths of the circle.
    sector = np.select([brightest == red, brightest == green], [(green - blue) / spread % 6, (blue - red) / spread + 2],
                       (red - green) / spread + 4)  # fmt: skip
    bins = round(360 / HUE_BIN)
    counts = np.bincount((sector * bins / 6).astype(int) % bins, minlength=bins)
    shares = counts[counts > 0] / len(coloured)
    return float(2 ** -(shares * np.log2(shares)).sum() * HUE_BIN)


def _coloured_pixels(pixels: np.ndarray) -> tuple[np.ndarray, int]:
    """The RGB values of the lit pixels (not near black, where hue is noise) whose saturation
    exceeds COLOURED, and how many pixels are lit; none for images of fewer than three channels."""
    if pixels.shape[1] < 3:
        return np.empty((0, 3), pixels.dtype), 0
    rgb = pixels[:, :3]
    brightest = rgb.max(axis=1)
    lit = brightest > DARK
    saturated = (brightest - rgb.min(axis=1)) > COLOURED * brightest
    return rgb[lit & saturated], int(lit.sum())
