"""unetkit: U-Net image segmentation — train, predict, evaluate and export.

The Python API: ``plan``, ``train``, ``load`` and ``evaluate`` (``unetkit.api``); a loaded model
called on an image gives a ``Result`` (mask, probabilities, instances).
"""

from unetkit.config import Config, DataConfig, LabelConfig, NormalizeConfig, PredictConfig, TrainConfig, UNetConfig
from unetkit.errors import CheckpointError, ConfigError, DataError, TrainingError, UnetkitError

__version__ = "0.1.0"

__all__ = [
    "plan", "train", "load", "evaluate", "Run", "Result",
    "Config", "DataConfig", "LabelConfig", "NormalizeConfig", "PredictConfig", "TrainConfig", "UNetConfig",
    "UnetkitError", "ConfigError", "DataError", "CheckpointError", "TrainingError",
    "UNet", "Predictor", "__version__",
]  # fmt: skip
# Loaded on first use, so that `unetkit --help` stays quick: name -> the module that defines it.
LAZY = {
    "plan": "unetkit.api", "train": "unetkit.api", "load": "unetkit.api", "evaluate": "unetkit.api", "Run": "unetkit.api",
    "Result": "unetkit.inference.result", "UNet": "unetkit.model.unet", "Predictor": "unetkit.inference.predictor",
}  # fmt: skip


def __getattr__(name: str):
    if name not in LAZY:
        raise AttributeError(f"module 'unetkit' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(LAZY[name]), name)
