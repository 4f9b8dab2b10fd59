"""3D inference: sliding windows over any volume size, blended exactly, mirror TTA, labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetkit.config import Config, PredictConfig, UNetConfig
from unetkit.errors import ConfigError, DataError
from unetkit.inference.networks import mirror_average
from unetkit.inference.predictor import Predictor
from unetkit.model import UNet


def volume_config(window: list[int], classes: int = 1, **predict: object) -> Config:
    model = UNetConfig(dims=3, in_channels=1, classes=classes, depth=2, base_width=2, pool=[[1, 2, 2], [2, 2, 2]])
    return Config(model=model, predict=PredictConfig(window=window, batch_size=3, **predict))


def pointwise(batch: torch.Tensor) -> torch.Tensor:
    """A 'network' whose output at a voxel depends on that voxel only: any correct blend of
    windows must reproduce it exactly, whatever the window grid."""
    return torch.sigmoid(batch[:, :1] * 3.0)


@pytest.mark.parametrize("shape", [(7, 13, 21), (2, 30, 9), (16, 16, 16)])
@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_windows_blend_back_to_the_pointwise_result(shape: tuple[int, int, int], blend: str) -> None:
    config = volume_config([4, 8, 8], blend=blend)
    config.data.normalize.mode = "zscore"
    volume = np.random.default_rng(0).integers(0, 255, shape).astype(np.uint8)
    probabilities = Predictor(pointwise, config).predict_image(volume)
    x = volume.astype(np.float32) / 255
    expected = 1 / (1 + np.exp(-3 * (x - x.mean()) / x.std()))
    assert probabilities.shape == (1, *shape)
    np.testing.assert_allclose(probabilities[0], expected, atol=1e-4)


def test_a_3d_unet_predicts_a_volume_larger_than_its_window() -> None:
    config = volume_config([4, 8, 8], classes=3, tta=True)
    torch.manual_seed(0)
    predictor = Predictor(UNet(config.model).eval(), config, precision="32")
    probabilities = predictor.predict_image(np.random.default_rng(1).random((6, 19, 11), dtype=np.float32))
    assert probabilities.shape == (3, 6, 19, 11)
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-5)
    labels = predictor.labels(probabilities)
    assert labels.shape == (6, 19, 11) and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, probabilities.argmax(axis=0))


def test_mirror_tta_averages_the_eight_flips() -> None:
    batch = torch.randn(2, 1, 3, 4, 5)
    calls = []

    def recording(x: torch.Tensor) -> torch.Tensor:
        calls.append(x)
        return x.cumsum(-1)  # not flip-equivariant, so the average differs from one pass

    averaged = mirror_average(recording, batch)
    assert len(calls) == 8
    expected = sum(batch.flip(axes).cumsum(-1).flip(axes) for axes in
                   [(), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)]) / 8  # fmt: skip
    torch.testing.assert_close(averaged, expected)


def test_windows_must_fit_the_pooling_grid_and_inputs_must_be_volumes() -> None:
    with pytest.raises(ConfigError, match=r"predict.window \[3, 8, 8\] must be 3 sides that are multiples of \[2, 4, 4\]"):
        Predictor(pointwise, volume_config([3, 8, 8]))
    with pytest.raises(DataError, match="expected a volume"):
        Predictor(pointwise, volume_config([4, 8, 8])).predict_image(np.zeros((8, 8, 8, 1, 1)))
