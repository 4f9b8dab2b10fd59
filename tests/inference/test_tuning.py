"""Post-processing chosen on validation images: a network that outputs its input image lets each
test decide the probabilities exactly, so the setting that should win is known."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from inference_helpers import tiny_config
from PIL import Image

from unetkit.checkpoint import load_checkpoint, save_checkpoint
from unetkit.config import Config, LabelConfig, PredictConfig
from unetkit.data.records import Record
from unetkit.inference.postprocess import instances_for, labels_from_probabilities
from unetkit.inference.predictor import Predictor
from unetkit.errors import ConfigError
from unetkit.inference.tuning import tune_checkpoint, tune_checkpoints, tune_predictor
from unetkit.model.unet import UNet


def disc_mask(shape: tuple[int, int], centres: list[tuple[int, int]], radius: float) -> np.ndarray:
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    inside = np.zeros(shape, dtype=bool)
    for row, col in centres:
        inside |= (rows - row) ** 2 + (cols - col) ** 2 <= radius**2
    return inside


def record_for(folder: Path, name: str, probability: np.ndarray, mask: np.ndarray, instances: bool = False) -> Record:
    """A record whose image holds ``probability`` (as 8-bit grey) and whose mask is ``mask``
    (class ids, or instance ids written as a 16-bit instance label image)."""
    image_path, mask_path = folder / f"{name}.png", folder / f"{name}_mask.png"
    Image.fromarray(np.round(probability * 255).astype(np.uint8)).save(image_path)
    Image.fromarray(mask.astype(np.uint16 if instances else np.uint8)).save(mask_path)
    return Record(image_path, (mask_path,), mask_kind="instances" if instances else "semantic")


def echo_predictor(config: Config | None = None) -> Predictor:
    """A predictor whose 'network' returns its (normalised) input: the image is the probability."""
    return Predictor(lambda batch: batch[:, :1].clamp(0, 1), config or tiny_config(tile_size=128))


def test_a_lower_threshold_and_small_object_removal_are_chosen_when_they_win(tmp_path: Path) -> None:
    records = []
    for index in range(3):
        truth = disc_mask((64, 64), [(20 + 8 * index, 30)], radius=8)
        probability = np.where(truth, 0.35, 0.05)  # a timid network: the objects stay under 0.5
        probability[2:4, 60:62] = 0.9  # a 4-pixel false speck
        records.append(record_for(tmp_path, f"image{index}", probability, truth))
    settings, report = tune_predictor(echo_predictor(), records)
    assert 0.05 < settings["threshold"] <= 0.35
    assert 4 < settings["min_object_size"] <= math.pi * 8**2
    assert report["semantic"]["default"] < 0.1 and report["semantic"]["tuned"] == pytest.approx(1.0)
    assert report["semantic"]["held_out"] == pytest.approx(1.0)  # each image scored with a choice made without it
    assert report["chosen"]["threshold"] == settings["threshold"] and report["images"] == 3


def test_defaults_are_kept_when_nothing_beats_them(tmp_path: Path) -> None:
    truth = disc_mask((48, 48), [(24, 24)], radius=10)
    records = [record_for(tmp_path, "perfect", np.where(truth, 0.9, 0.1), truth)]
    settings, report = tune_predictor(echo_predictor(), records)
    assert report["chosen"] == {}
    assert settings == {**settings, "threshold": 0.5, "min_object_size": 0, "keep_largest": False}
    assert report["semantic"]["default"] == report["semantic"]["tuned"] == pytest.approx(1.0)


def test_the_checkpoints_own_setting_is_the_reference_to_beat(tmp_path: Path) -> None:
    records = []
    for index in range(2):
        truth = disc_mask((48, 48), [(24, 20 + 4 * index)], radius=10)
        records.append(record_for(tmp_path, f"timid{index}", np.where(truth, 0.35, 0.05), truth))
    settings, report = tune_predictor(echo_predictor(tiny_config(tile_size=128, threshold=0.3)), records)
    assert settings["threshold"] == 0.3 and report["chosen"] == {"threshold": 0.3}  # already perfect: kept
    assert report["semantic"]["default"] == pytest.approx(1.0)


def test_keep_largest_is_chosen_only_where_masks_hold_one_object(tmp_path: Path) -> None:
    one, two = [], []
    (tmp_path / "one").mkdir(), (tmp_path / "two").mkdir()
    for index in range(2):
        truth = disc_mask((64, 64), [(30, 30)], radius=10)
        false_blob = disc_mask((64, 64), [(8, 56)], radius=7)  # 150 px: more than 0.3 x the object
        one.append(record_for(tmp_path / "one", f"a{index}", np.where(truth | false_blob, 0.9, 0.1), truth))
        pair = disc_mask((64, 64), [(30, 20), (30, 48)], radius=10)  # two true objects, no false one
        two.append(record_for(tmp_path / "two", f"b{index}", np.where(pair, 0.9, 0.1), pair))
    assert tune_predictor(echo_predictor(), one)[0]["keep_largest"] is True
    assert tune_predictor(echo_predictor(), two)[1]["chosen"] == {}


def test_watershed_seeding_is_chosen_for_the_instance_score(tmp_path: Path) -> None:
    """Peanut-shaped cells (two lobes, one cell): distance maxima 5 px apart cut each in two."""
    records = []
    for index in range(2):
        instances = np.zeros((80, 96), dtype=np.int32)
        for label, (row, col) in enumerate([(22, 24), (22, 68), (58, 24 + 8 * index)], start=1):
            instances[disc_mask(instances.shape, [(row, col - 10), (row, col + 10)], radius=12)] = label
        records.append(record_for(tmp_path, f"cells{index}", np.where(instances > 0, 0.9, 0.1), instances, True))
    settings, report = tune_predictor(echo_predictor(), records)
    part = report["instances"]
    assert part["metric"] == "dsb_score" and part["default"] < 0.5 and part["tuned"] == pytest.approx(1.0)
    chosen = Config(predict=PredictConfig(**settings))
    probability = np.where(instances > 0, 0.9, 0.1).astype(np.float32)[None]
    assert instances_for(probability, chosen).max() == 3
    assert instances_for(probability, Config()).max() == 6  # the default cuts every cell in two


def test_multiclass_keeps_the_argmax_and_drops_false_specks(tmp_path: Path) -> None:
    """Three classes, the image's RGB channels being the class probabilities."""
    config = tiny_config(classes=3, in_channels=3, tile_size=128)
    config.data.labels = LabelConfig(mode="values", values={0: 0, 1: 1, 2: 2}, names=["background", "a", "b"])
    records = []
    for index in range(3):
        truth = disc_mask((64, 64), [(20, 20 + 4 * index)], radius=8) + 2 * disc_mask((64, 64), [(44, 40)], radius=9)
        predicted = truth.copy()
        predicted[2:6, 58:62] = 2  # a 16-pixel false speck of class b
        probabilities = np.stack([predicted == k for k in range(3)], axis=-1) * 0.8 + 0.2 / 3
        image_path, mask_path = tmp_path / f"rgb{index}.png", tmp_path / f"rgb{index}_mask.png"
        Image.fromarray(np.round(probabilities * 255).astype(np.uint8)).save(image_path)
        Image.fromarray(truth.astype(np.uint8)).save(mask_path)
        records.append(Record(image_path, (mask_path,)))
    predictor = Predictor(lambda batch: batch, config)
    settings, report = tune_predictor(predictor, records)
    assert settings["threshold"] == 0.5 and 16 < settings["min_object_size"] <= math.pi * 8**2
    assert report["semantic"]["default"] < 0.99 and report["semantic"]["tuned"] == pytest.approx(1.0)


def constant_model_config() -> tuple[Config, dict]:
    """A tiny U-Net whose weights are zero but for the head's bias: probability 0.3 everywhere."""
    config = tiny_config(tile_size=64)
    model = UNet(config.model)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.head.bias.fill_(math.log(0.3 / 0.7))
    return config, model.state_dict()


def test_tune_checkpoint_stores_the_choice_and_keeps_every_other_entry(tmp_path: Path) -> None:
    config, weights = constant_model_config()
    path = tmp_path / "best.pt"
    save_checkpoint(path, config, weights, epoch=7, best_dice=0.25, optimizer={"lr": 0.1})
    records = [
        record_for(tmp_path, f"val{index}", np.zeros((64, 64)), disc_mask((64, 64), [(32, 32)], radius=20 + index))
        for index in range(2)
    ]
    report = tune_checkpoint(path, records, device="cpu")
    assert report["chosen"]["threshold"] <= 0.3  # 0.5 predicts nothing; 0.3 and under everything
    payload = load_checkpoint(path)
    assert payload["config"].predict == PredictConfig(**{**vars(config.predict), **report["chosen"]})
    assert payload["config"].model == config.model and payload["config"].data == config.data
    assert (payload["epoch"], payload["best_dice"], payload["optimizer"]) == (7, 0.25, {"lr": 0.1})
    assert all(torch.equal(payload["model"][name], weights[name]) for name in weights)
    predictor = Predictor.from_checkpoint(path, device="cpu")
    assert predictor.labels(np.full((1, 4, 4), 0.3, dtype=np.float32)).all()


@pytest.mark.parametrize("train, expected", [
    ({"precision": "auto", "precision_chosen": "bfloat16 (measured)", "memory_layout": "auto",
      "layout_chosen": "contiguous (measured)"}, ("bf16", "contiguous")),
    ({"precision": "32", "memory_layout": "channels-last"}, ("32", "channels-last")),
    ({}, ("32", "channels-last")),  # an older checkpoint, auto with nothing recorded
])  # fmt: skip
def test_tuning_predicts_as_the_training_ran_without_timing_anything(tmp_path: Path, monkeypatch, train, expected) -> None:
    config, weights = constant_model_config()
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, **train))
    save_checkpoint(tmp_path / "best.pt", config, weights)
    monkeypatch.setattr("unetkit.device.cache.measured_once", lambda *args: pytest.fail("tuning timed a setting"))
    executions = []
    monkeypatch.setattr("unetkit.inference.tuning.collect_samples", lambda predictor, *args: executions.append(
        predictor.network.execution) or [])
    tune_checkpoint(tmp_path / "best.pt", [], device="cpu")  # no samples: only the execution matters here
    (execution,) = executions
    assert (execution.precision.name, execution.layout.name) == expected


def test_folds_are_tuned_together_on_their_own_validation_images(tmp_path: Path) -> None:
    config, weights = constant_model_config()
    paths = [tmp_path / f"fold_{fold}" / "best.pt" for fold in (0, 1)]
    records = []
    for fold, path in enumerate(paths):
        path.parent.mkdir()
        save_checkpoint(path, config, weights)
        truth = disc_mask((64, 64), [(32, 32)], radius=18 + 4 * fold)
        records.append([record_for(path.parent, "val", np.zeros((64, 64)), truth)])
    report = tune_checkpoints(paths, records, device="cpu")
    assert report["images"] == 2 and report["chosen"]["threshold"] <= 0.3
    stored = [load_checkpoint(path)["config"].predict for path in paths]
    assert stored[0] == stored[1] and stored[0].threshold == report["chosen"]["threshold"]
    with pytest.raises(ConfigError, match="2 checkpoint.* but 1 list"):
        tune_checkpoints(paths, records[:1])


def test_labels_from_probabilities_apply_what_was_chosen() -> None:
    probabilities = np.full((1, 20, 20), 0.1, dtype=np.float32)
    probabilities[0, 2:12, 2:12] = 0.4  # 100 px object under the default threshold
    probabilities[0, 16:18, 16:18] = 0.9  # 4 px speck
    default = labels_from_probabilities(probabilities, Config())
    assert default.sum() == 4
    tuned = labels_from_probabilities(probabilities, Config(predict=PredictConfig(threshold=0.3, min_object_size=5)))
    assert tuned.sum() == 100 and tuned[16:18, 16:18].max() == 0
