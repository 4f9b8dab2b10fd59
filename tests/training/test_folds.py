"""cv.json's figures: each fold's validation at the end of training and at best.pt, the latter
named optimistic (chosen on the same images)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from unetkit.checkpoint import save_checkpoint
from unetkit.config import Config
from unetkit.training.folds import CV_METRICS, cross_validation_report


def fold_run(folder: Path, dice_by_step: dict[int, float], best_step: int) -> Path:
    """A fold's run folder as the trainer leaves it: metrics.csv, best.pt and last.pt (at the last step)."""
    folder.mkdir()
    with open(folder / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["step", *CV_METRICS])
        writer.writeheader()
        writer.writerows({"step": step, **dict.fromkeys(CV_METRICS, dice)} for step, dice in dice_by_step.items())
    save_checkpoint(folder / "best.pt", Config(), {}, step=best_step)
    save_checkpoint(folder / "last.pt", Config(), {}, step=max(dice_by_step))
    return folder


def test_each_fold_is_scored_at_the_end_and_at_best_pt_and_best_pt_is_named_optimistic(tmp_path: Path) -> None:
    folders = [
        fold_run(tmp_path / "fold_0", {10: 0.8, 20: 0.9, 30: 0.7}, best_step=20),  # peaked, then fell
        fold_run(tmp_path / "fold_1", {10: 0.6, 20: 0.75}, best_step=20),  # best at the end
    ]
    report = cross_validation_report(folders)
    assert [(fold["end"]["step"], fold["end"]["val_dice"]) for fold in report["folds"]] == [(30, 0.7), (20, 0.75)]
    assert [(fold["best"]["step"], fold["best"]["val_dice"]) for fold in report["folds"]] == [(20, 0.9), (20, 0.75)]
    assert report["end"]["mean"]["val_dice"] == pytest.approx(0.725)
    assert report["best"]["mean"]["val_dice"] == pytest.approx(0.825)
    assert report["best"]["std"]["val_iou"] == pytest.approx(0.075)
    assert report["optimistic"] == "best" and "biased up" in report["why"]
