"""Peak memory of `unetkit serve` under concurrent maximum-size uploads, against its documented bound.

    PYTHONPATH=src python benchmarks/serve_memory.py [--clients 40] [--queue 16] [--max-pixels N] [--json PATH]

Starts `unetkit serve` as a separate process on a free 127.0.0.1 port with the given limits (a random
small U-Net unless --checkpoint), warms it up with one small request and reads its idle resident
memory. Then, --rounds times, --clients clients upload at once, each on its own connection, the largest image the
limits allow (an RGB PNG of --max-pixels pixels, which Pillow decodes to 4 bytes per pixel, within
--max-decoded-mb; compressible content, so it fits --max-upload-mb). Meanwhile the server's RSS is
sampled (psutil where installed, else /proc) and a monitor asks /health every 0.25 s. At the end the
kernel's record of the peak (VmHWM, where /proc has it) joins the samples.

Passes when every upload is answered 200 or 503, /health answers every time within
--health-timeout, and the peak stays within the documented bound: the idle server's RSS plus
``ServeLimits.memory_bound`` (src/unetkit/serve/limits.py; README.md, "See it in a browser").
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import io
import math
import select
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common import command_line, machine, publish, start_server
from unetkit.checkpoint import save_checkpoint
from unetkit.config import Config, PredictConfig, UNetConfig
from unetkit.checkpoint import load_weights
from unetkit.model.unet import UNet
from unetkit.serve.app import served_forward_bytes
from unetkit.serve.limits import MiB, ServeLimits

BOUNDARY = "unetkit-memory-boundary"
SEND_CHUNK = 256 * 1024
MONITOR_EVERY_S = 0.25


def random_checkpoint(path: Path, width: int, depth: int, tile: int) -> Path:
    torch.manual_seed(0)
    model = UNetConfig(in_channels=1, classes=1, depth=depth, base_width=width)
    save_checkpoint(path, Config(model=model, predict=PredictConfig(tile_size=tile)), UNet(model).state_dict())
    return path


def max_size_png(limits: ServeLimits) -> tuple[bytes, int, int]:
    """(PNG bytes, width, height): RGB, as many pixels as --max-pixels and --max-decoded-mb allow
    (Pillow holds RGB in 4 bytes per pixel), a repeated random patch so that it compresses."""
    pixels = min(limits.max_pixels, limits.max_decoded_bytes // 4)
    width = math.isqrt(pixels)
    height = pixels // width
    patch = np.random.default_rng(0).integers(0, 256, (61, 67, 3), dtype=np.uint8)
    image = np.tile(patch, (-(-height // 61), -(-width // 67), 1))[:height, :width]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue(), width, height


def multipart(name: str, data: bytes, content_type: str) -> bytes:
    head = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n").encode()  # fmt: skip
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def post(port: int, path: str, body: bytes, timeout: float) -> dict:
    """POST ``body`` on a fresh connection, a chunk at a time, stopping as soon as the server has
    answered (a 503 comes before the body is read); the status and how much of the body went."""
    started = time.perf_counter()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()  # fmt: skip
    sent = 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
            connection.sendall(head)
            while sent < len(body) and not select.select([connection], [], [], 0)[0]:
                try:
                    connection.sendall(body[sent : sent + SEND_CHUNK])
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += min(SEND_CHUNK, len(body) - sent)
            status = read_status(connection)
    except OSError as error:  # a timeout or a reset without an answer: a failed request
        return {"status": 0, "error": repr(error), "seconds": time.perf_counter() - started, "body_sent": sent / len(body)}
    return {"status": status, "seconds": time.perf_counter() - started, "body_sent": sent / len(body)}


def read_status(connection: socket.socket) -> int:
    """The status of the response on ``connection``, read to its end (the server closes it)."""
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return int(received.split(b" ", 2)[1]) if received.startswith(b"HTTP/1.1 ") else 0


class MemorySampler(threading.Thread):
    """The server's resident memory every few milliseconds; ``peak`` is the largest seen."""

    def __init__(self, pid: int, every_s: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.peak = 0
        self.samples = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, resident_bytes(self.pid))
            self.samples += 1
            time.sleep(self.every_s)


def resident_bytes(pid: int) -> int:
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss
    except ImportError:
        return _proc_status_kib(pid, "VmRSS") * 1024


def kernel_peak_bytes(pid: int) -> int | None:
    """The kernel's record of the process's peak RSS (VmHWM); None without /proc."""
    try:
        return _proc_status_kib(pid, "VmHWM") * 1024
    except OSError:
        return None


def _proc_status_kib(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith(field + ":")))


class HealthMonitor(threading.Thread):
    """GET /health every 0.25 s; the slowest answer and the failures (no answer within the timeout)."""

    def __init__(self, port: int, timeout: float) -> None:
        super().__init__(daemon=True)
        self.port, self.timeout = port, timeout
        self.answers, self.failures, self.slowest_s, self.max_pending = 0, 0, 0.0, 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                connection.request("GET", "/health")
                response = connection.getresponse()
                payload = response.read()
                connection.close()
                if response.status != 200:
                    raise OSError(f"/health answered {response.status}")
                self.answers += 1
                self.max_pending = max(self.max_pending, int(payload.split(b'"pending":')[1].split(b",")[0]))
            except (OSError, http.client.HTTPException, IndexError, ValueError):
                self.failures += 1
            self.slowest_s = max(self.slowest_s, time.perf_counter() - started)
            self.stop.wait(MONITOR_EVERY_S)


def server_flags(args: argparse.Namespace) -> list[str]:
    """The serve flags of a run: the limits under test."""
    return ["--device", "cpu", "--threads", str(args.threads), "--queue", str(args.queue),
            "--max-pixels", str(args.max_pixels), "--max-decoded-mb", str(args.max_decoded_mb),
            "--max-upload-mb", str(args.max_upload_mb), "--max-memory-mb", str(args.max_memory_mb)]  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    defaults = ServeLimits()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="default: a random grey U-Net (--width, --depth, --tile)")
    parser.add_argument("--width", type=int, default=4)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--queue", type=int, default=defaults.max_queue)
    parser.add_argument("--max-pixels", type=int, default=defaults.max_pixels)
    parser.add_argument("--max-decoded-mb", type=int, default=defaults.max_decoded_bytes // MiB)
    parser.add_argument("--max-upload-mb", type=int, default=defaults.max_upload_bytes // MiB)
    parser.add_argument("--max-memory-mb", type=int, default=defaults.max_memory_bytes // MiB)
    parser.add_argument("--output", default="mask", choices=["mask", "rle", "prob", "instances", "outlines", "preview"],
                        help="what the uploads ask for (preview: POST /preview)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2, help="rounds of --clients uploads (does idle memory keep growing?)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the server")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds one upload may take, answer included")
    parser.add_argument("--health-timeout", type=float, default=5.0, help="seconds /health may take to answer")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    limits = ServeLimits(max_upload_bytes=args.max_upload_mb * MiB, max_pixels=args.max_pixels,
                         max_decoded_bytes=args.max_decoded_mb * MiB, max_queue=args.queue,
                         max_memory_bytes=args.max_memory_mb * MiB)  # fmt: skip
    png, width, height = max_size_png(limits)
    body = multipart("max.png", png, "image/png")
    if len(body) > limits.max_upload_bytes:
        raise SystemExit(f"the max-size image is {len(body)} bytes as an upload, over --max-upload-mb {args.max_upload_mb}")
    path = "/preview" if args.output == "preview" else f"/predict?output={args.output}"
    with tempfile.TemporaryDirectory(prefix="unetkit-serve-memory-") as folder:
        folder = Path(folder)
        checkpoint = args.checkpoint or random_checkpoint(folder / "model.pt", args.width, args.depth, args.tile)
        forward = served_forward_bytes([load_weights(checkpoint)[0]], limits)  # one checkpoint
        server, port = start_server(checkpoint, server_flags(args), folder / "server.log")
        try:
            small = multipart("small.png", max_size_png(ServeLimits(max_pixels=64 * 64))[0], "image/png")
            warm_up = post(port, path, small, args.timeout)
            time.sleep(1.0)
            idle = resident_bytes(server.pid)
            sampler, monitor = MemorySampler(server.pid), HealthMonitor(port, args.health_timeout)
            sampler.start(), monitor.start()
            started = time.perf_counter()
            uploads, idle_after = [], []
            for _ in range(args.rounds):
                with ThreadPoolExecutor(args.clients) as pool:
                    uploads += pool.map(lambda _: post(port, path, body, args.timeout), range(args.clients))
                time.sleep(2.0)  # idle again: what the server keeps once the requests are done
                idle_after.append(resident_bytes(server.pid))
            seconds = time.perf_counter() - started
            monitor.stop.set(), sampler.stop.set()
            monitor.join(), sampler.join()
            kernel_peak = kernel_peak_bytes(server.pid)
            alive = server.poll() is None
        finally:
            server.terminate()
            server.wait(timeout=30)
        log = (folder / "server.log").read_text()[-2000:]

    peak = max(sampler.peak, kernel_peak or 0)
    bound = idle + limits.memory_bound(forward)
    statuses = {str(status): sum(upload["status"] == status for upload in uploads) for status in sorted({u["status"] for u in uploads})}
    passed = (alive and warm_up["status"] == 200 and set(statuses) <= {"200", "503"} and statuses.get("200", 0) > 0
              and monitor.failures == 0 and monitor.answers > 0 and peak <= bound)  # fmt: skip
    result = {
        "machine": machine(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "command": command_line(__file__, argv),
        "model": str(args.checkpoint or f"random grey U-Net, width {args.width}, depth {args.depth}, tile {args.tile}"),
        "limits": {"max_upload_bytes": limits.max_upload_bytes, "max_pixels": limits.max_pixels,
                   "max_decoded_bytes": limits.max_decoded_bytes, "max_queue": limits.max_queue,
                   "max_memory_bytes": limits.max_memory_bytes},
        "upload": {"width": width, "height": height, "format": "RGB PNG", "bytes": len(body), "output": args.output},
        "clients": args.clients, "rounds": args.rounds, "statuses": statuses, "seconds": round(seconds, 1),
        "slowest_200_s": round(max((u["seconds"] for u in uploads if u["status"] == 200), default=0.0), 1),
        "slowest_503_s": round(max((u["seconds"] for u in uploads if u["status"] == 503), default=0.0), 2),
        "health": {"answers": monitor.answers, "failures": monitor.failures, "slowest_s": round(monitor.slowest_s, 2),
                   "max_pending": monitor.max_pending},
        "idle_rss_mib": round(idle / MiB, 1), "peak_rss_mib": round(peak / MiB, 1),
        "sampled_peak_rss_mib": round(sampler.peak / MiB, 1), "rss_samples": sampler.samples,
        "kernel_peak_rss_mib": round(kernel_peak / MiB, 1) if kernel_peak else None,
        "idle_rss_after_each_round_mib": [round(rss / MiB, 1) for rss in idle_after],
        "bound_mib": round(bound / MiB, 1),
        "bound": "idle RSS + max_memory_bytes + max_queue x 2 MiB + the model's largest forward pass "
                 f"({forward / MiB:.0f} MiB): src/unetkit/serve/limits.py",
        "server_alive": alive, "passed": passed,
    }  # fmt: skip
    if not passed:
        result["server_log_tail"] = log
    rows = [
        f"{args.rounds} x {args.clients} clients x {width} x {height} RGB PNG ({len(body) / MiB:.1f} MiB) -> {path}, queue {args.queue}",
        f"answers: {statuses} in {seconds:.1f} s; /health {monitor.answers} answers, {monitor.failures} failures, "
        f"slowest {monitor.slowest_s:.2f} s",
        f"RSS: idle {idle / MiB:.0f} MiB, peak {peak / MiB:.0f} MiB (bound {bound / MiB:.0f} MiB), "
        "idle after each round " + ", ".join(f"{rss / MiB:.0f}" for rss in idle_after) + " MiB",
        f"{'PASS' if passed else 'FAIL'} | {machine()}",
    ]
    publish(result, "\n".join(rows), args.json)
    if not passed:
        raise SystemExit(1)
    return result


if __name__ == "__main__":
    main()
