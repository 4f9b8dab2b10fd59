"""unetkit: U-Net image segmentation — train, predict, evaluate and export."""

from unetkit.config import Config, DataConfig, LabelConfig, NormalizeConfig, PredictConfig, TrainConfig, UNetConfig
from unetkit.errors import CheckpointError, ConfigError, DataError, TrainingError, UnetkitError

__version__ = "0.1.0"

__all__ = [
    "Config", "DataConfig", "LabelConfig", "NormalizeConfig", "PredictConfig", "TrainConfig", "UNetConfig",
    "UnetkitError", "ConfigError", "DataError", "CheckpointError", "TrainingError",
    "UNet", "Predictor", "__version__",
]


def __getattr__(name: str):
    """UNet and Predictor load torch-heavy modules on first use, so `unetkit --help` stays quick."""
    if name == "UNet":
        from unetkit.model.unet import UNet

        return UNet
    if name == "Predictor":
        from unetkit.inference.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'unetkit' has no attribute {name!r}")
