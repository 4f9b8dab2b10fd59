"""Concurrent requests onto one model thread: network calls are queued and stacked into batches.

Each request runs the predictor's own preprocessing, tiling and stitching in its thread; only
the network call (a batch of tiles) is handed to the single model thread, which stacks the tiles of
every call waiting at that moment (equal tile shapes only) into one forward pass. So any image size,
TTA and valid-padding model batch alike, and the model is never entered by two threads at once.
A request whose client has gone (its ``cancel`` event set) queues no more calls, and the calls it
left waiting are dropped unrun.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from itertools import groupby
from typing import Callable, Iterator

import numpy as np
import torch

from unetkit.inference.ensemble import AnyPredictor
from unetkit.inference.predictor import Network


class QueueFull(Exception):
    """More requests are waiting than the queue holds: the caller answers 503."""


class RequestCancelled(Exception):
    """The request's client has gone: its remaining network calls are not run."""


@dataclass
class _Call:
    network: Network
    tiles: torch.Tensor
    cancel: threading.Event | None = None
    result: Future = field(default_factory=Future)

    @property
    def batch_key(self) -> tuple:
        """Calls stack into one batch only for the same network and tile shape."""
        return id(self.network), tuple(self.tiles.shape[1:])


class ModelThread:
    """The one thread that runs networks: ``wrap(network)`` gives a ``Network`` any thread may call;
    calls waiting together are stacked into one forward pass per network and tile shape."""

    def __init__(self, max_tiles: int = 16, max_wait: float = 0.0, in_flight: Callable[[], int] = lambda: 1) -> None:
        self._max_tiles = max_tiles
        self._max_wait = max_wait
        self._in_flight = in_flight
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._local = threading.local()  # the cancel event of the request the calling thread serves
        self.forward_passes = 0
        self._thread = threading.Thread(target=self._serve, name="unetkit-model", daemon=True)
        self._thread.start()

    def wrap(self, network: Network) -> Network:
        return partial(self.run, network)

    def run(self, network: Network, tiles: torch.Tensor) -> torch.Tensor:
        cancel = getattr(self._local, "cancel", None)
        if cancel is not None and cancel.is_set():
            raise RequestCancelled("the client has gone")
        call = _Call(network, tiles, cancel)
        self._calls.put(call)
        return call.result.result()

    @contextmanager
    def cancelled_by(self, cancel: threading.Event | None) -> Iterator[None]:
        """Network calls made by this thread inside belong to a request cancelled by ``cancel``."""
        self._local.cancel = cancel
        try:
            yield
        finally:
            self._local.cancel = None

    def close(self) -> None:
        self._calls.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while (first := self._calls.get()) is not None:
            waiting, stop = self._waiting_calls(len(first.tiles))
            calls = sorted([first, *waiting], key=lambda call: call.batch_key)
            for _, same_key in groupby(calls, key=lambda call: call.batch_key):
                self._forward(list(same_key))
            if stop:
                return

    def _waiting_calls(self, tiles: int) -> tuple[list[_Call], bool]:
        """Calls to stack with the first, up to ``max_tiles`` tiles in all; True when ``close`` was
        called. While fewer calls are in hand than requests are in flight, it waits for theirs up to
        ``max_wait`` seconds: the requests of the last batch come back out of step, one by one."""
        waiting: list[_Call] = []
        deadline = time.monotonic() + self._max_wait
        while tiles < self._max_tiles:
            patience = deadline - time.monotonic() if len(waiting) + 1 < self._in_flight() else 0.0
            try:
                call = self._calls.get(timeout=patience) if patience > 0 else self._calls.get_nowait()
            except queue.Empty:
                break
            if call is None:
                return waiting, True
            waiting.append(call)
            tiles += len(call.tiles)
        return waiting, False

    def _forward(self, calls: list[_Call]) -> None:
        for call in [call for call in calls if call.cancel is not None and call.cancel.is_set()]:
            call.result.set_exception(RequestCancelled("the client has gone"))
            calls.remove(call)
        if not calls:
            return
        try:
            outputs = calls[0].network(torch.cat([call.tiles for call in calls]))
            self.forward_passes += 1
        except BaseException as error:  # every waiting request learns of the failure
            for call in calls:
                call.result.set_exception(error)
            return
        for call, output in zip(calls, outputs.split([len(call.tiles) for call in calls])):
            call.result.set_result(output)


class PredictionService:
    """A ``Predictor`` shared by request threads: at most ``max_queue`` requests at once (``slot``,
    else ``QueueFull``), their network calls batched on one model thread."""

    def __init__(
        self, predictor: AnyPredictor, max_queue: int = 16, max_batch_tiles: int = 16, max_wait: float = 0.005
    ) -> None:
        self.predictor = predictor
        self.max_queue = max_queue
        self.model_thread = ModelThread(max_batch_tiles, max_wait, in_flight=lambda: self.predicting)
        for member in getattr(predictor, "members", [predictor]):  # an ensemble's members share the thread
            member.network = self.model_thread.wrap(member.network)
        self._slots = threading.BoundedSemaphore(max_queue) if max_queue > 0 else None
        self._lock = threading.Lock()
        self.pending = 0  # requests holding a slot: uploading, decoding, predicting or answering
        self.predicting = 0  # of them, those whose network calls the model thread may wait for

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the ``max_queue`` slots; ``QueueFull`` at once when none is free."""
        if self._slots is None or not self._slots.acquire(blocking=False):
            raise QueueFull(f"{self.max_queue} requests are already in progress; retry in a moment")
        with self._lock:
            self.pending += 1
        try:
            yield
        finally:
            with self._lock:
                self.pending -= 1
            self._slots.release()

    def predict(self, image: np.ndarray, cancel: threading.Event | None = None) -> np.ndarray:
        """Probabilities (K, H, W) for a raw image, as ``Predictor.predict_image`` gives them, for a
        request that holds a slot; ``RequestCancelled`` once ``cancel`` is set."""
        with self._lock:
            self.predicting += 1
        try:
            with self.model_thread.cancelled_by(cancel):
                return self.predictor.predict_image(image)
        finally:
            with self._lock:
                self.predicting -= 1

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """``predict`` in a slot of its own."""
        with self.slot():
            return self.predict(image)

    def close(self) -> None:
        self.model_thread.close()
