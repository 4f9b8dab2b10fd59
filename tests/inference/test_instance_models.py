"""Models with instance maps through every reader (predict, evaluate, serve's encoders, ONNX), and
checkpoints written before instance maps existed, which decode as they always did."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from inference_helpers import tiny_config, tiny_model
from PIL import Image

from unetkit.checkpoint import save_checkpoint
from unetkit.cli import main
from unetkit.inference.postprocess import foreground_probability, instances_from_probabilities
from unetkit.inference.predictor import Predictor

IMAGE = np.random.default_rng(3).integers(0, 256, size=(40, 52), dtype=np.uint8)


def write_data(folder: Path) -> Path:
    """images/ + masks/ + instances/ of two grey images with two touching boxes each."""
    for sub in ("images", "masks", "instances"):
        (folder / sub).mkdir(parents=True)
    for index in range(2):
        Image.fromarray(np.roll(IMAGE, 7 * index, axis=1)).save(folder / "images" / f"im{index}.png")
        instances = np.zeros(IMAGE.shape, np.uint16)
        instances[8:24, 6:20], instances[8:24, 20:36] = 1, 2
        Image.fromarray(instances).save(folder / "instances" / f"im{index}.png")
        Image.fromarray(((instances > 0) * 255).astype(np.uint8)).save(folder / "masks" / f"im{index}.png")
    return folder


def test_a_checkpoint_from_before_instance_maps_predicts_instances_as_it_did(tmp_path: Path) -> None:
    config = tiny_config(tile_size=64)
    path = tmp_path / "old.pt"
    save_checkpoint(path, config, tiny_model(config).state_dict())
    payload = torch.load(path, weights_only=True)  # as an earlier unetkit wrote it: no new keys, its defaults
    del payload["config"]["model"]["instance_target"], payload["config"]["predict"]["instance_map_h"]
    payload["config"]["predict"]["instance_seeds"] = "distance"
    torch.save(payload, path)
    Image.fromarray(IMAGE).save(tmp_path / "image.png")
    assert main(["predict", "--checkpoint", str(path), str(tmp_path / "image.png"), "--out", str(tmp_path / "out"),
                 "--instances", "--device", "cpu"]) == 0  # fmt: skip
    with Image.open(tmp_path / "out" / "image_instances.png") as written:
        instances = np.asarray(written)
    probabilities = Predictor.from_checkpoint(path, device="cpu").predict_image(IMAGE)
    assert probabilities.shape == (1, 40, 52)
    np.testing.assert_array_equal(instances, instances_from_probabilities(probabilities[0]))


@pytest.fixture
def maps_checkpoint(tmp_path: Path) -> Path:
    config = tiny_config(tile_size=64)
    config.model.instance_target = "border+distance"
    path = tmp_path / "maps.pt"
    save_checkpoint(path, config, tiny_model(config).state_dict())
    return path


def test_a_model_with_maps_predicts_classes_then_maps_and_writes_class_probabilities(maps_checkpoint, tmp_path) -> None:
    predictor = Predictor.from_checkpoint(maps_checkpoint, device="cpu")
    probabilities = predictor.predict_image(IMAGE)
    assert probabilities.shape == (3, 40, 52) and probabilities.min() >= 0 and probabilities.max() <= 1
    np.testing.assert_array_equal(predictor.labels(probabilities), (probabilities[0] >= 0.5).astype(np.uint8))
    np.testing.assert_array_equal(foreground_probability(probabilities, predictor.config.model), probabilities[0])
    Image.fromarray(IMAGE).save(tmp_path / "image.png")
    assert main(["predict", "--checkpoint", str(maps_checkpoint), str(tmp_path / "image.png"), "--out",
                 str(tmp_path / "out"), "--instances", "--format", "png", "prob", "--device", "cpu"]) == 0  # fmt: skip
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [
        "image_instances.png", "image_mask.png", "image_prob.png"]  # one class probability, no maps


def test_evaluate_scores_objects_by_itself_for_a_model_with_maps(maps_checkpoint, tmp_path) -> None:
    data = write_data(tmp_path / "data")
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(maps_checkpoint), "--data", str(data), "--device", "cpu",
                 "--json", str(report)]) == 0  # fmt: skip
    figures = json.loads(report.read_text())
    for key in ("dsb_score", "ap_50", "f1_50", "pq", "aji", "pooled"):
        assert key in figures
    assert all(image["true_objects"] == 2 for image in figures["images"])


@pytest.mark.export
def test_onnx_export_of_a_model_with_maps_runs_the_same(maps_checkpoint, tmp_path) -> None:
    onnx = tmp_path / "maps.onnx"
    assert main(["export", "--checkpoint", str(maps_checkpoint), "--format", "onnx", "--out", str(onnx)]) == 0
    torch_run = Predictor.from_checkpoint(maps_checkpoint, device="cpu", precision="32").predict_image(IMAGE)
    onnx_run = Predictor.from_checkpoint(maps_checkpoint, engine="onnxruntime", onnx_path=onnx).predict_image(IMAGE)
    np.testing.assert_allclose(onnx_run, torch_run, atol=1e-4)
