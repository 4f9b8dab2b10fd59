"""Tiny U-Nets and their configs for the inference tests (base width 4, depth 2-3)."""

from __future__ import annotations

from typing import Any

import torch

from unetkit.config import Config, PredictConfig, UNetConfig
from unetkit.model.unet import UNet


def tiny_config(
    padding: str = "same",
    depth: int = 2,
    classes: int = 1,
    in_channels: int = 1,
    norm: str = "batch",
    **predict: Any,
) -> Config:
    """A config for a tiny U-Net; ``predict`` overrides PredictConfig fields (tile_size, tta, ...)."""
    model = UNetConfig(
        in_channels=in_channels, classes=classes, depth=depth, base_width=4, norm=norm, padding=padding, init="he"
    )
    return Config(model=model, predict=PredictConfig(**{"tile_size": 32, "batch_size": 3, **predict}))


def tiny_model(config: Config, seed: int = 0) -> UNet:
    """An eval-mode model with random (He) weights and non-trivial batch-norm statistics."""
    torch.manual_seed(seed)
    model = UNet(config.model)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()
