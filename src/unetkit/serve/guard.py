"""ASGI middleware between the network and the app: what a request may cost before the app sees it.

For every HTTP request: a body larger than the byte limit is cut off with 413 while it streams in (a
Content-Length can lie; chunked bodies have none), and a body that does not arrive within its
deadline gets 408 (a client sending one byte every few seconds must not hold a slot for ever).
Requests to the decoding routes first take a queue slot, before a byte of their body is read, and
hold it until their answer is sent; none left: 503, with the body read and dropped unstored (or at
once, to a client that waits for ``100 Continue``). When a client disconnects, its request's
``cancel`` event (``scope[CANCEL]``) is set, so the work it queued is dropped.
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import AbstractContextManager
from typing import Callable

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CANCEL = "unetkit.cancel"  # scope key: a threading.Event set when the client has gone


class BodyTooLarge(HTTPException):
    """An HTTPException, so FastAPI's body parsing passes it on as a 413 instead of a generic 400."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"the request body is larger than this server's limit of {max_bytes} bytes")


class UploadTimeout(HTTPException):
    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"the request body did not arrive within this server's limit of {seconds:g} s")


class UploadGuard:
    """The middleware (module docstring). ``admit()`` gives a context manager holding one queue slot,
    or raises ``busy`` (answered 503) when none is free; ``guarded`` are the paths that need one."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, timeout_s: float, admit: Callable[[], AbstractContextManager],
        busy: type[Exception], guarded: frozenset[str],
    ) -> None:  # fmt: skip
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.admit = admit
        self.busy = busy
        self.guarded = guarded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _json(413, BodyTooLarge(self.max_bytes).detail)(scope, receive, send)
            return
        if scope["path"] not in self.guarded:
            await self._run(scope, receive, send)
            return
        try:
            slot = self.admit()
            slot.__enter__()
        except self.busy as error:
            if b"100-continue" not in dict(scope["headers"]).get(b"expect", b"").lower():
                await self._discard_body(receive)
            await _json(503, str(error), {"Retry-After": "1"})(scope, receive, send)
            return
        try:
            await self._run(scope, receive, send)
        finally:
            slot.__exit__(None, None, None)

    async def _discard_body(self, receive: Receive) -> None:
        """Read a refused request's body and drop it, within the byte limit and the deadline: a
        server that closes the connection on unread bytes resets it, and the client never reads its
        answer. (A client that sent ``Expect: 100-continue`` has not sent its body: it reads the
        answer at once.)"""
        loop = asyncio.get_running_loop()
        deadline, received = loop.time() + self.timeout_s, 0
        while received <= self.max_bytes:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                return
            received += len(message.get("body", b""))
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                return

    async def _run(self, scope: Scope, receive: Receive, send: Send) -> None:
        cancel = threading.Event()
        scope[CANCEL] = cancel
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        received = 0
        watcher: asyncio.Task | None = None

        async def watch_for_disconnect() -> None:
            # Once the body is in, the server's receive() returns only when the client disconnects
            # (or the response is complete, by which time this task is cancelled).
            while (await receive())["type"] != "http.disconnect":
                pass
            cancel.set()

        async def guarded_receive() -> Message:
            nonlocal received, watcher
            if watcher is not None:  # the body is in: later calls only ask whether the client left
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise UploadTimeout(self.timeout_s) from None
            if message["type"] == "http.disconnect":
                cancel.set()
                return message
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLarge(self.max_bytes)
            if not message.get("more_body", False):
                watcher = asyncio.ensure_future(watch_for_disconnect())
            return message

        try:
            await self.app(scope, guarded_receive, send)
        finally:
            if watcher is not None:
                watcher.cancel()


def _json(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)
