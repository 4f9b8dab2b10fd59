"""`unetkit predict` over files and folders: one Predictor, many images, the chosen output files."""

from __future__ import annotations

import csv
import io
import logging
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from unetkit.atomic import atomic_write_text
from unetkit.config import OutputFormat, ProbFormat, RleOrder
from unetkit.data.reading import IMAGE_EXTENSIONS, is_image_file, read_image
from unetkit.data.rle import rle_encode
from unetkit.data.volumes import is_nifti, volume_stem
from unetkit.data.writing import safe_stem, write_instances, write_mask, write_overlay, write_probabilities
from unetkit.errors import ConfigError, DataError, UnetkitError, naming
from unetkit.inference.postprocess import class_probabilities, instances_for
from unetkit.inference.predictor import Predictor
from unetkit.inference.volume_outputs import check_volume_options, predict_volume_file

log = logging.getLogger(__name__)

FORMATS = typing.get_args(OutputFormat)


@dataclass
class OutputOptions:
    formats: Sequence[OutputFormat] = ("png",)
    overlay: bool = False
    instances: bool = False
    prob_kind: ProbFormat = "png"
    rle_order: RleOrder = "row"


@dataclass
class BatchResult:
    """What one process's share of a batch came to."""

    predicted: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # image -> the one-line reason
    rle_rows: list[list[str]] = field(default_factory=list)


def collect_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Image (and NIfTI volume) files named directly or found (non-recursively) in named folders,
    sorted, deduplicated."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found.extend(sorted(path for path in item.iterdir() if is_image_file(path) or is_nifti(path)))
        elif item.is_file():
            found.append(item)
        else:
            raise DataError(f"{item}: no such file or folder")
    unique = list(dict.fromkeys(found))
    if not unique:
        raise DataError(f"no images found in {', '.join(map(str, inputs))} (looked for {sorted(IMAGE_EXTENSIONS)})")
    _check_distinct_outputs(unique)
    return unique


def _check_distinct_outputs(images: list[Path]) -> None:
    """Two inputs with one output name (``a.png``/``a.tif``, ``a b.png``/``a_b.png``) would overwrite
    each other's masks; checked on the whole list, before it is sharded across processes."""
    owners: dict[str, Path] = {}
    for path in images:
        stem = safe_stem(volume_stem(path))
        if stem in owners:
            raise DataError(
                f"{owners[stem]} and {path} would both write {stem}_mask.png into the output folder; "
                "rename one of them or predict them into separate --out folders"
            )
        owners[stem] = path


def check_options(predictor: Predictor, options: OutputOptions) -> None:
    unknown = set(options.formats) - set(FORMATS)
    if unknown:
        raise ConfigError(f"--format {sorted(unknown)}: choose from {list(FORMATS)}")
    if predictor.config.model.dims == 3:
        check_volume_options(options.formats, options.overlay)
    if "rle" in options.formats and predictor.config.model.classes > 2:
        raise ConfigError(
            f"--format rle encodes one binary mask per image; this model has {predictor.config.model.classes} "
            "classes: use --format png (palette masks) or prob"
        )


def predict_files(
    predictor: Predictor,
    images: Sequence[Path],
    out: Path,
    options: OutputOptions,
    progress: bool = True,
    fail_fast: bool = False,
) -> BatchResult:
    """Predict each image and write its outputs into ``out``. An image that cannot be read or
    predicted is logged (one line) and skipped, or with ``fail_fast`` ends the batch."""
    from tqdm import tqdm

    check_options(predictor, options)
    out.mkdir(parents=True, exist_ok=True)
    result = BatchResult()
    for path in tqdm(images, desc="predict", disable=not progress, leave=False):
        try:
            _predict_file(predictor, path, out, options, result.rle_rows)
        except UnetkitError as error:
            reason = naming(path, error)
            if fail_fast:
                raise type(error)(reason) from None
            log.error("unetkit: error: %s (skipped)", reason)
            result.failed[str(path)] = reason
        else:
            result.predicted += 1
    return result


def _predict_file(predictor: Predictor, path: Path, out: Path, options: OutputOptions, rle_rows: list[list[str]]) -> None:
    if predictor.config.model.dims == 3 or is_nifti(path):  # a 2D model predicts a volume slice by slice
        check_volume_options(options.formats, options.overlay)
        predict_volume_file(predictor, path, out, options.formats, options.instances)
        return
    image = read_image(path, None, predictor.config.data.max_pixels)
    probabilities = predictor.predict_image(image)
    labels = predictor.labels(probabilities)
    classes = max(2, predictor.config.model.classes)
    stem = safe_stem(path.stem)
    if "png" in options.formats:
        write_mask(out / f"{stem}_mask.png", labels, classes)
    if "prob" in options.formats:
        write_probabilities(out / stem, class_probabilities(probabilities, predictor.config.model), options.prob_kind)
    if options.overlay:
        write_overlay(out / f"{stem}_overlay.png", image, labels, classes)
    if options.instances:
        write_instances(out / f"{stem}_instances.png", instances_for(probabilities, predictor.config))
    if "rle" in options.formats:
        rle_rows.append([path.name, rle_encode(labels > 0, options.rle_order)])


def write_rle_csv(path: Path, rows: list[list[str]]) -> None:
    """Kaggle submission format: header ``img,rle_mask``, one row per image."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["img", "rle_mask"])
    writer.writerows(sorted(rows))
    atomic_write_text(path, buffer.getvalue())
