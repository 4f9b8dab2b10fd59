"""The memory the requests in progress may hold at once, handed out first come, first served.

A request reserves its estimate (``limits.request_bytes``, from its image's header) before decoding
and gives it back when its answer is ready. While the others hold too much for it, it waits its
turn; later requests wait behind it (a stream of small images cannot starve a big one). A request
whose client has gone stops waiting.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from contextlib import contextmanager
from typing import Iterator

from unetkit.serve.batching import RequestCancelled

POLL_S = 0.1  # how often a waiting request looks whether its client is still there


class MemoryBudget:
    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._condition = threading.Condition()
        self._line: deque[int] = deque()
        self._tickets = itertools.count()

    @contextmanager
    def reserve(self, nbytes: int, cancel: threading.Event | None = None) -> Iterator[None]:
        """Hold ``nbytes`` of the budget inside (``nbytes`` <= ``total``: the caller refuses more)."""
        if nbytes > self.total:
            raise ValueError(f"{nbytes} bytes is more than the whole budget of {self.total}")
        with self._condition:
            ticket = next(self._tickets)
            self._line.append(ticket)
            try:
                while self._line[0] != ticket or self.used + nbytes > self.total:
                    if cancel is not None and cancel.is_set():
                        raise RequestCancelled("the client has gone")
                    self._condition.wait(POLL_S)
                self.used += nbytes
            finally:
                self._line.remove(ticket)
                self._condition.notify_all()
        try:
            yield
        finally:
            with self._condition:
                self.used -= nbytes
                self._condition.notify_all()
