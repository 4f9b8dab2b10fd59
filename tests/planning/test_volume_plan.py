"""The plan for volumes: 3D or 2D slices and why, nnU-Net's pooling per axis, patch, normalisation."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from volume_helpers import decathlon_folder, nifti_folder

from unetkit.config import Config
from unetkit.model import UNet
from unetkit.planning.plan import format_plan, make_plan
from unetkit.planning.volume_rules import (
    MIN_3D_STEPS,
    PATCH_VOXELS,
    VolumeFingerprint,
    ct_values,
    dims,
    normalization,
    patch_shape,
    topology,
)
from unetkit.data.prepare import prepare_data


def volume_fp(**changes: object) -> VolumeFingerprint:
    base = VolumeFingerprint(
        volumes=10, train_volumes=8, median_shape=(100, 100, 100), median_spacing=(1.0, 1.0, 1.0), channels=1,
        modality="", foreground=0.1, foreground_intensity={"p0.5": -100.0, "p99.5": 300.0, "mean": 80.0, "std": 50.0},
        classes=2,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def test_isotropic_volumes_train_a_3d_network() -> None:
    choice = dims(volume_fp(), steps_3d=5000)
    assert choice.value == 3 and "3D U-Net" in choice.reason


@pytest.mark.parametrize("changes, why", [
    ({"median_spacing": (5.0, 0.8, 0.8)}, "coarser along one axis"),
    ({"median_shape": (30, 512, 512)}, "thin stacks of sections"),  # ISBI 2012 as one stack, spacing unknown
])  # fmt: skip
def test_anisotropic_or_thin_volumes_train_2d_slices(changes: dict, why: str) -> None:
    choice = dims(volume_fp(**changes))
    assert choice.value == 2 and why in choice.reason


def test_a_budget_too_short_for_3d_trains_2d_slices() -> None:
    choice = dims(volume_fp(), steps_3d=MIN_3D_STEPS - 1)
    assert choice.value == 2 and "steps in the budget" in choice.reason


def test_coarse_slices_are_pooled_and_convolved_in_plane_first() -> None:
    pool, kernels = topology([20, 160, 160], (5.0, 1.0, 1.0))
    assert pool[:2] == [[1, 2, 2], [1, 2, 2]]  # z 5x coarser: in-plane until within 2x
    assert [2, 2, 2] in pool[2:] and kernels[0] == [1, 3, 3] and kernels[-1] == [3, 3, 3]
    assert len(kernels) == len(pool) + 1
    sizes = [20, 160, 160]
    for stage in pool:
        sizes = [size // stride for size, stride in zip(sizes, stage)]
    assert min(sizes) >= 4


def test_patch_fits_the_voxel_budget_and_the_pooling_grid() -> None:
    fp = volume_fp(median_shape=(120, 300, 300), median_spacing=(2.0, 1.0, 1.0))
    patch = patch_shape(fp, "cpu").value
    pool, _ = topology(patch, fp.median_spacing)
    assert math.prod(patch) <= PATCH_VOXELS["cpu"]
    assert all(side % math.prod(stage[axis] for stage in pool) == 0 for axis, side in enumerate(patch))


def test_ct_is_clipped_and_standardised_by_its_foreground_other_volumes_by_their_own() -> None:
    assert normalization(volume_fp(modality="CT")).value == "ct"
    assert normalization(volume_fp(modality="MRI")).value == "zscore"
    clip, mean, std = (choice.value for choice in ct_values(volume_fp()))
    assert clip == [-100.0, 300.0] and mean == [80.0] and std == [50.0]


def fake_speed(model, patch, batch, device, dtype, channels_last=True) -> float:
    return 50.0 / model.base_width


def prepared_volumes(root: Path) -> object:
    config = Config()
    config.data.path = str(root)
    return prepare_data(config, None, None)


def test_a_planned_3d_config_builds_and_says_why(tmp_path: Path) -> None:
    prepared = prepared_volumes(decathlon_folder(tmp_path, cases=3, channels=1, modality="CT", affine=np.eye(4)))
    plan = make_plan(prepared, budget_seconds=600, device=torch.device("cpu"), fixed={}, speed=fake_speed)
    config = plan.config
    assert config.model.dims == 3 and config.data.normalize.mode == "ct" and len(config.data.normalize.clip) == 2
    assert config.predict.window == config.data.patch_shape
    model = UNet(config.model)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 1, *config.data.patch_shape)).shape[2:] == tuple(config.data.patch_shape)
    assert plan.choices[0].path == "model.dims" and "3D U-Net" in plan.choices[0].reason
    assert "spacing" in format_plan(plan)


def test_dims_2_plans_the_slices_as_images(tmp_path: Path) -> None:
    prepared = prepared_volumes(nifti_folder(tmp_path, cases=3))
    plan = make_plan(prepared, budget_seconds=600, device=torch.device("cpu"), fixed={"model.dims": 2}, speed=fake_speed)
    assert plan.config.model.dims == 2 and plan.choices[0].reason == "set by you"
    assert plan.fingerprint.median_size == (24, 24) and plan.config.data.patch_size > 0
