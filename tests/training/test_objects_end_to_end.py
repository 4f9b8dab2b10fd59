"""The issue on objects, end to end: on generated touching blobs the plan chooses instance maps,
and the model trained with them keeps touching pairs apart that the foreground-only model merges."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from unetkit.cli import main
from unetkit.data.synthetic import generate_dataset
from unetkit.metrics import instance_iou

SIZE = 96
TRAIN = ["--steps", "400", "--base-width", "8", "--batch-size", "4", "--patch-size", str(SIZE), "--workers", "0",
         "--device", "cpu", "--precision", "32", "--threads", "1"]  # fmt: skip


def touching_pairs(instances: np.ndarray) -> set[tuple[int, int]]:
    """Pairs of object labels that share an edge."""
    pairs = set()
    for a, b in ((instances[1:], instances[:-1]), (instances[:, 1:], instances[:, :-1])):
        meet = (a != b) & (a > 0) & (b > 0)
        pairs |= {tuple(sorted(pair)) for pair in zip(a[meet].tolist(), b[meet].tolist())}
    return pairs


def pair_outcomes(predicted_folder: Path, truth_folder: Path) -> tuple[int, int]:
    """(touching true pairs whose objects are both matched at IoU 0.5, pairs mostly covered by one
    predicted object) over the held-out images."""
    separated = merged = 0
    for truth_path in sorted(truth_folder.iterdir()):
        true = np.asarray(Image.open(truth_path)).astype(np.int64)
        with Image.open(predicted_folder / f"{truth_path.stem}_instances.png") as written:
            predicted = np.asarray(written).astype(np.int64)
        row = {label: index for index, label in enumerate(np.unique(true)[1:])}
        best_iou = instance_iou(predicted, true).max(axis=1, initial=0.0)
        for a, b in touching_pairs(true):
            separated += bool(best_iou[row[a]] > 0.5 and best_iou[row[b]] > 0.5)
            merged += _covering(predicted, true == a) == _covering(predicted, true == b) != 0
    return separated, merged


def _covering(predicted: np.ndarray, inside: np.ndarray) -> int:
    """The predicted label covering most of an object (0: none)."""
    labels = predicted[inside]
    labels = labels[labels > 0]
    return int(np.bincount(labels).argmax()) if labels.size else 0


@pytest.mark.slow
def test_instance_maps_keep_touching_blobs_apart_that_the_foreground_alone_merges(tmp_path: Path) -> None:
    data = generate_dataset(tmp_path / "train", n_images=24, size=SIZE, seed=0)
    held_out = generate_dataset(tmp_path / "held-out", n_images=8, size=SIZE, seed=100)
    assert main(["plan", str(data), "--time", "1m", "--out", str(tmp_path / "plan.yaml"), "--device", "cpu"]) == 0
    choices = {choice["path"]: choice for choice in yaml.safe_load((tmp_path / "plan.yaml").read_text())["choices"]}
    assert choices["model.instance_target"]["value"] == "core+border", choices["model.instance_target"]["reason"]
    assert choices["data.weight_map"]["value"] is False

    outcomes = {}
    for arm, extra in (("maps", []), ("foreground", ["--instance-target", "none"])):
        run = tmp_path / arm
        assert main(["train", "--data", str(data), "--out", str(run), *TRAIN, *extra]) == 0
        assert main(["predict", "--checkpoint", str(run / "best.pt"), str(held_out / "images"), "--out",
                     str(tmp_path / f"{arm}-out"), "--instances", "--device", "cpu"]) == 0  # fmt: skip
        outcomes[arm] = pair_outcomes(tmp_path / f"{arm}-out", held_out / "instances")
    (maps_separated, maps_merged), (fg_separated, fg_merged) = outcomes["maps"], outcomes["foreground"]
    assert maps_separated > fg_separated and maps_merged < fg_merged, outcomes
