"""The HTTP API of `unetkit serve` through starlette's TestClient (no browser, no socket)."""

from __future__ import annotations

import base64
import io
import re
import struct
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from web_helpers import decode_png, png

from unetkit.data.rle import rle_decode
from unetkit.inference.predictor import Predictor


def post(client: TestClient, data: bytes, output: str = "mask", content_type: str = "image/png", **params: str):
    return client.post("/predict", params={"output": output, **params}, files={"file": ("cells.png", data, content_type)})


def expected_labels(client: TestClient, image: np.ndarray) -> np.ndarray:
    predictor: Predictor = client.app.state.service.predictor
    return predictor.labels(predictor.predict_image(image))


def test_health_and_model(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok", "pending": 0, "max_queue": 4}
    model = client.get("/model").json()
    assert model["config"]["model"]["base_width"] == 4 and model["config"]["model"]["depth"] == 2


def test_mask_is_the_predictors_mask_at_the_images_size(client: TestClient, image: np.ndarray) -> None:
    response = post(client, png(image))
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.headers["content-disposition"] == 'attachment; filename="cells_mask.png"'
    mask = decode_png(response.content)
    labels = expected_labels(client, image)
    assert mask.shape == image.shape and 0 < labels.sum() < labels.size
    np.testing.assert_array_equal(mask, np.where(labels > 0, 255, 0))


def test_rle_decodes_to_the_mask(client: TestClient, image: np.ndarray) -> None:
    payload = post(client, png(image), "rle", rle_order="column").json()
    assert (payload["width"], payload["height"], payload["order"]) == (image.shape[1], image.shape[0], "column")
    mask = rle_decode(payload["rle"], image.shape, "column")
    np.testing.assert_array_equal(mask, expected_labels(client, image) > 0)


def test_probabilities_instances_and_outlines(client: TestClient, image: np.ndarray) -> None:
    probabilities = np.load(io.BytesIO(post(client, png(image), "prob").content))
    assert probabilities.shape == (1, *image.shape) and probabilities.dtype == np.float16
    assert 0.0 <= probabilities.min() < 0.5 < probabilities.max() <= 1.0
    instances = decode_png(post(client, png(image), "instances").content)
    assert instances.shape == image.shape and instances.max() >= 1
    outlines = decode_png(post(client, png(image), "outlines").content)
    assert outlines.shape == (*image.shape, 4)
    on_outline = outlines[..., 3] > 0
    assert on_outline.any() and (instances[on_outline] > 0).all()  # inner boundaries lie on objects


def test_tiff_and_jpeg_uploads(client: TestClient, image: np.ndarray) -> None:
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, image)
    tiff = client.post("/predict", files={"file": ("x.tif", buffer.getvalue(), "image/tiff")})
    np.testing.assert_array_equal(decode_png(tiff.content), decode_png(post(client, png(image)).content))
    jpeg = io.BytesIO()
    from PIL import Image

    Image.fromarray(image).save(jpeg, format="JPEG")
    assert post(client, jpeg.getvalue(), content_type="image/jpeg").status_code == 200
    preview = client.post("/preview", files={"file": ("x.tif", buffer.getvalue(), "image/tiff")})
    np.testing.assert_array_equal(decode_png(preview.content), np.repeat(image[..., None], 3, axis=-1))


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height pixels, followed by a few bytes of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("name", "data", "content_type", "status"),
    [
        ("truncated PNG", "truncated", "image/png", 400),
        ("text file", b"hello, this is not an image\n", "text/plain", 415),
        ("text sent as a PNG", b"hello, this is not an image\n", "image/png", 415),
        ("decompression bomb", bomb_png(100_000, 100_000), "image/png", 413),
        ("empty body", b"", "image/png", 400),
        ("too many bytes", b"\x89PNG\r\n\x1a\n" + bytes(2**20), "image/png", 413),
    ],
)
def test_hostile_uploads_get_a_json_4xx_and_the_server_keeps_serving(
    client: TestClient, image: np.ndarray, name: str, data: bytes | str, content_type: str, status: int
) -> None:
    body = png(image)[:100] if data == "truncated" else data
    response = post(client, body, content_type=content_type)
    assert response.status_code == status, (name, response.text)
    assert "cells" in response.json()["detail"] or status == 413
    assert "/tmp" not in response.json()["detail"]  # the temporary folder is nobody's business
    assert post(client, png(image)).status_code == 200


def test_requests_that_are_not_uploads_are_refused(client: TestClient, image: np.ndarray) -> None:
    assert client.post("/predict", json={"image": "cells.png"}).status_code == 422
    assert post(client, png(image), output="../../etc/passwd").status_code == 422
    assert client.get("/predict").status_code == 405


def test_rgba_image_for_a_grey_model_is_converted(client: TestClient, image: np.ndarray) -> None:
    rgba = np.dstack([image, image, image, np.full_like(image, 255)])
    assert post(client, png(rgba)).status_code == 200


def test_the_openapi_page_documents_the_api(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/health", "/model"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 200


def test_a_full_queue_answers_503_with_retry_after(checkpoint, image: np.ndarray) -> None:
    from unetkit.serve.app import ServeLimits, create_app

    predictor = Predictor.from_checkpoint(checkpoint, device="cpu", precision="32")
    with TestClient(create_app(predictor, limits=ServeLimits(max_queue=0))) as busy:
        response = post(busy, png(image))
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert "already in progress" in response.json()["detail"]


def test_a_run_of_folds_is_served_as_their_ensemble(tmp_path, image: np.ndarray) -> None:
    from web_helpers import tiny_checkpoint

    from unetkit.inference.ensemble import load_predictor
    from unetkit.serve.app import create_app

    for fold in (0, 1):
        (tmp_path / f"fold_{fold}").mkdir()
        tiny_checkpoint(tmp_path / f"fold_{fold}" / "best.pt", seed=fold)
    ensemble = load_predictor(tmp_path, device="cpu", precision="32")
    assert len(ensemble.members) == 2
    expected = ensemble.labels(ensemble.predict_image(image))
    with TestClient(create_app(load_predictor(tmp_path, device="cpu", precision="32"))) as served:
        mask = decode_png(post(served, png(image)).content)
    np.testing.assert_array_equal(mask, np.where(expected > 0, 255, 0))


def test_runs_page_lists_each_run_with_its_curves_and_latest_samples(checkpoint, tmp_path) -> None:
    from unetkit.serve.app import create_app

    run = tmp_path / "runs" / "exp1"
    (run / "samples").mkdir(parents=True)
    rows = ["step,epoch,train_loss,val_loss,val_dice,val_iou,val_accuracy,lr,seconds", "6,1,1.0,1.1,0.61,0.5,0.9,0.01,2",
            "12,2,0.8,0.9,0.72,0.6,0.9,0.01,4"]  # fmt: skip
    (run / "metrics.csv").write_text("\n".join(rows) + "\n")
    for step, value in ((6, 10), (12, 200)):
        (run / "samples" / f"step_{step:06d}.png").write_bytes(png(np.full((4, 12), value, np.uint8)))
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    with TestClient(create_app(predictor, runs=tmp_path / "runs")) as served:
        page = served.get("/runs").text
    with TestClient(create_app(Predictor.from_checkpoint(checkpoint, device="cpu"))) as served:
        assert "--runs DIR" in served.get("/runs").text
    assert "<h2>exp1</h2>" in page and "2 epoch(s), best validation Dice 0.7200" in page
    curves, samples = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert decode_png(base64.b64decode(curves)).shape[1] > 300  # drawn from metrics.csv (no curves.png)
    np.testing.assert_array_equal(decode_png(base64.b64decode(samples)), np.full((4, 12), 200))


def test_a_chunked_body_without_length_is_cut_off_at_the_limit(client: TestClient) -> None:
    chunks = (b"\0" * 2**16 for _ in range(40))  # 2.5 MiB against the fixture's 1 MiB, no Content-Length
    response = client.post("/predict", content=chunks, headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert response.status_code == 413 and "limit of 1048576 bytes" in response.json()["detail"]
    assert client.get("/health").status_code == 200
