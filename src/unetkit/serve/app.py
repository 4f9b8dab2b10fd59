"""`unetkit serve`: a FastAPI app around one Predictor: a browser page, a runs page and a small API.

Every request that decodes an image (``/predict``, ``/preview``) takes one of ``max_queue`` slots
before its body is read and holds it until its answer is sent (503 when none is free): so at most
that many uploads are spooled, decoded and predicted at once, whatever the clients do. Uploads are
bounded in bytes while they stream in and in time (``guard``), spooled to disk, and priced from
their header (pixels, decoded bytes, network tiles, the model's smallest side, memory) before
decoding (``uploads``, ``Work``); their network calls share one model thread (``batching``), and a
request whose client disconnects has its remaining calls dropped. Every refusal is a JSON
``{"detail": ...}`` 4xx (503 while the queue is full). ``limits.ServeLimits`` has the numbers and
the memory bound.
"""

from __future__ import annotations

import logging
import re
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Literal, TypeVar

from unetkit.errors import ConfigError, UnetkitError

try:
    from fastapi import FastAPI, File, Query, Request, UploadFile
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import HTMLResponse, JSONResponse, Response
except ImportError:  # the web stack is an extra: the core install stays small
    raise ConfigError("unetkit serve needs its web dependencies: pip install 'unetkit[serve]'") from None

from unetkit.config import Config
from unetkit.data.reading import ImageInfo
from unetkit.data.writing import safe_stem
from unetkit.inference.ensemble import AnyPredictor, load_predictor
from unetkit.serve import responses
from unetkit.serve.batching import PredictionService, QueueFull, RequestCancelled
from unetkit.serve.budget import MemoryBudget
from unetkit.serve.guard import CANCEL, UploadGuard
from unetkit.serve.limits import MiB, ServeLimits, forward_bytes, request_bytes
from unetkit.serve.memory import TRIM_AFTER_BYTES, release_free_memory
from unetkit.serve.pages import render_index, render_runs
from unetkit.serve.uploads import RequestError, Upload, opened_upload

__all__ = ["ServeLimits", "create_app", "serve"]

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
DECODING_ROUTES = frozenset({"/predict", "/preview"})
CLIENT_GONE = 499  # nginx's status for a request whose client closed the connection
T = TypeVar("T")


def create_app(predictor: AnyPredictor, runs: Path | None = None, limits: ServeLimits = ServeLimits(), name: str = "model") -> FastAPI:
    """The app; ``runs`` is the folder listed on /runs (none: the page says so)."""
    service = PredictionService(predictor, limits.max_queue, limits.max_batch_tiles, limits.batch_wait_s)
    work = Work(service, limits)
    config = predictor.config
    app = FastAPI(title="unetkit", summary=f"U-Net segmentation with {name}", on_shutdown=[service.close])
    app.add_middleware(
        UploadGuard, max_bytes=limits.max_upload_bytes, timeout_s=limits.upload_timeout_s, admit=service.slot,
        busy=QueueFull, guarded=DECODING_ROUTES,
    )  # fmt: skip
    app.state.service = service
    app.state.work = work

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=error.status)

    @app.exception_handler(RequestCancelled)
    async def gone(request: Request, error: RequestCancelled) -> JSONResponse:
        return JSONResponse({"detail": "the client closed the connection; the request was dropped"}, status_code=CLIENT_GONE)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return render_index(name, config)

    @app.get("/runs", response_class=HTMLResponse, summary="The runs in --runs DIR: curves and sample grids")
    def runs_page() -> str:
        return render_runs(runs)

    @app.get("/health", summary="Liveness and the request queue")
    async def health() -> dict:  # on the event loop: it answers while every worker thread is busy
        return {"status": "ok", "pending": service.pending, "max_queue": service.max_queue}

    @app.get("/model", summary="The model's config (architecture, preprocessing, prediction settings), without server paths")
    async def model() -> dict:
        return {"name": name, "config": public_config(config.to_dict())}

    @app.post(
        "/predict",
        summary="Segment one image (PNG, JPEG, TIFF)",
        description="`output`: `mask` (PNG: 0/255 for binary models, class ids in a palette PNG otherwise), "
        "`rle` (JSON, Kaggle run-length encoding), `prob` (float16 .npy, K x H x W), `instances` (16-bit PNG "
        "of object ids), `outlines` (RGBA PNG of object boundaries).",
        responses={408: {"description": "the upload was too slow"},
                   413: {"description": "too many bytes, pixels, decoded bytes or tiles, or too much memory"},
                   415: {"description": "not an image"}, 422: {"description": "an image this model cannot take"},
                   503: {"description": "queue full; retry"}},  # fmt: skip
    )
    async def predict(
        request: Request,
        file: UploadFile = File(..., description="the image"),
        output: Literal["mask", "rle", "prob", "instances", "outlines"] = Query("mask"),
        rle_order: Literal["row", "column"] = Query("row", description="row: Carvana; column: DSB-2018"),
    ) -> Response:
        stem = safe_stem(Path(file.filename or "upload").stem)
        upload = (file.file, file.filename or "upload", file.content_type or "")
        result = await run_in_threadpool(work.predict, request.scope.get(CANCEL), *upload, output, rle_order)
        if isinstance(result, dict):
            return JSONResponse(result)
        headers = {"Content-Disposition": f'attachment; filename="{stem}{result.suffix}"'}
        return Response(result.body, media_type=result.media_type, headers=headers)

    @app.post("/preview", summary="The uploaded image as an 8-bit PNG, for browsers that cannot show TIFF")
    async def preview(request: Request, file: UploadFile = File(...)) -> Response:
        upload = (file.file, file.filename or "upload", file.content_type or "")
        body = await run_in_threadpool(work.preview, request.scope.get(CANCEL), *upload)
        return Response(body, media_type="image/png")

    return app


class Work:
    """What a decoding request does in its worker thread, once it holds a queue slot: open its
    upload, price it from the header, wait for its share of the memory budget, decode, predict,
    encode. Its ``cancel`` event (set when the client disconnects) stops it between steps."""

    def __init__(self, service: PredictionService, limits: ServeLimits) -> None:
        self.service, self.limits = service, limits
        self.predictor, self.config = service.predictor, service.predictor.config
        self.budget = MemoryBudget(limits.max_memory_bytes)
        side = limits.square_side
        self.max_tiles = limits.max_tiles or self.predictor.tile_count(side, side)
        members = getattr(self.predictor, "members", [self.predictor])
        self.forward_bytes = served_forward_bytes([member.config for member in members], limits)

    def predict(
        self, cancel: threading.Event | None, source: BinaryIO, filename: str, content_type: str, output: str,
        rle_order: Literal["row", "column"],
    ) -> responses.Encoded | dict:  # fmt: skip
        return _then_trimmed(self._predict, cancel, source, filename, content_type, output, rle_order)

    def preview(self, cancel: threading.Event | None, source: BinaryIO, filename: str, content_type: str) -> bytes:
        return _then_trimmed(self._preview, cancel, source, filename, content_type)

    def _predict(
        self, decoded: list[int], cancel: threading.Event | None, source: BinaryIO, filename: str, content_type: str,
        output: str, rle_order: Literal["row", "column"],
    ) -> responses.Encoded | dict:  # fmt: skip
        with opened_upload(source, filename, content_type, self.limits, self.check_for_model) as upload:
            decoded.append(upload.info.decoded_bytes)
            with self.reserved(upload, output, cancel):
                image = upload.read()
                _check_cancelled(cancel)
                try:
                    probabilities = self.service.predict(image, cancel)
                except UnetkitError as error:  # e.g. a colour image for a grey model: the client can fix it
                    raise RequestError(422, f"{upload.name}: {error}") from None
                del image
                _check_cancelled(cancel)
                return self.encode(probabilities, output, rle_order)

    def _preview(self, decoded: list[int], cancel: threading.Event | None, source: BinaryIO, filename: str, content_type: str) -> bytes:
        with opened_upload(source, filename, content_type, self.limits) as upload:
            decoded.append(upload.info.decoded_bytes)
            with self.reserved(upload, "preview", cancel):
                return responses.encode_display(upload.read())

    def encode(self, probabilities, output: str, rle_order: Literal["row", "column"]) -> responses.Encoded | dict:
        if output in ("mask", "rle"):
            labels = self.predictor.labels(probabilities)
            if output == "rle":
                return responses.rle_payload(labels, self.config, rle_order)
            return responses.encode_png_mask(labels, self.config)
        if output == "prob":
            return responses.encode_probabilities(probabilities, self.config)
        if output == "instances":
            return responses.encode_instances(probabilities, self.config)
        return responses.encode_outlines(probabilities, self.config)

    def check_for_model(self, info: ImageInfo, name: str) -> None:
        """Refuse, from the header, an image the model cannot take or that takes too many tiles."""
        try:
            self.predictor.check_image_size(info.height, info.width)
        except UnetkitError as error:
            raise RequestError(422, f"{name}: {error}") from None
        tiles = self.predictor.tile_count(info.height, info.width)
        if tiles > self.max_tiles:
            side = self.limits.square_side
            raise RequestError(
                413, f"{name}: a {info.width} x {info.height} image takes {tiles} network tiles, more than this server's "
                     f"limit of {self.max_tiles} per request (what a {side} x {side} image takes)",
            )  # fmt: skip

    @contextmanager
    def reserved(self, upload: Upload, output: str, cancel: threading.Event | None) -> Iterator[None]:
        """Inside: the request's share of the memory budget (refused if it alone needs more)."""
        need = request_bytes(upload.info.decoded_bytes, upload.info.pixels, output, self.config.model.out_channels)
        if need > self.budget.total:
            raise RequestError(
                413, f"{upload.name}: decoding it and answering ({output}) takes about {need // MiB} MiB, more than this "
                     f"server's memory limit of {self.budget.total // MiB} MiB",
            )  # fmt: skip
        _check_cancelled(cancel)
        with self.budget.reserve(need, cancel):
            yield


def served_forward_bytes(configs: list[Config], limits: ServeLimits) -> int:
    """``limits.forward_bytes`` of the largest forward pass the model thread runs for models of
    ``configs`` (an ensemble's members): ``max_batch_tiles`` tiles plus the rest of the call that
    crosses that number, for its largest member."""
    sizes = []
    for config in configs:
        side = config.data.image_size or config.predict.tile_size
        batch = limits.max_batch_tiles + config.predict.batch_size - 1
        sizes.append(forward_bytes(batch, side, config.model.base_width, config.model.in_channels))
    return max(sizes)


def _then_trimmed(work: Callable[..., T], *args) -> T:
    """``work(decoded, *args)``, then freed memory handed back if its upload decoded large; ``work``
    appends its decoded bytes to ``decoded`` and has returned, so its arrays are freed already."""
    decoded: list[int] = []
    try:
        return work(decoded, *args)
    finally:
        if decoded and decoded[0] >= TRIM_AFTER_BYTES:
            release_free_memory()


def _check_cancelled(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise RequestCancelled("the client has gone")


# An absolute path inside a longer text: /x, ~/x, C:\x or \\server\x, not the "/s" of "img/s".
_EMBEDDED_PATH = re.compile(r"(?<![\w.])(?:~?/|[A-Za-z]:[\\/]|\\\\)[^\s'\",;)\]]+")
SERVER_PATH_FIELDS = {("data", "path"), ("data", "val_path")}


def public_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config without the server's paths: the training data's folders are dropped, any other
    value that is an absolute path is dropped too, and paths inside texts become ``<path>``."""

    def clean(value: Any, where: tuple[str, ...]) -> Any:
        if isinstance(value, dict):
            return {key: clean(item, (*where, key)) for key, item in value.items()
                    if (*where, key) not in SERVER_PATH_FIELDS and not _is_path(item)}  # fmt: skip
        if isinstance(value, (list, tuple)):
            return [clean(item, where) for item in value if not _is_path(item)]
        if isinstance(value, str):
            return _EMBEDDED_PATH.sub("<path>", value)
        return value

    return clean(config, ())


def _is_path(value: Any) -> bool:
    return isinstance(value, str) and bool(_EMBEDDED_PATH.fullmatch(value.strip()))


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
    bound = limits.memory_bound(app.state.work.forward_bytes)
    log.info("memory: at most %d MiB above the idle server's (serve/limits.py)", bound // MiB)
    uvicorn.run(app, host=host, port=port, log_level="warning")
