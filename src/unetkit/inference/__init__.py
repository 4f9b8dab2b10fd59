"""Using a trained model: tiled prediction for any image size, post-processing, exports."""

from unetkit.checkpoint import load_safetensors
from unetkit.inference.export import (
    check_onnx_parity,
    export_onnx,
    export_safetensors,
    export_torchscript,
)
from unetkit.inference.postprocess import instances_from_probabilities
from unetkit.inference.predictor import Predictor

__all__ = [
    "Predictor",
    "check_onnx_parity",
    "export_onnx",
    "export_safetensors",
    "export_torchscript",
    "instances_from_probabilities",
    "load_safetensors",
]
