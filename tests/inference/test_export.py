from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from inference_helpers import tiny_config, tiny_model
from safetensors.torch import save_file

from unetkit.checkpoint import save_checkpoint
from unetkit.config import Config
from unetkit.checkpoint import load_safetensors
from unetkit.errors import CheckpointError, ConfigError, UnetkitError
from unetkit.inference import export as export_module
from unetkit.inference.export import (
    PARITY_TOLERANCE,
    check_onnx_parity,
    example_sizes,
    export_checkpoint,
    export_onnx,
    export_safetensors,
    export_torchscript,
)
from unetkit.inference.predictor import Predictor
from unetkit.model.unet import UNet

pytestmark = pytest.mark.export

PADDINGS = ["same", "valid"]


def config_for(padding: str) -> Config:
    return tiny_config(padding, depth=2, classes=2, tile_size=64 if padding == "same" else 124)


@pytest.fixture(scope="module", params=PADDINGS)
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[UNet, Config, Path]:
    """A tiny model saved as best.pt with its ONNX export beside it (exported once per padding)."""
    config = config_for(request.param)
    model = tiny_model(config)
    folder = tmp_path_factory.mktemp(request.param)
    save_checkpoint(folder / "best.pt", config, model.state_dict())
    export_onnx(model, folder / "best.onnx")
    return model, config, folder / "best.pt"


class TestOnnx:
    def test_parity_with_pytorch_at_two_sizes(self, exported: tuple[UNet, Config, Path]) -> None:
        model, _, checkpoint = exported
        first, second = example_sizes(model)
        assert first != second
        assert check_onnx_parity(model, checkpoint.with_suffix(".onnx"), [first, second]) < PARITY_TOLERANCE

    def test_the_file_is_valid_onnx_with_dynamic_axes(self, exported: tuple[UNet, Config, Path]) -> None:
        import onnx

        proto = onnx.load(str(exported[2].with_suffix(".onnx")))
        onnx.checker.check_model(proto)
        dims = proto.graph.input[0].type.tensor_type.shape.dim
        assert all(dim.dim_param for dim in (dims[0], dims[2], dims[3]))  # batch, height, width symbolic
        assert dims[1].dim_value == 1

    def test_onnxruntime_engine_gives_the_torch_masks(self, exported: tuple[UNet, Config, Path]) -> None:
        _, config, checkpoint = exported
        image = np.random.default_rng(0).integers(0, 256, (150, 170, 1), dtype=np.uint8)
        predictors = [
            Predictor.from_checkpoint(checkpoint, device="cpu", precision="32", engine=engine)
            for engine in ("torch", "onnxruntime")
        ]
        torch_prob, onnx_prob = (predictor.predict_image(image) for predictor in predictors)
        np.testing.assert_allclose(onnx_prob, torch_prob, atol=1e-4)
        np.testing.assert_array_equal(predictors[1].labels(onnx_prob), predictors[0].labels(torch_prob))


@pytest.mark.parametrize("norm", ["instance", "group"])
def test_onnx_parity_for_the_other_norms(norm: str, tmp_path: Path) -> None:
    model = tiny_model(tiny_config(norm=norm))
    export_onnx(model, tmp_path / "model.onnx")
    assert check_onnx_parity(model, tmp_path / "model.onnx", list(example_sizes(model))) < PARITY_TOLERANCE


def test_onnxruntime_engine_without_an_onnx_file_says_how_to_make_one(tmp_path: Path) -> None:
    config = config_for("same")
    save_checkpoint(tmp_path / "best.pt", config, tiny_model(config).state_dict())
    with pytest.raises(ConfigError, match=r"best.onnx.*unetkit export"):
        Predictor.from_checkpoint(tmp_path / "best.pt", engine="onnxruntime")


@pytest.mark.parametrize("export", [export_onnx, export_torchscript])
def test_export_leaves_the_callers_model_as_it_was(export: Callable[[UNet, Path], Path], tmp_path: Path) -> None:
    """Training mode, float64 weights and batch-norm statistics untouched: the export works on a copy."""
    model = tiny_model(config_for("same")).double().train()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    export(model, tmp_path / "model")
    assert model.training and next(model.parameters()).dtype == torch.float64
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, before[name], rtol=0, atol=0)


def test_a_failed_parity_check_keeps_the_good_onnx_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = config_for("same")
    save_checkpoint(tmp_path / "best.pt", config, tiny_model(config).state_dict())
    good = tmp_path / "model.onnx"
    good.write_bytes(b"a good model from an earlier export")
    monkeypatch.setattr(export_module, "check_onnx_parity", lambda model, path: 1.0)
    with pytest.raises(UnetkitError, match=r"model.onnx.*differs from PyTorch"):
        export_checkpoint(tmp_path / "best.pt", "onnx", good)
    assert good.read_bytes() == b"a good model from an earlier export"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["best.pt", "model.onnx"]  # no temporary left
    monkeypatch.undo()
    export_checkpoint(tmp_path / "best.pt", "onnx", good)
    assert good.read_bytes().startswith(b"\x08")  # an ONNX protobuf (ir_version field) replaced it


@pytest.mark.parametrize("padding", PADDINGS)
def test_torchscript_round_trip_at_two_sizes(padding: str, tmp_path: Path) -> None:
    model = tiny_model(config_for(padding))
    path = export_torchscript(model, tmp_path / "model.ts")
    with pytest.warns(DeprecationWarning):  # torch.jit is deprecated but still loads
        loaded = torch.jit.load(str(path))
    for size in example_sizes(model):
        x = torch.randn(2, 1, *size)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x), atol=PARITY_TOLERANCE, rtol=0)


class TestSafetensors:
    def test_weights_and_config_round_trip(self, tmp_path: Path) -> None:
        config = config_for("valid")
        config.data.normalize.mode = "percentile"
        model = tiny_model(config)
        export_safetensors(model, config, tmp_path / "model.safetensors")
        loaded_config, state = load_safetensors(tmp_path / "model.safetensors")
        assert loaded_config == config
        for name, tensor in model.state_dict().items():
            torch.testing.assert_close(state[name], tensor)

    def test_predictor_loads_a_safetensors_export(self, tmp_path: Path) -> None:
        config = config_for("same")
        model = tiny_model(config)
        export_safetensors(model, config, tmp_path / "model.safetensors")
        loaded = Predictor.from_checkpoint(tmp_path / "model.safetensors", device="cpu", precision="32")
        x = torch.rand(1, 40, 52)
        torch.testing.assert_close(loaded.predict_tensor(x), Predictor(model, config, precision="32").predict_tensor(x))

    def test_foreign_safetensors_are_refused(self, tmp_path: Path) -> None:
        save_file({"weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
        with pytest.raises(CheckpointError, match="other.safetensors"):
            load_safetensors(tmp_path / "other.safetensors")

    def test_garbage_is_a_checkpoint_error(self, tmp_path: Path) -> None:
        (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
        with pytest.raises(CheckpointError, match="bad.safetensors"):
            load_safetensors(tmp_path / "bad.safetensors")
