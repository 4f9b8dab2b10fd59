"""A tiny checkpoint and dataset for the serve and report tests (base width 4, depth 2, 48 px)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from unetkit.checkpoint import save_checkpoint
from unetkit.config import Config, PredictConfig, UNetConfig
from unetkit.data.synthetic import generate_dataset
from unetkit.model.unet import UNet

IMAGE_SIZE = 48


def tiny_checkpoint(path: Path, classes: int = 1, seed: int = 0) -> Path:
    """A grey-image model with random (He) weights, whose masks are neither empty nor full."""
    torch.manual_seed(seed)
    model_config = UNetConfig(in_channels=1, classes=classes, depth=2, base_width=4, norm="batch", init="he")
    config = Config(model=model_config, predict=PredictConfig(tile_size=64, batch_size=4))
    save_checkpoint(path, config, UNet(model_config).state_dict())
    return path


def tiny_dataset(folder: Path, count: int = 4, seed: int = 0) -> Path:
    """``folder/images/*.png`` and ``folder/masks/*.png`` (generated blobs)."""
    return generate_dataset(folder, count, IMAGE_SIZE, seed)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))
