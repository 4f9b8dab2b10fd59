"""The 3D U-Net: the same model code with 3D layers, per-axis pooling and kernels, ONNX parity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from unetkit.config import Config, UNetConfig
from unetkit.errors import ConfigError
from unetkit.model import UNet, to_labels, to_probabilities

ANISOTROPIC = {"pool": [[1, 2, 2], [2, 2, 2]], "kernels": [[1, 3, 3], [3, 3, 3], [3, 3, 3]]}


def tiny_3d(**overrides: object) -> UNetConfig:
    settings: dict[str, object] = {"dims": 3, "base_width": 4, "depth": 2, "in_channels": 1, "classes": 2}
    settings.update(overrides)
    return UNetConfig(**settings)


def logits_of(config: UNetConfig, *shape: int) -> torch.Tensor:
    torch.manual_seed(0)
    with torch.no_grad():
        return UNet(config).eval()(torch.randn(1, config.in_channels, *shape))


@pytest.mark.parametrize("shape", [(8, 16, 16), (5, 13, 7), (1, 1, 1)])
@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
def test_same_padding_keeps_any_volume_size(shape: tuple[int, int, int], upsample: str) -> None:
    assert logits_of(tiny_3d(upsample=upsample), *shape).shape == (1, 2, *shape)


def test_layers_are_3d() -> None:
    model = UNet(tiny_3d())
    kinds = {type(module) for module in model.modules()}
    assert {nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.ConvTranspose3d} <= kinds
    assert not kinds & {nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d}


def test_anisotropic_pooling_keeps_the_coarse_axis_in_the_first_stage() -> None:
    config = tiny_3d(**ANISOTROPIC)
    model = UNet(config).eval()
    assert config.size_multiple == (2, 4, 4)
    assert model.encoder[0][0].stride == (1, 2, 2)
    assert model.stem[0].kernel_size == (1, 3, 3) and model.stem[0].padding == (0, 1, 1)
    assert model.decoder[-1].upsample.stride == (1, 2, 2)  # the last up-sampling undoes the first pooling
    features = []
    model.encoder[0].register_forward_hook(lambda module, inputs, output: features.append(output.shape))
    with torch.no_grad():
        assert model(torch.randn(1, 1, 6, 16, 16)).shape == (1, 2, 6, 16, 16)
    assert features == [(1, 8, 6, 8, 8)]  # depth kept, height and width halved


def test_probabilities_and_labels_take_the_channel_axis_of_volumes() -> None:
    logits = torch.tensor([[[[[0.0, 2.0]]], [[[1.0, -1.0]]]]])  # (N=1, C=2, D=1, H=1, W=2)
    probabilities = to_probabilities(logits, spatial_dims=3)
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(1, 1, 1, 2))
    assert to_labels(probabilities, spatial_dims=3).tolist() == [[[[1, 0]]]]


def test_a_config_without_dims_is_a_2d_network() -> None:
    """Every checkpoint written before volumes holds no ``dims``: it must build the 2D network."""
    config = Config.from_dict({"model": {"in_channels": 1, "base_width": 4, "depth": 2}}).model
    assert config.dims == 2 and config.pool_strides == ((2, 2), (2, 2))
    assert isinstance(UNet(config).stem[0], nn.Conv2d)


@pytest.mark.parametrize("overrides, message", [
    ({"dims": 4}, "model.dims must be 2"),
    ({"padding": "valid"}, "2D-only"),
    ({"pool": [[2, 2, 2]]}, "model.pool must list 2"),
    ({"kernels": [[3, 3, 3], [2, 3, 3], [3, 3, 3]]}, "odd sizes"),
])  # fmt: skip
def test_invalid_3d_configs_say_what_to_fix(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        UNet(tiny_3d(**overrides))


@pytest.mark.export
def test_onnx_parity_of_an_anisotropic_3d_network(tmp_path: Path) -> None:
    from unetkit.inference.export import PARITY_TOLERANCE, check_onnx_parity, example_sizes, export_onnx

    torch.manual_seed(0)
    model = UNet(tiny_3d(**ANISOTROPIC)).eval()
    first, second = example_sizes(model)
    assert len(first) == len(second) == 3 and first != second
    export_onnx(model, tmp_path / "model.onnx")
    assert check_onnx_parity(model, tmp_path / "model.onnx", [first, second]) < PARITY_TOLERANCE
