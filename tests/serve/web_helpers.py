"""A tiny checkpoint and dataset for the serve and report tests (base width 4, depth 2, 48 px)."""

from __future__ import annotations

import io
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from required import check_browser, chromium_path

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


@contextmanager
def chromium_page(url: str) -> Iterator:  # a playwright Page
    """A page of headless chromium (through Playwright) opened at ``url``, or a skip that says
    what is missing (a failure where $UNETKIT_REQUIRE_ALL is set: required.py). Only file: and
    loopback addresses load: the pages must need no network."""
    check_browser()
    from playwright import sync_api

    path = chromium_path()
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where chromium's sandbox refuses to start.
        browser = playwright.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            local = ("file:", "data:", "blob:", "http://127.0.0.1")
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(local) else route.abort())
            page.goto(url)
            yield page
        finally:
            browser.close()


def save_screenshot(page, name: str) -> None:
    """Where $UNETKIT_SCREENSHOTS names a folder (docs/ when the README's pictures are remade)."""
    import os

    folder = os.environ.get("UNETKIT_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / name), full_page=True)
