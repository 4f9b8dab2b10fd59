"""A real uvicorn server on a loopback socket, in a thread of the test process (so a test can reach
into the app it serves), and a raw HTTP client that sends a request a piece at a time."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import uvicorn

BOUNDARY = "unetkit-test-boundary"


@contextmanager
def live_server(app) -> Iterator[int]:
    """Serve ``app`` on 127.0.0.1 until the block ends; yields the port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield listener.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listener.close()


def multipart(data: bytes, name: str = "cells.png", content_type: str = "image/png") -> bytes:
    head = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n").encode()  # fmt: skip
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


class RawRequest:
    """A POST whose headers go out at once and whose body goes out when and as the test says."""

    def __init__(self, port: int, path: str, length: int, expect_continue: bool = False) -> None:
        self.connection = socket.create_connection(("127.0.0.1", port), timeout=30)
        headers = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: multipart/form-data; boundary={BOUNDARY}",
                   f"Content-Length: {length}", "Connection: close"]  # fmt: skip
        if expect_continue:
            headers.append("Expect: 100-continue")
        self.connection.sendall(("\r\n".join(headers) + "\r\n\r\n").encode())

    def send(self, data: bytes) -> None:
        self.connection.sendall(data)

    def response(self, timeout: float = 30) -> tuple[int, bytes]:
        """(status, body) of the answer, read until the server closes the connection."""
        self.connection.settimeout(timeout)
        received = b""
        while chunk := self.connection.recv(65536):
            received += chunk
        self.close()
        head, _, body = received.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body

    def close(self) -> None:
        self.connection.close()


def post(port: int, path: str, data: bytes, timeout: float = 60) -> tuple[int, bytes]:
    body = multipart(data)
    request = RawRequest(port, path, len(body))
    request.send(body)
    return request.response(timeout)


def get_json(port: int, path: str) -> dict:
    import json

    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    connection.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    connection.close()
    return json.loads(received.partition(b"\r\n\r\n")[2])
