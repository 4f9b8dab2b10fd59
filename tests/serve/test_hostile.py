"""What a hostile client did to `unetkit serve` (issue 19), each answered as promised: bombs refused
from their header before decoding, thin and tiny images refused with a JSON 4xx, the queue slot
taken before the body is read, slow uploads cut off, a disconnected client's work dropped, no
server paths on /model, memory handed out within a budget."""

from __future__ import annotations

import io
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from fastapi.testclient import TestClient
from live_server import RawRequest, get_json, live_server, multipart, post
from PIL import Image
from web_helpers import png

from unetkit.checkpoint import save_checkpoint
from unetkit.config import Config, DataConfig, PredictConfig, UNetConfig
from unetkit.errors import DataError
from unetkit.inference.predictor import Predictor
from unetkit.model.unet import UNet
from unetkit.serve import uploads
from unetkit.serve.app import ServeLimits, create_app, public_config
from unetkit.serve.batching import RequestCancelled
from unetkit.serve.budget import MemoryBudget
from unetkit.serve.limits import MiB

HEADER_LIMITS = ServeLimits(max_upload_bytes=4 * MiB, max_decoded_bytes=16 * MiB, max_queue=4)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def blank_png(width: int, height: int) -> bytes:
    """A real grey PNG of width x height zeros, compressed row by row: a few KB for millions of pixels."""
    compressor, rows = zlib.compressobj(9), []
    row = bytes(width + 1)  # filter byte + pixels
    rows = [compressor.compress(row) for _ in range(height)] + [compressor.flush()]
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", b"".join(rows)) + png_chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small valid JPEG whose frame header is rewritten to claim width x height pixels."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    frame = data.index(b"\xff\xc0")  # SOF0: length (2), precision (1), height (2), width (2)
    data[frame + 5 : frame + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def tiff(array: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, compression="zlib", **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def predictor(checkpoint: Path) -> Predictor:
    return Predictor.from_checkpoint(checkpoint, device="cpu", precision="32")


@pytest.fixture(scope="module")
def header_client(predictor: Predictor):
    with TestClient(create_app(predictor, limits=HEADER_LIMITS)) as client:
        yield client


@pytest.fixture
def never_decoded(monkeypatch: pytest.MonkeyPatch) -> list:
    """Fails a request that reaches the decoder; the list holds the paths it was asked to read."""
    calls: list = []

    def refuse(path, *args):
        calls.append(path)
        raise AssertionError("decoded")

    monkeypatch.setattr(uploads, "read_image", refuse)
    return calls


def upload(client: TestClient, data: bytes, name: str = "bomb.png", route: str = "/predict"):
    return client.post(route, files={"file": (name, data, "application/octet-stream")})


# ------------------------------------------------------------------- bombs, refused from the header

BOMBS = {
    # the issue's: 0.5 MB of zlib TIFF that decodes to 64 planes of 2000 x 2000 uint16 (490 MB)
    "64 separate planes of 2000 x 2000 uint16": lambda: tiff(np.zeros((64, 2000, 2000), np.uint16),
                                                            planarconfig="separate", photometric="minisblack"),
    "64 x 64 px in one 16384 x 16384 tile": lambda: tiff(np.zeros((64, 64), np.uint8), tile=(16384, 16384)),
    "3000 x 3000 uint16 (18 MB, 9 Mpx)": lambda: tiff(np.zeros((3000, 3000), np.uint16)),
    "RGB 2100 x 2100 PNG (Pillow: 4 bytes a pixel)": lambda: png(np.zeros((2100, 2100, 3), np.uint8)),
    "PNG header claiming 100000 x 100000": lambda: b"\x89PNG\r\n\x1a\n"
    + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)) + png_chunk(b"IEND", b""),
    "JPEG header claiming 65000 x 65000": lambda: jpeg_claiming(65_000, 65_000),
}  # fmt: skip


@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_bombs_are_refused_from_their_header_before_decoding(header_client, never_decoded, bomb: str) -> None:
    data = BOMBS[bomb]()
    assert len(data) < 600_000
    started = time.perf_counter()
    response = upload(header_client, data)
    assert response.status_code == 413, response.text
    detail = response.json()["detail"]
    assert "more than this server's limit" in detail and ("pixels" in detail or "16777216 bytes" in detail), detail
    assert not never_decoded and time.perf_counter() - started < 5
    assert upload(header_client, data, route="/preview").status_code == 413  # the same limits on every decoding path


def test_the_decoded_size_counts_samples_bytes_and_whole_tiles(tmp_path: Path) -> None:
    from unetkit.data.reading import probe_image

    cases = {
        "planes.tif": (tiff(np.zeros((5, 40, 30), np.uint16), planarconfig="separate", photometric="minisblack"), 5 * 2),
        "tile.tif": (tiff(np.zeros((20, 20), np.uint8), tile=(64, 64)), 64 * 64 / 400),
        "rgb.png": (png(np.zeros((40, 30, 3), np.uint8)), 4),
        "grey16.png": (png(np.zeros((40, 30), np.uint16)), 2),
        "stack.tif": (tiff(np.zeros((3, 40, 30), np.uint8), photometric="minisblack"), 1),  # one page is decoded
    }
    for name, (data, bytes_per_pixel) in cases.items():
        (tmp_path / name).write_bytes(data)
        info = probe_image(tmp_path / name)
        assert info.decoded_bytes == bytes_per_pixel * info.pixels, (name, info)
    assert probe_image(tmp_path / "stack.tif").pages == 3


# ------------------------------------------------------------------------- thin and tiny images


def test_thin_images_are_refused_for_their_tiles_and_size(predictor: Predictor, never_decoded) -> None:
    with TestClient(create_app(predictor)) as client:  # the default limits: 25 million pixels
        max_tiles = client.app.state.work.max_tiles
        assert max_tiles == predictor.tile_count(5000, 5000)
        started = time.perf_counter()
        thin = upload(client, blank_png(25_000_000, 1))  # the 24 KB 1 x 25,000,000 PNG
        assert thin.status_code == 422 and "at least 5 x 5 px" in thin.json()["detail"], thin.text
        strip = upload(client, blank_png(3_000_000, 8))  # 24 Mpx, within the pixel limit
        assert strip.status_code == 413, strip.text
        assert f"{predictor.tile_count(8, 3_000_000)} network tiles" in strip.json()["detail"]
        assert f"limit of {max_tiles} per request" in strip.json()["detail"]
        assert time.perf_counter() - started < 10 and not never_decoded


@pytest.fixture(scope="module")
def instance_norm_client(tmp_path_factory: pytest.TempPathFactory):
    """A depth-4 instance-norm model: 16 x 16 px leaves one value per channel in its deepest layer."""
    torch.manual_seed(0)
    model = UNetConfig(in_channels=1, classes=1, depth=4, base_width=2, norm="instance")
    path = tmp_path_factory.mktemp("instance") / "model.pt"
    save_checkpoint(path, Config(model=model, predict=PredictConfig(tile_size=64)), UNet(model).state_dict())
    with TestClient(create_app(Predictor.from_checkpoint(path, device="cpu", precision="32"))) as client:
        yield client


def test_images_too_small_for_the_model_are_a_json_422_whatever_else_is_in_the_batch(client, instance_norm_client) -> None:
    for side, status in ((1, 422), (4, 422), (5, 200)):  # the depth-2 fixture model needs 5 x 5
        response = upload(client, png(np.full((side, side), 128, np.uint8)))
        assert response.status_code == status, (side, response.text)
    assert "at least 5 x 5 px" in upload(client, png(np.zeros((1, 1), np.uint8))).json()["detail"]
    images = [np.full((16, 16), 100, np.uint8)] * 4 + [np.full((17, 17), 100, np.uint8)] * 4 + [np.zeros((40, 60), np.uint8)] * 2
    with ThreadPoolExecutor(len(images)) as pool:  # sent together, so their tiles may share batches
        statuses = list(pool.map(lambda image: upload(instance_norm_client, png(image)).status_code, images))
    assert statuses == [422] * 4 + [200] * 6


def test_the_predictor_refuses_an_image_smaller_than_its_minimum(predictor: Predictor) -> None:
    assert predictor.min_image_side == 5  # depth 2: 2**2 + 1
    with pytest.raises(DataError, match="the image is 4 x 3 px; this model needs at least 5 x 5 px"):
        predictor.predict_image(np.zeros((3, 4), np.uint8))
    resized = Predictor(UNet(UNetConfig(in_channels=1, depth=2, base_width=2)),
                        Config(model=UNetConfig(in_channels=1, depth=2, base_width=2), data=DataConfig(image_size=32)))  # fmt: skip
    assert resized.min_image_side == 1 and resized.predict_image(np.zeros((1, 1), np.uint8)).shape == (1, 1, 1)


# ------------------------------------------------------------------------------- /model, spooling


def test_model_shows_no_server_paths(tmp_path: Path) -> None:
    model = UNetConfig(in_channels=1, classes=1, depth=2, base_width=4)
    data = DataConfig(path="/home/alice/private/cells", val_path="/srv/data/val")
    path = tmp_path / "model.pt"
    save_checkpoint(path, Config(model=model, data=data, predict=PredictConfig(tile_size=64)), UNet(model).state_dict())
    with TestClient(create_app(Predictor.from_checkpoint(path, device="cpu"))) as served:
        text = served.get("/model").text
    assert "alice" not in text and "/srv" not in text and '"base_width":4' in text
    cleaned = public_config({"data": {"path": "x", "layout": "auto"}, "train": {"note": "cache in /home/bob/.cache, 2 img/s",
                                                                               "out": "C:\\runs\\a", "lr": 0.1}})  # fmt: skip
    assert cleaned == {"data": {"layout": "auto"}, "train": {"note": "cache in <path>, 2 img/s", "lr": 0.1}}


def test_uploads_are_copied_to_the_temporary_folder_a_chunk_at_a_time(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    reads: list[int] = []

    class Recorded(io.BytesIO):
        def read(self, size: int = -1) -> bytes:
            reads.append(size)
            return super().read(size)

    source = Recorded(b"\x89PNG\r\n\x1a\n" + bytes(3 * uploads.CHUNK))
    with uploads.spooled(source, "x") as path:
        assert path.parent.parent == tmp_path and path.stat().st_size == 3 * uploads.CHUNK + 8
    assert reads and all(0 < size <= uploads.CHUNK for size in reads) and not path.exists()


# ----------------------------------------------------------------------------------- memory budget


def test_the_memory_budget_is_first_come_first_served_and_cancellable() -> None:
    budget, order = MemoryBudget(100), []

    def take(name: str, nbytes: int, hold: float) -> None:
        with budget.reserve(nbytes):
            order.append(name)
            time.sleep(hold)

    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(take, "big", 80, 0.3)
        time.sleep(0.05)
        second = pool.submit(take, "bigger", 90, 0.0)  # waits for "big"
        time.sleep(0.05)
        third = pool.submit(take, "small", 10, 0.0)  # would fit beside "big", but waits its turn
        for future in (first, second, third):
            future.result()
    assert order == ["big", "bigger", "small"] and budget.used == 0
    cancel = threading.Event()
    with budget.reserve(100):
        waiter = ThreadPoolExecutor(1).submit(lambda: budget.reserve(1, cancel).__enter__())
        cancel.set()
        with pytest.raises(RequestCancelled):
            waiter.result(timeout=5)


def test_a_request_that_needs_more_than_the_memory_limit_is_refused(predictor: Predictor) -> None:
    with TestClient(create_app(predictor, limits=ServeLimits(max_memory_bytes=1 * MiB))) as client:
        response = upload(client, png(np.zeros((200, 200), np.uint8)), route="/predict?output=instances")
    assert response.status_code == 413 and "memory limit of 1 MiB" in response.json()["detail"], response.text


# -------------------------------------------------- on a real server: the queue, slow bodies, disconnects


class SlowNetwork:
    """The fixture model's network, 0.2 s a call, counting its calls."""

    def __init__(self, network) -> None:
        self.network, self.calls = network, 0

    def __call__(self, tiles: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        time.sleep(0.2)
        return self.network(tiles)


def served(checkpoint: Path, slow: bool = False, **limits):
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu", precision="32")
    if slow:
        predictor.network = SlowNetwork(predictor.network)
    network = predictor.network
    return create_app(predictor, limits=ServeLimits(**limits)), network


def test_the_queue_slot_is_taken_before_the_body_is_read(checkpoint: Path, image: np.ndarray) -> None:
    app, _ = served(checkpoint, max_queue=1)
    body = multipart(png(image))
    with live_server(app) as port:
        holder = RawRequest(port, "/predict", len(body))
        holder.send(body[: len(body) // 2])  # half an upload: it holds the one slot
        deadline = time.monotonic() + 10
        while get_json(port, "/health")["pending"] != 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert get_json(port, "/health") == {"status": "ok", "pending": 1, "max_queue": 1}
        for route in ("/predict", "/preview"):  # a second upload, read and dropped: 503, nothing decoded
            status, answer = post(port, route, png(image))
            assert status == 503 and b"1 requests are already in progress" in answer, answer
        waiting = RawRequest(port, "/predict", len(body), expect_continue=True)  # its body is never asked for
        assert waiting.response(timeout=5)[0] == 503
        holder.send(body[len(body) // 2 :])
        assert holder.response()[0] == 200
        assert post(port, "/predict", png(image))[0] == 200


def test_an_upload_slower_than_its_deadline_gets_408_and_frees_its_slot(checkpoint: Path, image: np.ndarray) -> None:
    app, _ = served(checkpoint, max_queue=1, upload_timeout_s=1.0)
    body = multipart(png(image))
    with live_server(app) as port:
        trickle = RawRequest(port, "/predict", len(body))
        started = time.perf_counter()
        answered: list = []
        reader = threading.Thread(target=lambda: answered.append(trickle.response(timeout=10)))
        reader.start()
        try:
            for byte in body[:20]:  # one byte every 0.3 s, as a slow-loris client sends
                if answered:
                    break
                trickle.send(bytes([byte]))
                time.sleep(0.3)
        except OSError:  # the server has answered and closed
            pass
        reader.join(timeout=10)
        status, detail = answered[0]
        assert status == 408 and b"within this server's limit of 1 s" in detail, detail
        assert time.perf_counter() - started < 4
        assert get_json(port, "/health")["pending"] == 0
        assert post(port, "/predict", png(image))[0] == 200


def test_a_disconnected_clients_work_is_dropped(checkpoint: Path) -> None:
    app, network = served(checkpoint, slow=True, max_queue=1)
    wide = np.random.default_rng(1).integers(0, 256, (48, 4000), dtype=np.uint8)  # 84 tiles: 21 calls of 4, 4.2 s
    body = multipart(png(wide))
    with live_server(app) as port:
        leaving = RawRequest(port, "/predict", len(body))
        leaving.send(body)
        deadline = time.monotonic() + 20
        while network.calls == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert network.calls >= 1
        leaving.close()
        left = time.perf_counter()
        while get_json(port, "/health")["pending"] and time.perf_counter() - left < 5:
            time.sleep(0.05)
        assert get_json(port, "/health")["pending"] == 0 and time.perf_counter() - left < 2  # its slot is free
        calls_after = network.calls
        assert calls_after < 21  # the rest of its calls never ran
        small = np.random.default_rng(2).integers(0, 256, (48, 48), dtype=np.uint8)
        assert post(port, "/predict", png(small))[0] == 200  # the next request is served, not refused
        assert network.calls == calls_after + 1


# ------------------------------------------------------------------------------ the limits' one home


def test_the_command_line_takes_its_defaults_from_serve_limits() -> None:
    import argparse

    from unetkit.cli import web

    parser = argparse.ArgumentParser()
    web.register(parser.add_subparsers())
    args = parser.parse_args(["serve", "--checkpoint", "x.pt"])
    limits = ServeLimits()
    assert (args.max_upload_mb * MiB, args.max_pixels, args.max_decoded_mb * MiB, args.max_tiles, args.queue,
            args.max_memory_mb * MiB, args.upload_timeout) == (
        limits.max_upload_bytes, limits.max_pixels, limits.max_decoded_bytes, limits.max_tiles, limits.max_queue,
        limits.max_memory_bytes, limits.upload_timeout_s)  # fmt: skip


def test_freed_memory_can_be_handed_back() -> None:
    import platform

    from unetkit.serve.memory import release_free_memory

    assert release_free_memory() is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
