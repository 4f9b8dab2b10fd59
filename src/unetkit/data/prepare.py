"""From a data folder and a partial config to a resolved config and train/validation records:
layout, class mapping, input channels, intensity rule, split. Done once, before any training."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from unetkit.atomic import atomic_path
from unetkit.config import Config, DataConfig, LabelConfig, MaskValues, TrainConfig, dice_loss_for
from unetkit.data.annotations import read_annotation
from unetkit.data.reading import read_image
from unetkit.data.writing import safe_stem
from unetkit.data.labels import instance_labels, labels_from_scan, looks_like_instances, scan_values
from unetkit.data.layouts import Discovery, discover
from unetkit.data.records import Record, map_labels
from unetkit.data.splits import split_records
from unetkit.data.volumes import is_volume_record, read_volume_record, slice_records
from unetkit.data.transforms import fit_normalization
from unetkit.data.weights import weight_map_for
from unetkit.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    config: Config
    root: Path
    train: list[Record]
    val: list[Record]
    mask_values: list[int]


def discover_data(config: Config, path: str) -> Discovery:
    data = config.data
    discovery = discover(path, data.layout, strict=data.strict, data=data)
    return _as_instances(discovery) if data.masks == "instances" else discovery


def _as_instances(discovery: Discovery) -> Discovery:
    """Label-image masks read as instances: every value one object (foreground: any value)."""
    def convert(records: list[Record]) -> list[Record]:
        return [dataclasses.replace(r, mask_kind="instances") if r.mask_kind == "semantic" else r for r in records]

    return dataclasses.replace(discovery, records=convert(discovery.records), val_records=convert(discovery.val_records))


def prepare_data(
    config: Config, classes: int | None, in_channels: int | None, keep_labels: bool = False
) -> PreparedData:
    """Resolve what the data decides (classes, labels, channels, normalisation) and split it.

    ``classes`` / ``in_channels`` are the user's explicit choices (None: take them from the data);
    ``keep_labels`` keeps the config's class mapping (a resumed run must not re-derive it).
    """
    if not config.data.path:
        raise ConfigError("no training data: pass --data DIR")
    if classes is not None and classes < 1:
        raise ConfigError(f"--classes {classes}: use 1 (binary, sigmoid) or K >= 2 (softmax over K classes)")
    discovery = discover_data(config, config.data.path)
    for warning in discovery.warnings:
        log.warning("%s", warning)
    if not discovery.records:
        raise DataError(f"{discovery.root}: no image/mask pairs found (layout {discovery.layout})")
    masks = config.data.masks
    if keep_labels:
        labels, mask_values = config.data.labels, sorted(config.data.labels.values)
    else:
        labels, mask_values, masks = _resolve_labels(discovery, classes, config.data)
        discovery = _as_instances(discovery) if masks == "instances" else discovery
    model = dataclasses.replace(
        config.model,
        classes=classes if classes is not None else _class_count(labels),
        in_channels=in_channels or _channels_of(discovery.records[0], config.data.max_pixels),
    )
    data = dataclasses.replace(config.data, layout=discovery.layout, labels=labels, masks=masks)
    train, val = _split(config, discovery)
    if data.normalize.mode == "meanstd" and not data.normalize.mean:
        data.normalize = fit_normalization(train, data.normalize, model.in_channels)
    resolved = dataclasses.replace(config, model=model, data=data, train=_loss_for_classes(config.train, model.classes))
    log.info(
        "data: %s layout, %d train / %d val images, classes %s (mask values %s), %d input channel(s)",
        discovery.layout, len(train), len(val), labels.names, mask_values, model.in_channels,
    )
    return PreparedData(resolved, discovery.root, train, val, mask_values)


def as_slices(prepared: PreparedData) -> PreparedData:
    """A 2D model on volume data trains and validates on their slices (z); otherwise unchanged."""
    if prepared.config.model.dims != 2 or not prepared.train or not is_volume_record(prepared.train[0]):
        return prepared
    return dataclasses.replace(prepared, train=slice_records(prepared.train), val=slice_records(prepared.val))


def save_weight_maps(prepared: PreparedData, out: Path, count: int = 8) -> list[Path]:
    """Draw the border weight maps of the first ``count`` training images into ``out`` for a look
    (colour-mapped PNGs, brighter = heavier; the scale is each map's own)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = prepared.config.data
    written = []
    for record in prepared.train[:count]:
        raw, instances = read_annotation(record, data.max_pixels)
        weights = weight_map_for(map_labels(raw, data.labels), instances, data)
        path = out / f"{safe_stem(record.name)}_weights.png"
        with atomic_path(path) as tmp:
            plt.imsave(tmp, weights, cmap="magma", format="png")
        written.append(path)
    return written


def _resolve_labels(
    discovery: Discovery, classes: int | None, data: DataConfig
) -> tuple[LabelConfig, list[int], MaskValues]:
    """The class mapping, the raw mask values seen, and how the masks are read (classes or instances)."""
    if discovery.labels is None:
        scan = scan_values(discovery.records, data.max_pixels)
        values = sorted(scan.values)
        if data.masks == "instances" or (data.masks == "auto" and classes in (None, 1, 2) and looks_like_instances(scan)):
            if data.masks == "auto":
                log.info("masks: %d distinct values (up to %d): read as instance label images, every value one object "
                         "(--masks classes reads them as classes)", len(values), values[-1])
            return instance_labels(), values, "instances"
        return labels_from_scan(scan, classes), values, "classes"
    labels = discovery.labels
    expected = _class_count(labels)
    if classes is not None and classes != expected and not (expected == 1 and classes == 2):
        raise DataError(
            f"{discovery.root}: --classes {classes} contradicts the {discovery.layout} layout's "
            f"{max(expected, 2)} classes {labels.names}; drop --classes or choose another mode of the layout"
        )
    values = sorted(labels.values) if labels.mode == "values" else [labels.threshold]
    return labels, values, data.masks


def _loss_for_classes(train: TrainConfig, classes: int) -> TrainConfig:
    """The default loss is named for binary tasks; more classes train with its softmax twin."""
    if train.loss == TrainConfig().loss:
        return dataclasses.replace(train, loss=dice_loss_for(classes))
    return train


def _class_count(labels: LabelConfig) -> int:
    """Model output channels for a label mapping: 1 for binary (sigmoid), else one per class."""
    if labels.mode == "threshold":
        return 1
    count = len(set(labels.values.values()))
    return 1 if count <= 2 else count


def _channels_of(record: Record, max_pixels: int) -> int:
    """Grey images train a 1-channel model; colour (RGB, RGBA read as RGB) a 3-channel one; a
    volume's channels (MRI sequences) are all kept."""
    if is_volume_record(record):
        return read_volume_record(record, max_pixels).array.shape[-1]
    channels = read_image(record.image, record.page, max_pixels).shape[2]
    return 1 if channels == 1 else 3


def _split(config: Config, discovery: Discovery) -> tuple[list[Record], list[Record]]:
    data = config.data
    if data.val_path:
        val = discover_data(config, data.val_path).records
        if not val:
            raise DataError(f"{data.val_path}: no image/mask pairs found for validation")
        return discovery.records, val
    if discovery.val_records:
        return discovery.records, discovery.val_records
    return split_records(discovery.records, data.val_fraction, config.train.seed, data.folds, data.fold)
