"""The 3D training path: random patches of volumes, augmented alike, losses on volumes, and a tiny
end-to-end run whose checkpoint predicts a volume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from volume_helpers import nifti_folder

from unetkit.config import Config, DataConfig
from unetkit.data.layouts import discover
from unetkit.data.volume_dataset import VolumePatches
from unetkit.errors import ConfigError
from unetkit.inference.predictor import Predictor
from unetkit.losses import build_loss
from unetkit.data.prepare import prepare_data
from unetkit.training.trainer import fit


@pytest.fixture
def records(tmp_path: Path) -> list:
    return discover(nifti_folder(tmp_path / "data", cases=3)).records


def patches(records: list, augment: str = "light", oversample: float = 0.0, shape: list[int] = [4, 16, 16]) -> VolumePatches:
    data = DataConfig(patch_shape=shape, augment=augment, foreground_oversample=oversample, cache="ram")
    data.labels.mode, data.labels.values = "values", {0: 0, 1: 1, 2: 2}
    data.labels.names = ["background", "one", "two"]
    return VolumePatches(records, data, in_channels=1)


def test_items_are_patches_with_their_labels(records: list) -> None:
    item = patches(records)[(0, 7)]
    assert item["image"].shape == (1, 4, 16, 16) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (4, 16, 16) and item["mask"].dtype == torch.int64
    assert item["name"] == "case0"


def test_augmented_patches_keep_image_and_labels_aligned(records: list) -> None:
    dataset = patches(records, augment="strong", oversample=1.0)
    for seed in range(12):
        item = dataset[(seed % 3, seed)]
        labels = item["mask"].numpy()
        image = item["image"][0].numpy()
        assert labels.any(), "a fully oversampled patch holds foreground"
        assert image[labels > 0].mean() > image[labels == 0].mean() + 0.2  # the labelled boxes are the bright ones


def test_a_patch_depends_only_on_its_seed_and_small_volumes_are_padded(records: list) -> None:
    dataset = patches(records, shape=[12, 16, 32])  # deeper and wider than the 8 x 24 x 24 volumes
    first, again = dataset[(1, 5)], dataset[(1, 5)]
    assert first["image"].shape == (1, 12, 16, 32)
    torch.testing.assert_close(first["image"], again["image"])
    assert not torch.equal(first["image"], dataset[(1, 6)]["image"])


def test_losses_on_volumes_equal_the_same_voxels_as_an_image() -> None:
    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 4, 5, 6), torch.randint(0, 3, (2, 4, 5, 6))
    loss = build_loss("ce+dice", 3)
    torch.testing.assert_close(loss(logits, target), loss(logits.reshape(2, 3, 20, 6), target.reshape(2, 20, 6)))


def test_a_tiny_3d_run_trains_and_its_checkpoint_predicts_volumes(tmp_path: Path) -> None:
    config = Config()
    config.data.path = str(nifti_folder(tmp_path / "data", cases=4))
    config.model.dims, config.model.depth, config.model.base_width = 3, 2, 2
    config.data.patch_shape, config.predict.window = [4, 16, 16], [8, 16, 16]
    config.train.steps, config.train.batch_size, config.train.workers, config.train.precision = 3, 2, 0, "32"
    prepared = prepare_data(config, None, None)
    assert prepared.config.model.classes == 3
    fit(prepared, tmp_path / "run", device="cpu")
    predictor = Predictor.from_checkpoint(tmp_path / "run" / "best.pt", device="cpu", precision="32")
    assert predictor.config.model.dims == 3
    assert predictor.predict_image(np.zeros((8, 24, 24), np.uint8)).shape == (3, 8, 24, 24)
    assert (tmp_path / "run" / "samples").is_dir()


def test_2d_only_features_say_so_for_3d_models(tmp_path: Path) -> None:
    config = Config()
    config.data.path = str(nifti_folder(tmp_path / "data", cases=2))
    config.model.dims, config.data.weight_map, config.train.workers = 3, True, 0
    prepared = prepare_data(config, None, None)
    with pytest.raises(ConfigError, match="border weight map .* is 2D-only"):
        fit(prepared, tmp_path / "run", device="cpu")
