"""The Python API alone: plan, train, load, predict and evaluate a tiny model on generated images,
and the documentation's notebook-style example runs as written."""

from __future__ import annotations

import inspect
import runpy
from pathlib import Path

import numpy as np
import pytest

import unetkit
from unetkit.data.reading import read_image
from unetkit.data.synthetic import generate_dataset
from unetkit.errors import ConfigError
from unetkit.planning.plan import SET_BY_YOU

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "python_api.py"
# A few steps of a narrow, shallow network on 40 px images: seconds on a CPU.
TINY = {"steps": 6, "val_every": 6, "base_width": 4, "depth": 2, "workers": 0, "samples": 0}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("blobs"), n_images=6, size=40, seed=0)


@pytest.fixture(scope="module")
def run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> unetkit.Run:
    return unetkit.train(data, tmp_path_factory.mktemp("api") / "run", use_plan=False, **TINY)


def test_train_returns_the_run_folder_its_best_checkpoint_and_the_last_validation(run: unetkit.Run) -> None:
    assert run.best_checkpoint == run.folder / "best.pt" and run.best_checkpoint.is_file()
    assert run.metrics["step"] == TINY["steps"] and 0.0 <= run.metrics["val_dice"] <= 1.0
    trained = unetkit.Config.load(run.folder / "config.yaml")
    assert (trained.model.base_width, trained.model.depth, trained.train.workers) == (4, 2, 0)


def test_a_loaded_model_called_on_an_image_gives_mask_probabilities_and_lazy_instances(run: unetkit.Run, data: Path) -> None:
    model = unetkit.load(run, device="cpu")
    path = data / "images" / "blobs_0000.png"
    image = read_image(path)
    result = model(image)
    outputs = model.predict_image(image)
    assert result.mask.shape == (40, 40) and result.mask.dtype == np.uint8
    assert np.array_equal(result.mask, model.labels(outputs))
    assert result.probabilities.shape == (1, 40, 40) and np.allclose(result.probabilities, outputs[:1])
    assert "instances" not in vars(result)  # computed when first read
    assert result.instances.shape == (40, 40) and result.instances is result.instances
    assert np.array_equal(model(str(path)).mask, result.mask)  # a file reads as the array does


def test_load_applies_prediction_settings_before_the_predictor_checks_them(run: unetkit.Run) -> None:
    assert unetkit.load(run, device="cpu", tile_size=16, tta=True).config.predict.tile_size == 16
    with pytest.raises(ConfigError, match="tile_size 15 must be a multiple of 4"):
        unetkit.load(run, device="cpu", tile_size=15)
    with pytest.raises(ConfigError, match="tile_sides: no such setting"):
        unetkit.load(run, device="cpu", tile_sides=16)


def test_evaluate_takes_a_run_or_a_loaded_model(run: unetkit.Run, data: Path) -> None:
    by_path = unetkit.evaluate(run, data, device="cpu")
    by_model = unetkit.evaluate(unetkit.load(run, device="cpu"), data)
    assert len(by_path["images"]) == 6 and by_path["failed"] == {}
    assert by_path["dice"] == pytest.approx(by_model["dice"])


def test_plan_keeps_the_settings_given_as_keywords_or_config_paths(data: Path) -> None:
    plan = unetkit.plan(data, device="cpu", steps=4, base_width=4, workers=0, **{"model.instance_target": "border"})
    reasons = {choice.path: choice.reason for choice in plan.choices}
    assert plan.config.model.base_width == 4 and reasons["model.base_width"] == SET_BY_YOU
    assert plan.config.model.instance_target == "border" and reasons["model.instance_target"] == SET_BY_YOU
    assert plan.config.train.steps == 4


def test_the_api_functions_are_documented_with_args_returns_and_an_example() -> None:
    for function in (unetkit.plan, unetkit.train, unetkit.load, unetkit.evaluate):
        doc = inspect.getdoc(function) or ""
        assert all(section in doc for section in ("Args:", "Returns:", "Example:")), function.__name__
    assert list(inspect.signature(unetkit.train).parameters)[:3] == ["data", "out", "time"]


def test_the_python_example_in_the_docs_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace = runpy.run_path(str(EXAMPLE))
    assert namespace["run"].best_checkpoint.is_file()
    assert namespace["result"].mask.shape == (40, 40)
    assert set(namespace["report"]) >= {"dice", "iou", "pixel_accuracy", "images"}
