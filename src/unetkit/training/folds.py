"""K-fold cross-validation: every fold trained into ``RUN/fold_K/``, the post-processing chosen on
all out-of-fold predictions together, the cross-validation figures in ``RUN/cv.json``.

``unetkit predict --checkpoint RUN`` then averages the folds (inference.ensemble).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from unetkit.atomic import atomic_write_text
from unetkit.checkpoint import load_checkpoint
from unetkit.config import Config
from unetkit.config.flags import with_values
from unetkit.data.prepare import PreparedData, prepare_data
from unetkit.training.trainer import fit

log = logging.getLogger(__name__)

CV_METRICS = ("val_dice", "val_iou", "val_accuracy")
CHECKPOINTS = {"end": "last.pt", "best": "best.pt"}  # cv.json's two figures per fold, from these checkpoints


def fold_folder(out: Path, fold: int) -> Path:
    return out / f"fold_{fold}"


def fit_run(
    prepared: PreparedData, out: Path, *, resume: bool = False, device: str = "auto", one_fold: bool = False,
    started: float | None = None,
) -> dict[str, Any]:
    """Train ``prepared`` into ``out``: one run, or where ``data.folds`` > 1 (and not ``one_fold``, as a
    chosen ``data.fold`` asks) every fold into ``out/fold_K/``. A new run's budget (``train.time``)
    counts from ``started`` (``time.monotonic()``: planning spent part of it). Returns the last
    validation's metrics row, or for folds the cross-validation report (cv.json)."""
    config = prepared.config
    if config.train.time and started is not None and not resume:
        config = with_values(config, {"train.time": max(1.0, config.train.time - (time.monotonic() - started))})
    if config.data.folds <= 1 or one_fold:
        row = fit(dataclasses.replace(prepared, config=config), out, resume=resume, device=device)
        if row:
            log.info("done: best checkpoint %s (val Dice at the end %.4f)", out / "best.pt", row["val_dice"])
        return row
    folds = config.data.folds
    deadline = time.monotonic() + config.train.time if config.train.time else None
    if not resume:
        config = with_values(config, {"train.time": config.train.time / folds})  # every fold's config holds its share
    report = fit_folds(lambda fold: _fold_data(config, fold), folds, out, resume=resume, device=device, deadline=deadline)
    log.info("done: %d folds in %s; predict with --checkpoint %s (their ensemble)", folds, out, out)
    return report


def _fold_data(config: Config, fold: int) -> PreparedData:
    return prepare_data(with_values(config, {"data.fold": fold}), config.model.classes, config.model.in_channels,
                        keep_labels=True)  # fmt: skip


def fit_folds(
    prepared_for: Callable[[int], PreparedData], folds: int, out: Path, *, resume: bool = False, device: str = "auto",
    deadline: float | None = None,
) -> dict[str, Any]:
    """Train folds 0..folds-1 (``prepared_for(k)`` gives fold k's data and config); a resumed run
    continues the fold it stopped in and skips the finished ones. The post-processing is chosen on
    the out-of-fold predictions by ``deadline`` (``time.monotonic()``; None: no budget). Returns the
    cv.json content."""
    from unetkit.inference.tuning import tune_checkpoints
    from unetkit.device import distributed

    prepared = [prepared_for(fold) for fold in range(folds)]
    for fold, fold_data in enumerate(prepared):
        folder = fold_folder(out, fold)
        log.info("fold %d/%d: %d train / %d val images -> %s", fold + 1, folds, len(fold_data.train),
                 len(fold_data.val), folder)
        fit(fold_data, folder, resume=resume and (folder / "last.pt").exists(), device=device, tune=False)
    if not distributed.launched_as_main():
        return {}
    best = [fold_folder(out, fold) / "best.pt" for fold in range(folds)]
    seconds = None if deadline is None else deadline - time.monotonic()
    tune_checkpoints(best, [fold_data.val for fold_data in prepared], device=device, seconds=seconds)
    report = cross_validation_report([fold_folder(out, fold) for fold in range(folds)])
    atomic_write_text(out / "cv.json", json.dumps(report, indent=2))
    log.info("cross-validation over %d folds: val Dice %.4f +- %.4f at the end of training, %.4f +- %.4f at "
             "best.pt (optimistic: chosen on the same images)", folds, report["end"]["mean"]["val_dice"],
             report["end"]["std"]["val_dice"], report["best"]["mean"]["val_dice"], report["best"]["std"]["val_dice"])
    return report


def cross_validation_report(folders: list[Path]) -> dict[str, Any]:
    """Each fold's figures on its validation images at the end of training (last.pt) and at best.pt
    (from its metrics.csv), and their means and spreads. best.pt is the validation that scored
    highest on those very images, so its figures are biased up: ``optimistic`` names them."""
    folds = [{"fold": index, **{point: _row_at(folder, CHECKPOINTS[point]) for point in CHECKPOINTS}}
             for index, folder in enumerate(folders)]  # fmt: skip
    return {
        "folds": folds,
        **{point: _summary([fold[point] for fold in folds]) for point in CHECKPOINTS},
        "optimistic": "best",
        "why": (
            "best.pt is the validation that scored highest on these same images, so its figures are biased up; "
            "end (the last validation, the model at the end of training) was chosen by nothing"
        ),
    }


def _summary(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    values = {name: np.array([row[name] for row in rows]) for name in CV_METRICS}
    return {
        "mean": {name: float(column.mean()) for name, column in values.items()},
        "std": {name: float(column.std()) for name, column in values.items()},
    }


def _row_at(folder: Path, checkpoint: str) -> dict[str, float]:
    """The metrics.csv row of the validation at ``checkpoint``'s step."""
    step = load_checkpoint(folder / checkpoint)["step"]
    with open(folder / "metrics.csv", newline="") as handle:
        row = next(row for row in csv.DictReader(handle) if int(row["step"]) == step)
    return {"step": step, **{name: float(row[name]) for name in CV_METRICS}}
