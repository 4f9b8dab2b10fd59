"""The page as a person uses it: a real `unetkit serve` process, headless Chromium, an upload."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tifffile
from web_helpers import IMAGE_SIZE, chromium_page, decode_png, save_screenshot, tiny_dataset

from unetkit.cli import main

pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def server(checkpoint: Path, tmp_path: Path):
    """`unetkit serve` on a free loopback port; yields its URL once /health answers."""
    port = free_port()
    command = [sys.executable, "-m", "unetkit", "serve", "--checkpoint", str(checkpoint), "--port", str(port),
               "--device", "cpu", "--precision", "32", "--threads", "1"]  # fmt: skip
    log = open(tmp_path / "server.log", "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"unetkit serve did not start: {(tmp_path / 'server.log').read_text()}")
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def test_upload_shows_the_overlay_and_the_mask_equals_unetkit_predict(server: str, checkpoint: Path, tmp_path: Path) -> None:
    image = sorted((tiny_dataset(tmp_path / "data", count=1) / "images").iterdir())[0]
    assert main(["predict", str(image), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "masks"),
                 "--device", "cpu", "--precision", "32"]) == 0  # fmt: skip
    expected = decode_png((tmp_path / "masks" / f"{image.stem}_mask.png").read_bytes())

    tiff = tmp_path / f"{image.stem}.tif"
    tifffile.imwrite(tiff, decode_png(image.read_bytes()))

    with chromium_page(server) as page:
        upload(page, image, "done")
        mask = page_mask(page)
        opaque, clear = (canvas_after_opacity(page, value) for value in ("100", "0"))
        page.check("#outlines")
        page.wait_for_timeout(500)
        save_screenshot(page, "serve-page.png")
        upload(page, tiff, "done")  # chromium cannot show TIFF: the page asks the server for a preview
        tiff_mask, tiff_canvas = page_mask(page), canvas_after_opacity(page, "0")

    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(tiff_mask, expected)
    np.testing.assert_array_equal(tiff_canvas, clear)
    assert opaque.shape == (IMAGE_SIZE, IMAGE_SIZE, 4)
    foreground = expected > 0
    assert foreground.any() and (opaque[foreground][:, :3] != clear[foreground][:, :3]).any(axis=-1).all()
    np.testing.assert_array_equal(opaque[~foreground], clear[~foreground])  # background is never tinted


def page_mask(page) -> np.ndarray:
    """The mask the page received, read back through its download link."""
    mask_png = page.evaluate(
        """async () => {
            const bytes = new Uint8Array(await (await fetch(document.getElementById("download-mask").href)).arrayBuffer());
            return btoa(String.fromCharCode(...bytes));
        }"""
    )
    return decode_png(base64.b64decode(mask_png))


def canvas_after_opacity(page, value: str) -> np.ndarray:
    """The canvas's pixels (H, W, 4) after moving the opacity slider to ``value``."""
    page.eval_on_selector("#opacity", "(slider, value) => { slider.value = value; slider.dispatchEvent(new Event('input')); }", value)
    pixels = page.evaluate(
        """() => { const c = document.getElementById("view");
                   return [c.height, c.width, Array.from(c.getContext("2d").getImageData(0, 0, c.width, c.height).data)]; }"""
    )
    height, width, data = pixels
    return np.array(data, dtype=np.uint8).reshape(height, width, 4)


def test_a_bad_upload_shows_the_servers_reason(server: str, tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with chromium_page(server) as page:
        upload(page, text, "error")
        assert "415" in page.inner_text("#error") and "not a PNG, JPEG or TIFF" in page.inner_text("#error")


def upload(page, path: Path, outcome: str) -> None:
    """Choose ``path`` in the page's file input and wait for the status to say ``outcome``."""
    page.set_input_files("#file", str(path))
    page.wait_for_selector(f'#status[data-state="{outcome}"]', timeout=30_000)
