"""Post-processing chosen on the validation images after training, as nnU-Net does.

Each validation image is predicted once; its foreground probability (and, for K classes, its
argmax labels) and its truth are kept as a ``Sample``, the settings are searched on them
(``postprocess_search.py``: the grids, their scores and the rule that keeps the defaults), and the
choice is stored in the checkpoints' ``predict`` config. Work is bounded: at most ``MAX_PIXELS``
validation pixels are kept (images larger than ``CROP_SIDE`` are cropped around their centre,
which keeps sizes in pixels exact), and the search stops at a time limit with the best setting
found so far.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from unetkit.checkpoint import load_checkpoint, save_checkpoint
from unetkit.config import Config, PredictConfig
from unetkit.data.records import Record
from unetkit.device.precision import DTYPE_NAMES, FLOAT32
from unetkit.errors import ConfigError
from unetkit.inference.evaluate import read_truth
from unetkit.inference.postprocess import (
    class_probabilities,
    foreground_probability,
    object_centres,
    postprocessing_settings,
)
from unetkit.inference.postprocess_search import Sample, tune_instances, tune_semantic
from unetkit.inference.predictor import Predictor

log = logging.getLogger(__name__)

MAX_PIXELS = 2**25  # validation pixels kept for the search (128 images of 512 x 512)
CROP_SIDE = 2048  # larger images are cropped to this around their centre
DEFAULT_SECONDS = 120.0  # time limit of the grid search without a budget (predicting the images comes first)
MIN_SEARCH_SECONDS = 1.0  # the search's least time, even where a budget's is spent
SEMANTIC_SHARE = 0.3  # of the search's time, at most, for the semantic settings where instances follow


def tune_checkpoint(
    path: str | Path, records: Sequence[Record], device: str = "auto", seconds: float | None = None
) -> dict:
    """Choose the post-processing of the checkpoint at ``path`` on ``records`` (its validation
    images), store it in the checkpoint's ``predict`` config (rewritten atomically, weights and
    every other entry kept) and return the report (``choose_postprocessing``)."""
    return tune_checkpoints([path], [records], device, seconds)


def tune_checkpoints(
    paths: Sequence[str | Path], records: Sequence[Sequence[Record]], device: str = "auto", seconds: float | None = None
) -> dict:
    """Folds: each checkpoint ``paths[k]`` predicts its own validation images ``records[k]`` (out
    of fold), one choice is made on all of them together and stored in every checkpoint, so that
    their ensemble applies exactly what was tuned. ``seconds``: the whole tuning's time, predicting
    included, so a budget's end holds (None: predicting, then DEFAULT_SECONDS of search)."""
    if len(paths) != len(records) or not paths:
        raise ConfigError(
            f"tune_checkpoints: {len(paths)} checkpoint(s) but {len(records)} list(s) of validation records"
        )
    started = time.monotonic()
    samples: list[Sample] = []
    for path, fold_records in zip(paths, records):
        # As the training ran: timing inference precisions and layouts would spend the budget's last seconds.
        precision, layout = _trained_execution(path)
        predictor = Predictor.from_checkpoint(path, device, precision, settings={"predict.memory_layout": layout})
        samples += collect_samples(predictor, fold_records, MAX_PIXELS // len(paths))
    search = DEFAULT_SECONDS if seconds is None else max(MIN_SEARCH_SECONDS, seconds - (time.monotonic() - started))
    settings, report = choose_postprocessing(samples, predictor.config, search)
    for path in paths:
        _store(Path(path), settings)
    report["seconds"] = round(time.monotonic() - started, 1)
    log.info(describe(report))
    return report


def tune_predictor(
    predictor: Predictor, records: Sequence[Record], seconds: float = DEFAULT_SECONDS
) -> tuple[dict, dict]:
    """(settings, report) of ``choose_postprocessing`` on ``records`` predicted by ``predictor``."""
    return choose_postprocessing(collect_samples(predictor, records), predictor.config, seconds)


def choose_postprocessing(
    samples: Sequence[Sample], config: Config, seconds: float = DEFAULT_SECONDS
) -> tuple[dict, dict]:
    """(post-processing settings for ``PredictConfig``, report) chosen on ``samples``.

    The reference each step must beat is ``config.predict``'s own post-processing: the defaults
    after training, or what the user set (``--threshold``). The report holds ``images``,
    ``seconds`` (of the search), ``chosen`` (the settings that differ from the defaults), and per
    part (``semantic``, ``instances``) the ``metric`` with its ``default`` and ``tuned`` validation
    values and ``held_out``, the cross-validated value of choosing this way (``selection.choose``).
    """
    started = time.monotonic()
    deadline = started + seconds
    settings = postprocessing_settings(config.predict)
    report: dict = {"images": len(samples)}
    if samples:
        with_instances = [sample for sample in samples if sample.instances is not None]
        semantic_share = SEMANTIC_SHARE if with_instances else 1.0  # the objects' search gets the rest
        semantic, report["semantic"] = tune_semantic(samples, config, started + semantic_share * seconds)
        settings.update(semantic)
        if with_instances:
            instance, report["instances"] = tune_instances(with_instances, settings, deadline)
            settings.update(instance)
    defaults = postprocessing_settings(PredictConfig())
    report["chosen"] = {name: value for name, value in settings.items() if value != defaults[name]}
    report["seconds"] = round(time.monotonic() - started, 1)
    return settings, report


def describe(report: dict) -> str:
    """One log line: what was chosen and the validation gain."""
    if not report["images"]:
        return "post-processing: no validation images, defaults kept"
    chosen = ", ".join(f"{name} {value}" for name, value in report["chosen"].items()) or "the defaults kept"
    gains = "; ".join(
        f"{part['metric']} {part['default']:.4f} -> {part['tuned']:.4f}, held out {part['held_out']:.4f}"
        for part in (report.get("semantic"), report.get("instances"))
        if part
    )
    return (
        f"post-processing chosen on {report['images']} validation image(s) in {report['seconds']} s: {chosen} ({gains})"
    )


def collect_samples(predictor: Predictor, records: Sequence[Record], max_pixels: int = MAX_PIXELS) -> list[Sample]:
    """Predict each record once (until ``max_pixels`` are kept); large images cropped to ``CROP_SIDE``."""
    config = predictor.config
    samples: list[Sample] = []
    kept = 0
    for record in records:
        if kept >= max_pixels:
            log.info("post-processing: tuned on the first %d of %d validation images", len(samples), len(records))
            break
        image, truth, instances = read_truth(record, config)
        probabilities = _centre_crop(predictor.predict_image(image))
        classes = class_probabilities(probabilities, config.model)
        labels = classes.argmax(0).astype(np.uint8) if classes.shape[0] > 1 else None
        truth = _centre_crop(truth)
        instances = None if instances is None else _centre_crop(instances)
        foreground = foreground_probability(probabilities, config.model)
        samples.append(Sample(foreground, labels, truth, instances, object_centres(probabilities, config.model)))
        kept += truth.size
    return samples


def _trained_execution(path: str | Path) -> tuple[str, str]:
    """(precision, memory layout) the checkpoint at ``path`` trained in, as ``--precision`` and
    ``--memory-layout`` spell them: as set, or as auto chose (its ``*_chosen`` record begins with the
    name), or the untimed defaults (float32, channels-last) for a checkpoint without one."""
    train = load_checkpoint(path)["config"].train
    precision_by_dtype = {dtype: name for name, dtype in DTYPE_NAMES.items()}
    precision = train.precision
    if precision == "auto":
        precision = precision_by_dtype.get(train.precision_chosen.split(" ")[0], FLOAT32)
    layout = train.memory_layout
    if layout == "auto":
        layout = train.layout_chosen.split(" ")[0] if train.layout_chosen else "channels-last"
    return precision, layout


def _store(path: Path, settings: dict) -> None:
    """Rewrite the checkpoint at ``path`` with ``settings`` in its predict config, all else kept."""
    payload = load_checkpoint(path)
    config: Config = payload.pop("config")
    config.predict = dataclasses.replace(config.predict, **settings)
    weights = payload.pop("model")
    entries = {key: value for key, value in payload.items() if key not in ("format", "version")}
    save_checkpoint(path, config, weights, **entries)


def _centre_crop(array: np.ndarray) -> np.ndarray:
    """``array`` (..., H, W) cropped to at most ``CROP_SIDE`` x ``CROP_SIDE`` around its centre (a
    copy when cropped, so the whole image's array is freed)."""
    height, width = array.shape[-2:]
    top, left = max(0, (height - CROP_SIDE) // 2), max(0, (width - CROP_SIDE) // 2)
    return np.ascontiguousarray(array[..., top : top + CROP_SIDE, left : left + CROP_SIDE])
