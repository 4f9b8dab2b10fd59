"""Ensembles of checkpoints: folds run folders, averaged probabilities, derived post-processing,
the CLI on a folds run, and the ONNX ensemble folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from inference_helpers import tiny_config, tiny_model
from PIL import Image

from unetkit.checkpoint import save_checkpoint
from unetkit.cli import main
from unetkit.config import Config, NormalizeConfig, PredictConfig
from unetkit.errors import CheckpointError, ConfigError
from unetkit.inference.ensemble import (
    EnsemblePredictor,
    checkpoint_paths,
    combined_postprocessing,
    export_checkpoints,
    load_predictor,
)
from unetkit.inference.predictor import Predictor

IMAGE = np.random.default_rng(0).integers(0, 256, size=(40, 52), dtype=np.uint8)


def save_member(path: Path, config: Config, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, config, tiny_model(config, seed).state_dict(), epoch=1)
    return path


def folds_run(run: Path, folds: int = 2, **predict: object) -> Path:
    """RUN/fold_K/best.pt of tiny models with other weights and (fold 1) another normalisation."""
    for fold in range(folds):
        config = tiny_config(tile_size=32, **predict)
        if fold == 1:
            config.data.normalize = NormalizeConfig(mode="percentile")
        save_member(run / f"fold_{fold}" / "best.pt", config, seed=fold)
    return run


def test_two_folds_give_the_mean_of_the_single_fold_probabilities(tmp_path: Path) -> None:
    run = folds_run(tmp_path / "run")
    ensemble = load_predictor(run, device="cpu", precision="32")
    assert isinstance(ensemble, EnsemblePredictor) and len(ensemble.members) == 2
    singles = [load_predictor(run / f"fold_{fold}" / "best.pt", device="cpu", precision="32") for fold in (0, 1)]
    assert all(isinstance(single, Predictor) for single in singles)
    first, second = (single.predict_image(IMAGE) for single in singles)
    assert np.abs(first - second).max() > 0.01  # different members, so the mean is a real test
    np.testing.assert_allclose(ensemble.predict_image(IMAGE), (first + second) / 2, atol=1e-6)
    assert ensemble.labels(ensemble.predict_image(IMAGE)).shape == IMAGE.shape


def test_checkpoint_paths_resolve_files_run_folders_and_folds(tmp_path: Path) -> None:
    single = save_member(tmp_path / "single" / "best.pt", tiny_config(), seed=0)
    assert checkpoint_paths(tmp_path / "single") == [single]
    run = folds_run(tmp_path / "run", folds=3)
    (run / "fold_10").mkdir()
    save_member(run / "fold_10" / "best.pt", tiny_config(), seed=3)
    save_member(run / "best.pt", tiny_config(), seed=4)  # folds win over a best.pt beside them
    names = [path.parent.name for path in checkpoint_paths(str(run))]
    assert names == ["fold_0", "fold_1", "fold_2", "fold_10"]
    assert checkpoint_paths([single, run / "fold_1" / "best.pt", single]) == [single, run / "fold_1" / "best.pt"]


def test_unusable_paths_name_the_problem(tmp_path: Path) -> None:
    run = folds_run(tmp_path / "run")
    (run / "fold_2").mkdir()
    with pytest.raises(CheckpointError, match=r"fold_2: no best.pt"):
        checkpoint_paths(run)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"empty: a folder with neither best.pt nor fold_\*/best.pt"):
        checkpoint_paths(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="missing.pt: no such checkpoint"):
        checkpoint_paths(tmp_path / "missing.pt")
    with pytest.raises(ConfigError, match="no checkpoint given"):
        checkpoint_paths([])


def test_members_must_predict_the_same_classes(tmp_path: Path) -> None:
    binary = save_member(tmp_path / "a" / "best.pt", tiny_config(), seed=0)
    three = save_member(tmp_path / "b" / "best.pt", tiny_config(classes=3), seed=0)
    with pytest.raises(CheckpointError, match="b/best.pt: predicts other classes"):
        load_predictor([binary, three], device="cpu")


def test_ensemble_post_processing_is_derived_from_the_members() -> None:
    members = [
        PredictConfig(threshold=0.3, min_object_size=10, keep_largest=True, instance_seeds="h-maxima", instance_h=4.0),
        PredictConfig(threshold=0.7, min_object_size=0, keep_largest=False, instance_seeds="h-maxima", instance_h=1.0),
        PredictConfig(threshold=0.4, min_object_size=30, keep_largest=True, instance_seeds="probability"),
    ]
    combined = combined_postprocessing(members)
    assert (combined["threshold"], combined["min_object_size"], combined["keep_largest"]) == (0.4, 10, True)
    assert (combined["instance_seeds"], combined["instance_h"]) == ("h-maxima", 1.0)  # lower median of 1 and 4
    alone = combined_postprocessing([PredictConfig()])
    assert alone == {name: getattr(PredictConfig(), name) for name in alone}


def test_settings_reach_every_member_before_it_checks_them_and_postprocess_false_drops_them(tmp_path: Path) -> None:
    run = folds_run(tmp_path / "run", threshold=0.3, min_object_size=5)
    ensemble = load_predictor(run, device="cpu", settings={"predict.tile_size": 16})  # what --tile-size 16 does
    assert all(member.config.predict.tile_size == 16 for member in ensemble.members)
    first, second = (member.config.predict for member in ensemble.members)
    assert first is not second and all(ensemble.config.predict is not own for own in (first, second))  # own copies
    assert (ensemble.config.predict.threshold, ensemble.config.predict.min_object_size) == (0.3, 5)
    with pytest.raises(ConfigError, match="predict.tile_size 15 must be a multiple"):
        load_predictor(run, device="cpu", settings={"predict.tile_size": 15})
    raw = load_predictor(run, device="cpu", postprocess=False, settings={"predict.threshold": 0.6})
    assert (raw.config.predict.threshold, raw.config.predict.min_object_size) == (0.6, 0)  # settings after the drop
    assert raw.config.predict.tile_size == 32


def write_dataset(folder: Path, count: int = 2) -> Path:
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rng = np.random.default_rng(1)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, size=(36, 44), dtype=np.uint8)).save(folder / "images" / f"im{index}.png")
        mask = np.zeros((36, 44), dtype=np.uint8)
        mask[8:24, 10:30] = 255
        Image.fromarray(mask).save(folder / "masks" / f"im{index}.png")
    return folder


def test_predict_and_evaluate_on_a_folds_run_end_to_end(tmp_path: Path) -> None:
    run = folds_run(tmp_path / "run", threshold=0.45)
    data = write_dataset(tmp_path / "data")
    out = tmp_path / "masks"
    assert main(["predict", "--checkpoint", str(run), str(data / "images"), "--out", str(out), "--device", "cpu",
                 "--instances"]) == 0  # fmt: skip
    for index in range(2):
        for output in ("mask", "instances"):
            with Image.open(out / f"im{index}_{output}.png") as written:
                assert written.size == (44, 36)
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(run), "--data", str(data), "--device", "cpu", "--json", str(report)]) == 0
    figures = json.loads(report.read_text())
    assert len(figures["images"]) == 2 and 0.0 <= figures["dice"] <= 1.0
    assert set(figures["raw"]) >= {"dice", "iou"}  # threshold 0.45 is post-processing: the raw beside
    raw_report = tmp_path / "raw.json"
    assert main(["evaluate", "--checkpoint", str(run / "fold_0" / "best.pt"), "--checkpoint", str(run / "fold_1"),
                 "--data", str(data), "--device", "cpu", "--no-postprocess", "--json", str(raw_report)]) == 0  # fmt: skip
    raw = json.loads(raw_report.read_text())
    assert "raw" not in raw and raw["dice"] == pytest.approx(figures["raw"]["dice"], abs=1e-6)


@pytest.mark.slow
def test_an_onnx_ensemble_folder_runs_with_onnxruntime(tmp_path: Path) -> None:
    run = folds_run(tmp_path / "run")
    folder = tmp_path / "onnx"
    assert main(["export", "--checkpoint", str(run), "--format", "onnx", "--out", str(folder)]) == 0
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [member["onnx"] for member in manifest["members"]] == ["member_0.onnx", "member_1.onnx"]
    onnx = load_predictor(folder, engine="onnxruntime")
    torch_ensemble = load_predictor(run, device="cpu", precision="32")
    np.testing.assert_allclose(onnx.predict_image(IMAGE), torch_ensemble.predict_image(IMAGE), atol=1e-4)
    with pytest.raises(ConfigError, match="--engine onnxruntime"):
        load_predictor(folder)
    images = write_dataset(tmp_path / "data") / "images"
    out = tmp_path / "masks"
    assert main(["predict", "--checkpoint", str(folder), "--engine", "onnxruntime", str(images), "--out", str(out)]) == 0
    assert sorted(path.name for path in out.iterdir()) == ["im0_mask.png", "im1_mask.png"]


def test_only_onnx_exports_an_ensemble(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--format torchscript: 2 checkpoints export as an ONNX ensemble folder"):
        export_checkpoints(folds_run(tmp_path / "run"), "torchscript", tmp_path / "model.pt")
