"""`unetkit serve`: a FastAPI app around one Predictor: a browser page, a runs page and a small API.

Requests share one model thread (``batching``); uploads are bounded in bytes (``BodyLimit``) and in
pixels, decoded only inside a temporary folder, and every refusal is a JSON ``{"detail": ...}`` 4xx
(503 while the queue is full).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from unetkit.errors import ConfigError, UnetkitError

try:
    from fastapi import FastAPI, File, Query, Request, UploadFile
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import HTMLResponse, JSONResponse, Response
except ImportError:  # the web stack is an extra: the core install stays small
    raise ConfigError("unetkit serve needs its web dependencies: pip install 'unetkit[serve]'") from None

from unetkit.config import Config
from unetkit.data.writing import safe_stem
from unetkit.inference.ensemble import AnyPredictor, load_predictor
from unetkit.serve import responses
from unetkit.serve.batching import PredictionService, QueueFull
from unetkit.serve.limits import BodyLimit
from unetkit.serve.pages import render_index, render_runs
from unetkit.serve.uploads import RequestError, decode_upload

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class ServeLimits:
    max_upload_bytes: int = 32 * 2**20
    max_pixels: int = 25_000_000
    max_queue: int = 16
    max_batch_tiles: int = 16
    batch_wait_s: float = 0.005  # how long the model thread waits for the tiles of other requests in flight


def create_app(predictor: AnyPredictor, runs: Path | None = None, limits: ServeLimits = ServeLimits(), name: str = "model") -> FastAPI:
    """The app; ``runs`` is the folder listed on /runs (none: the page says so)."""
    service = PredictionService(predictor, limits.max_queue, limits.max_batch_tiles, limits.batch_wait_s)
    config = predictor.config
    app = FastAPI(title="unetkit", summary=f"U-Net segmentation with {name}", on_shutdown=[service.close])
    app.add_middleware(BodyLimit, max_bytes=limits.max_upload_bytes)
    app.state.service = service

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=error.status)

    @app.exception_handler(QueueFull)
    async def busy(request: Request, error: QueueFull) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=503, headers={"Retry-After": "1"})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return render_index(name, config)

    @app.get("/runs", response_class=HTMLResponse, summary="The runs in --runs DIR: curves and sample grids")
    def runs_page() -> str:
        return render_runs(runs)

    @app.get("/health", summary="Liveness and the request queue")
    def health() -> dict:
        return {"status": "ok", "pending": service.pending, "max_queue": service.max_queue}

    @app.get("/model", summary="The model's whole config (architecture, preprocessing, prediction settings)")
    def model() -> dict:
        return {"name": name, "config": config.to_dict()}

    @app.post(
        "/predict",
        summary="Segment one image (PNG, JPEG, TIFF)",
        description="`output`: `mask` (PNG: 0/255 for binary models, class ids in a palette PNG otherwise), "
        "`rle` (JSON, Kaggle run-length encoding), `prob` (float16 .npy, K x H x W), `instances` (16-bit PNG "
        "of object ids), `outlines` (RGBA PNG of object boundaries).",
        responses={413: {"description": "too many bytes or pixels"}, 415: {"description": "not an image"},
                   503: {"description": "queue full; retry"}},
    )
    async def predict(
        file: UploadFile = File(..., description="the image"),
        output: Literal["mask", "rle", "prob", "instances", "outlines"] = Query("mask"),
        rle_order: Literal["row", "column"] = Query("row", description="row: Carvana; column: DSB-2018"),
    ) -> Response:
        data = await file.read()
        stem = safe_stem(Path(file.filename or "upload").stem)
        args = (data, file.filename or "upload", file.content_type or "", output, rle_order)
        result = await run_in_threadpool(_predict, service, config, limits.max_pixels, *args)
        if isinstance(result, dict):
            return JSONResponse(result)
        headers = {"Content-Disposition": f'attachment; filename="{stem}{result.suffix}"'}
        return Response(result.body, media_type=result.media_type, headers=headers)

    @app.post("/preview", summary="The uploaded image as an 8-bit PNG, for browsers that cannot show TIFF")
    async def preview(file: UploadFile = File(...)) -> Response:
        data = await file.read()
        image = await run_in_threadpool(decode_upload, data, file.filename or "upload", file.content_type or "", limits.max_pixels)
        return Response(await run_in_threadpool(responses.encode_display, image), media_type="image/png")

    return app


def _predict(
    service: PredictionService, config: Config, max_pixels: int, data: bytes, filename: str, content_type: str,
    output: str, rle_order: Literal["row", "column"],
) -> responses.Encoded | dict:
    image = decode_upload(data, filename, content_type, max_pixels)
    try:
        probabilities = service.probabilities(image)
    except UnetkitError as error:  # e.g. a colour image for a grey model: the client can fix it
        raise RequestError(422, f"{safe_stem(filename)}: {error}") from None
    if output in ("mask", "rle"):
        labels = service.predictor.labels(probabilities)
        if output == "rle":
            return responses.rle_payload(labels, config, rle_order)
        return responses.encode_png_mask(labels, config)
    if output == "prob":
        return responses.encode_probabilities(probabilities, config)
    if output == "instances":
        return responses.encode_instances(probabilities, config)
    return responses.encode_outlines(probabilities, config)


def serve(
    checkpoint: str | Path, host: str = "127.0.0.1", port: int = 8000, runs: str | Path | None = None,
    device: str = "auto", precision: str = "auto", limits: ServeLimits = ServeLimits(),
) -> None:
    """Load the model and serve it until Ctrl-C."""
    import uvicorn

    predictor = load_predictor(checkpoint, device, precision)  # a checkpoint, a run, or a run of folds
    app = create_app(predictor, Path(runs) if runs else None, limits, name=Path(checkpoint).name)
    if host not in LOOPBACK_HOSTS:
        log.warning("serving on %s: anyone who can reach this machine on port %d can use the model and list the runs", host, port)
    log.info("unetkit serve: http://%s:%d/ (API docs: /docs)", host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning")
