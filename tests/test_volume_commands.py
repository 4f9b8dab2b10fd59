"""The volume commands end to end: train (planned) on an MSD folder, predict a NIfTI that keeps its
affine, evaluate per-class Dice, and the 3D demo, each briefly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from volume_helpers import decathlon_folder

from unetkit.cli import main
from unetkit.data.volumes import read_volume
from unetkit.demo import run_demo

AFFINE = np.array([[1.2, 0, 0, 3.0], [0, 1.1, 0, -4.0], [0, 0, 1.3, 7.0], [0, 0, 0, 1]])


def test_train_predict_evaluate_on_a_decathlon_folder(tmp_path: Path, capsys) -> None:
    data = decathlon_folder(tmp_path / "Task01", cases=4, channels=1, modality="MRI", affine=AFFINE)
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--steps", "2", "--base-width", "4",
                 "--workers", "0", "--precision", "32", "--threads", "1"]) == 0  # fmt: skip
    plan = (run / "plan.yaml").read_text()
    assert "model.dims" in plan and "3D U-Net" in plan
    image = data / "imagesTr" / "organ_000_0000.nii.gz"
    assert main(["predict", "--checkpoint", str(run / "best.pt"), str(image), "--out", str(tmp_path / "out")]) == 0
    mask = read_volume(tmp_path / "out" / "organ_000_0000_mask.nii.gz")
    assert mask.shape == (8, 24, 24) and set(np.unique(mask.array)) <= {0, 1, 2}
    np.testing.assert_allclose(mask.geometry["affine"], AFFINE)
    report = tmp_path / "report.json"
    assert main(["evaluate", "--checkpoint", str(run / "best.pt"), "--data", str(data), "--json", str(report)]) == 0
    classes = [row["name"] for row in json.loads(report.read_text())["per_class"]]
    assert classes == ["background", "organ", "tumour"]


def test_the_3d_demo_runs_briefly(tmp_path: Path) -> None:
    report = run_demo(tmp_path, epochs=2, dims=3)
    assert 0.0 <= report["dice"] <= 1.0 and len(report["images"]) == 6
    assert (tmp_path / "held-out.json").is_file()
    predictions = sorted((tmp_path / "predictions").glob("*_mask.nii.gz"))
    assert len(predictions) == 6 and read_volume(predictions[0]).spacing == (2.0, 1.0, 1.0)


def test_a_2d_model_predicts_a_nifti_volume_slice_by_slice(tmp_path: Path) -> None:
    from unetkit.config import Config, UNetConfig
    from unetkit.inference.outputs import OutputOptions, predict_files
    from unetkit.inference.predictor import Predictor
    from volume_helpers import save_nifti

    config = Config(model=UNetConfig(in_channels=1, classes=1, depth=2, base_width=2))
    bright_half = lambda batch: (batch[:, :1] > 0.5).float()  # noqa: E731  (a 'network' thresholding each pixel)
    volume = np.zeros((5, 16, 16), np.uint8)
    volume[:, :, 8:] = 255
    volume[2] = 0  # one dark slice
    image = save_nifti(tmp_path / "stack.nii.gz", volume, AFFINE)
    predict_files(Predictor(bright_half, config), [image], tmp_path / "out", OutputOptions(), progress=False, fail_fast=True)
    mask = read_volume(tmp_path / "out" / "stack_mask.nii.gz")
    np.testing.assert_array_equal(mask.array, (volume > 127).astype(np.uint8))
    np.testing.assert_allclose(mask.geometry["affine"], AFFINE)


def test_a_2d_model_trains_and_evaluates_on_the_slices_of_volumes(tmp_path: Path) -> None:
    data = decathlon_folder(tmp_path / "Task02", cases=3, channels=1)
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--dims", "2", "--steps", "2", "--base-width", "4",
                 "--workers", "0", "--precision", "32", "--threads", "1"]) == 0  # fmt: skip
    report = tmp_path / "report.json"
    assert main(["evaluate", "--checkpoint", str(run / "best.pt"), "--data", str(data), "--json", str(report)]) == 0
    evaluated = json.loads(report.read_text())
    assert len(evaluated["images"]) == 3 * 8 and not evaluated["failed"]  # 8 slices of each of 3 volumes


def touching_spheres(shape: tuple[int, int, int] = (12, 24, 24)) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 image, instance ids): two bright balls that touch, bridged by one plane of voxels."""
    z, y, x = np.indices(shape)
    instances = np.zeros(shape, np.int32)
    for object_id, centre_x in ((1, 7), (2, 16)):
        instances[(z - 6) ** 2 + (y - 12) ** 2 + (x - centre_x) ** 2 <= 20] = object_id
    return np.where(instances > 0, 255, 0).astype(np.uint8), instances


def test_a_3d_model_cuts_touching_objects_apart_and_evaluate_scores_them_in_3d(tmp_path: Path) -> None:
    from unetkit.api import evaluate
    from unetkit.config import Config, DataConfig, UNetConfig
    from unetkit.inference.outputs import OutputOptions, predict_files
    from unetkit.inference.predictor import Predictor
    from volume_helpers import save_nifti

    image, instances = touching_spheres()
    assert len(np.unique(instances)) == 3 and (np.abs(np.diff(instances, axis=2)) == 1).any()  # the balls touch
    save_nifti(tmp_path / "data" / "images" / "cells.nii.gz", image, AFFINE)
    save_nifti(tmp_path / "data" / "labels" / "cells.nii.gz", instances.astype(np.uint16), AFFINE)
    config = Config(
        model=UNetConfig(dims=3, in_channels=1, classes=1, depth=2, base_width=2),
        data=DataConfig(layout="auto", masks="instances"),
    )
    config.predict.instance_min_size = 4
    bright = lambda batch: (batch[:, :1] > 0.5).float()  # noqa: E731  (a 'network' thresholding each voxel)
    predictor = Predictor(bright, config)
    predict_files(predictor, [tmp_path / "data" / "images" / "cells.nii.gz"], tmp_path / "out",
                  OutputOptions(instances=True), progress=False, fail_fast=True)  # fmt: skip
    objects = read_volume(tmp_path / "out" / "cells_instances.nii.gz")
    assert objects.array.dtype == np.uint16 and len(np.unique(objects.array)) == 3  # two objects, not one
    np.testing.assert_allclose(objects.geometry["affine"], AFFINE)
    report = evaluate(predictor, tmp_path / "data", instances=True)
    assert report["images"][0]["true_objects"] == 2 and report["images"][0]["merged_objects"] == 0
    assert report["ap_50"] == 1.0 and report["dsb_score"] > 0.5
