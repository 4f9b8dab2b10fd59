"""One typed configuration tree for a run: model, data (preprocessing + labels), training, prediction.

The whole tree is saved inside every checkpoint and as ``config.yaml`` in every run folder, so a
checkpoint alone rebuilds its model and its preprocessing. ``schema`` declares the tree, ``parsing``
reads it back from plain data, ``flags`` names its user-facing settings (the command line's flags
and the Python API's keywords).
"""

from unetkit.config.parsing import parse_duration
from unetkit.config.schema import (
    DEFAULT_MAX_PIXELS, INSTANCE_MAPS, Config, CtcTruth, DataConfig, Engine, ExportFormat, InstanceSeeds,
    InstanceTarget, LabelConfig, LossName, MaskValues, MemoryLayout, Norm, NormalizeConfig, OutputFormat, Padding, PetsMode,
    Precision, PredictConfig, ProbFormat, RleOrder, TrainConfig, UNetConfig, Upsample, dice_loss_for,
)  # fmt: skip

__all__ = [
    "DEFAULT_MAX_PIXELS", "INSTANCE_MAPS", "Config", "CtcTruth", "DataConfig", "Engine", "ExportFormat", "InstanceSeeds",
    "InstanceTarget", "LabelConfig", "LossName", "MaskValues", "MemoryLayout", "Norm", "NormalizeConfig", "OutputFormat", "Padding",
    "PetsMode", "Precision", "PredictConfig", "ProbFormat", "RleOrder", "TrainConfig", "UNetConfig", "Upsample",
    "dice_loss_for", "parse_duration",
]  # fmt: skip
