"""Concurrent network calls run on one thread, stacked into batches; a full queue refuses at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from unetkit.serve.batching import ModelThread, PredictionService, QueueFull, RequestCancelled


class SlowDouble:
    """A network that doubles its input, slowly, and records the threads and batch sizes it saw."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds
        self.batch_sizes: list[int] = []
        self.threads: set[str] = set()

    def __call__(self, tiles: torch.Tensor) -> torch.Tensor:
        self.threads.add(threading.current_thread().name)
        self.batch_sizes.append(len(tiles))
        time.sleep(self.seconds)
        return tiles * 2


def test_concurrent_calls_are_batched_on_one_thread_and_get_their_own_outputs() -> None:
    slow = SlowDouble()
    thread = ModelThread(max_tiles=16)
    network = thread.wrap(slow)
    inputs = [torch.full((1, 1, 8, 8), float(index)) for index in range(8)]
    try:
        with ThreadPoolExecutor(8) as pool:
            outputs = list(pool.map(network, inputs))
    finally:
        thread.close()
    for index, output in enumerate(outputs):
        assert torch.equal(output, torch.full((1, 1, 8, 8), 2.0 * index))
    assert slow.threads == {"unetkit-model"}
    assert len(slow.batch_sizes) < 8 and max(slow.batch_sizes) > 1 and sum(slow.batch_sizes) == 8


def test_tiles_of_different_shapes_go_in_separate_batches_and_max_tiles_holds() -> None:
    slow = SlowDouble()
    thread = ModelThread(max_tiles=3)
    network = thread.wrap(slow)
    shapes = [(2, 1, 8, 8), (1, 1, 16, 16)] * 4
    try:
        with ThreadPoolExecutor(8) as pool:
            outputs = list(pool.map(network, [torch.ones(shape) for shape in shapes]))
    finally:
        thread.close()
    assert [tuple(output.shape) for output in outputs] == shapes
    assert max(slow.batch_sizes) <= 4  # up to max_tiles, plus the last call that crossed it


def test_two_networks_share_the_thread_but_never_a_batch() -> None:
    first, second = SlowDouble(), SlowDouble()
    thread = ModelThread(max_tiles=16)
    networks = [thread.wrap(first), thread.wrap(second)] * 4
    try:
        with ThreadPoolExecutor(8) as pool:
            outputs = list(pool.map(lambda network: network(torch.ones(1, 1, 8, 8)), networks))
    finally:
        thread.close()
    assert all(torch.equal(output, torch.full((1, 1, 8, 8), 2.0)) for output in outputs)
    assert first.threads == second.threads == {"unetkit-model"}
    assert sum(first.batch_sizes) == sum(second.batch_sizes) == 4


def test_the_thread_waits_briefly_for_calls_of_requests_in_flight() -> None:
    slow = SlowDouble(seconds=0.0)
    thread = ModelThread(max_tiles=16, max_wait=0.5, in_flight=lambda: 2)
    network = thread.wrap(slow)

    def late_call() -> torch.Tensor:
        time.sleep(0.1)  # out of step with the first, as requests coming back from the last batch are
        return network(torch.ones(1, 1, 4, 4))

    try:
        with ThreadPoolExecutor(2) as pool:
            late = pool.submit(late_call)
            early = pool.submit(network, torch.ones(1, 1, 4, 4))
            assert torch.equal(early.result(), late.result())
    finally:
        thread.close()
    assert slow.batch_sizes == [2]


def test_a_lone_request_never_waits() -> None:
    thread = ModelThread(max_wait=5.0, in_flight=lambda: 1)
    network = thread.wrap(SlowDouble(seconds=0.0))
    try:
        started = time.perf_counter()
        network(torch.ones(1, 1, 4, 4))
        assert time.perf_counter() - started < 1.0
    finally:
        thread.close()


def test_a_failing_network_fails_the_waiting_calls_not_the_thread() -> None:
    calls = []

    def flaky(tiles: torch.Tensor) -> torch.Tensor:
        calls.append(len(tiles))
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return tiles

    thread = ModelThread()
    network = thread.wrap(flaky)
    try:
        with pytest.raises(RuntimeError, match="out of memory"):
            network(torch.ones(1, 1, 4, 4))
        assert torch.equal(network(torch.ones(1, 1, 4, 4)), torch.ones(1, 1, 4, 4))
    finally:
        thread.close()


class FakePredictor:
    def __init__(self, network: SlowDouble) -> None:
        self.network = network

    def predict_image(self, image: np.ndarray) -> np.ndarray:
        return self.network(torch.from_numpy(image)[None]).numpy()[0]


def test_a_full_queue_refuses_at_once_and_frees_its_slots() -> None:
    service = PredictionService(FakePredictor(SlowDouble(seconds=0.3)), max_queue=2)
    image = np.ones((1, 4, 4), np.float32)
    try:
        with ThreadPoolExecutor(2) as pool:
            waiting = [pool.submit(service.probabilities, image) for _ in range(2)]
            time.sleep(0.1)
            assert service.pending == 2
            started = time.perf_counter()
            with pytest.raises(QueueFull, match="2 requests are already in progress"):
                service.probabilities(image)
            assert time.perf_counter() - started < 0.1
            assert all(np.array_equal(future.result(), image * 2) for future in waiting)
        assert service.pending == 0
        np.testing.assert_array_equal(service.probabilities(image), image * 2)
    finally:
        service.close()


def test_calls_of_a_cancelled_request_are_dropped_unrun() -> None:
    slow = SlowDouble(seconds=0.3)
    thread = ModelThread(max_tiles=1)
    network = thread.wrap(slow)
    cancel = threading.Event()

    def cancelled_request() -> torch.Tensor:
        with thread.cancelled_by(cancel):
            return network(torch.ones(1, 1, 4, 4))

    try:
        with ThreadPoolExecutor(2) as pool:
            busy = pool.submit(network, torch.ones(1, 1, 4, 4))  # holds the thread for 0.3 s
            time.sleep(0.05)
            queued = pool.submit(cancelled_request)
            time.sleep(0.05)
            cancel.set()  # its call waits in the queue: it must never reach the network
            with pytest.raises(RequestCancelled):
                queued.result()
            busy.result()
        with pytest.raises(RequestCancelled):  # and a cancelled request queues no further call
            cancelled_request()
    finally:
        thread.close()
    assert slow.batch_sizes == [1]
