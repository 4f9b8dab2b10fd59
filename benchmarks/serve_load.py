"""Load and faults of `unetkit serve` on loopback: concurrent clients against one by one, against
`unetkit predict`'s code path in one process, then malformed uploads.

    PYTHONPATH=src python benchmarks/serve_load.py [--checkpoint CKPT] [--clients 8] [--requests 10]

Starts `unetkit serve` as a separate process on a free 127.0.0.1 port (a random small U-Net when no
checkpoint is given), posts generated images from N client threads (each on its own keep-alive
connection; every request bounded by --timeout, the whole phase by --max-seconds) and reports
requests/s, p50/p95 latency and the server's peak memory (VmHWM). Batching must make the
concurrent clients at least 1.5x the throughput of the same requests one by one; every request
must succeed; each malformed upload must get a 4xx and leave the server serving.
"""

from __future__ import annotations

import argparse
import http.client
import os
import struct
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from common import command_line, machine, publish, start_server
from unetkit.checkpoint import save_checkpoint
from unetkit.config import Config, PredictConfig, UNetConfig
from unetkit.data.synthetic import generate_dataset
from unetkit.inference.outputs import OutputOptions, collect_images, predict_files
from unetkit.inference.predictor import Predictor
from unetkit.model.unet import UNet

REQUIRED_SPEEDUP = 1.5
BOUNDARY = "unetkit-load-boundary"


def random_checkpoint(path: Path, width: int, depth: int) -> Path:
    """A U-Net like the demo's (random weights: the speed is what is measured)."""
    torch.manual_seed(0)
    model = UNetConfig(in_channels=1, classes=1, depth=depth, base_width=width)
    save_checkpoint(path, Config(model=model, predict=PredictConfig(tile_size=256)), UNet(model).state_dict())
    return path


def multipart(name: str, data: bytes, content_type: str) -> bytes:
    head = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n").encode()  # fmt: skip
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


class Client:
    """One keep-alive connection posting to /predict."""

    def __init__(self, port: int, timeout: float) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def post(self, body: bytes) -> tuple[int, float]:
        started = time.perf_counter()
        self.connection.request("POST", "/predict?output=mask", body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        response = self.connection.getresponse()
        response.read()
        return response.status, time.perf_counter() - started


def load_phase(port: int, bodies: list[bytes], clients: int, requests: int, timeout: float, max_seconds: float) -> dict:
    """``clients`` threads, each posting ``requests`` images one after another (or until max_seconds)."""
    deadline = time.perf_counter() + max_seconds

    def client_loop(index: int) -> list[tuple[int, float]]:
        client = Client(port, timeout)
        results = []
        for request in range(requests):
            if time.perf_counter() > deadline:
                break
            try:
                results.append(client.post(bodies[(index * requests + request) % len(bodies)]))
            except OSError:  # a timeout or a dropped connection is a failed request
                results.append((0, timeout))
        return results

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [result for client in pool.map(client_loop, range(clients)) for result in client]
    seconds = time.perf_counter() - started
    latencies = np.array([latency for _, latency in results]) * 1000
    return {
        "clients": clients,
        "requests": len(results),
        "failed": sum(status != 200 for status, _ in results),
        "requests_per_s": len(results) / seconds,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p95_ms": float(np.percentile(latencies, 95)),
    }


def predict_in_process(predictor: Predictor, images: list[Path], out: Path) -> float:
    """Images/s through `unetkit predict`'s code path (predict_files) in this process."""
    started = time.perf_counter()
    predict_files(predictor, images, out, OutputOptions(), progress=False)
    return len(images) / (time.perf_counter() - started)


def measure_round(args: argparse.Namespace, port: int, bodies: list[bytes], predictor: Predictor, images: list[Path], out: Path) -> dict:
    """One round: the same requests one by one, then from concurrent clients, then the images through predict."""
    total = args.clients * args.requests
    one_by_one = load_phase(port, bodies, 1, total, args.timeout, args.max_seconds)
    concurrent = load_phase(port, bodies, args.clients, args.requests, args.timeout, args.max_seconds)
    predict_rate = predict_in_process(predictor, (images * total)[:total], out)
    return {"one_by_one": one_by_one, "concurrent": concurrent, "predict_images_per_s": predict_rate,
            "speedup": concurrent["requests_per_s"] / one_by_one["requests_per_s"]}  # fmt: skip


def malformed_uploads(valid_png: bytes) -> dict[str, tuple[bytes, str]]:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 200_000, 200_000, 8, 0, 0, 0, 0))
    bomb += chunk(b"IDAT", zlib.compress(b"\0" * 2**16)) + chunk(b"IEND", b"")
    return {
        "truncated PNG": (multipart("x.png", valid_png[: len(valid_png) // 2], "image/png"), "multipart"),
        "text file": (multipart("x.txt", b"just some text\n" * 10, "text/plain"), "multipart"),
        "decompression bomb (200000 x 200000 PNG header)": (multipart("bomb.png", bomb, "image/png"), "multipart"),
        "0-byte body": (b"", "multipart"),
        "wrong content type (raw PNG as application/json)": (valid_png, "application/json"),
    }


def fault_phase(port: int, valid_png: bytes, timeout: float) -> dict:
    results = {}
    for name, (body, kind) in malformed_uploads(valid_png).items():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        content_type = f"multipart/form-data; boundary={BOUNDARY}" if kind == "multipart" else kind
        connection.request("POST", "/predict", body, {"Content-Type": content_type})
        response = connection.getresponse()
        detail = response.read()[:120].decode(errors="replace")
        still_serving = Client(port, timeout).post(multipart("ok.png", valid_png, "image/png"))[0] == 200
        results[name] = {"status": response.status, "detail": detail, "still_serving": still_serving}
    return results


def peak_memory_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024


def server_flags(args: argparse.Namespace) -> list[str]:
    """The serve flags of a run."""
    return ["--device", "cpu", "--threads", str(args.threads), "--queue", str(args.queue), "--precision", args.precision]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="default: a random U-Net (--width, --depth)")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--size", type=int, default=128, help="side of the generated images")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=4, help="per client and round")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server and of predict (1: a shared CPU)")
    parser.add_argument("--queue", type=int, default=16)
    parser.add_argument("--precision", default="auto", choices=["auto", "32", "bf16"], help="of the server and of predict")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds one request may take")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="seconds one load phase may take")
    parser.add_argument("--rounds", type=int, default=11, help="interleaved rounds; the median is reported")
    parser.add_argument("--min-speedup", type=float, default=REQUIRED_SPEEDUP, help="concurrent / one by one to pass")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="unetkit-serve-load-") as folder:
        folder = Path(folder)
        checkpoint = args.checkpoint or random_checkpoint(folder / "model.pt", args.width, args.depth)
        images = collect_images([generate_dataset(folder / "data", args.images, args.size, seed=0) / "images"])
        bodies = [multipart(path.name, path.read_bytes(), "image/png") for path in images]
        predictor = Predictor.from_checkpoint(checkpoint, device="cpu", precision=args.precision)
        predict_in_process(predictor, images[:2], folder / "masks")  # warm-up
        server, port = start_server(checkpoint, server_flags(args), folder / "server.log")
        try:
            load_phase(port, bodies, 1, 2, args.timeout, args.max_seconds)  # warm-up
            rounds = [measure_round(args, port, bodies, predictor, images, folder / "masks") for _ in range(args.rounds)]
            faults = fault_phase(port, images[0].read_bytes(), args.timeout)
            peak = peak_memory_mib(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)

    # Rounds interleave the phases, so a busy spell of a shared machine hits them alike; the median round is shown.
    median = sorted(rounds, key=lambda round_: round_["speedup"])[len(rounds) // 2]
    one_by_one, concurrent, predict_rate, speedup = (median[key] for key in ("one_by_one", "concurrent", "predict_images_per_s", "speedup"))
    failed = sum(round_[phase]["failed"] for round_ in rounds for phase in ("one_by_one", "concurrent"))
    load = os.getloadavg()[0]
    passed = speedup >= args.min_speedup and not failed
    passed &= all(400 <= fault["status"] < 500 and fault["still_serving"] for fault in faults.values())
    result = {
        "machine": machine(), "load_average_1min": load, "command": command_line(__file__, argv),
        "model": str(args.checkpoint or f"random U-Net, width {args.width}, depth {args.depth}"),
        "image_size": args.size, "precision": args.precision, "rounds": rounds, "median_speedup": speedup, "failed_requests": failed,
        "server_peak_mib": peak, "faults": faults, "passed": passed,
    }  # fmt: skip
    rows = [f"{'phase':<34} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'failed':>6}"]
    for name, phase in (("1 client, one by one", one_by_one), (f"{args.clients} concurrent clients", concurrent)):
        rows.append(f"{name:<34} {phase['requests_per_s']:>7.1f} {phase['p50_ms']:>8.1f} {phase['p95_ms']:>8.1f} {phase['failed']:>6}")
    rows.append(f"{'predict in one process (images/s)':<34} {predict_rate:>7.1f}")
    speedups = ", ".join(f"{round_['speedup']:.2f}" for round_ in rounds)
    rows.append(f"concurrent / one by one: {speedup:.2f}x (median of rounds {speedups}; required {args.min_speedup}x)")
    rows.append(f"failed requests: {failed}; server peak memory {peak:.0f} MiB")
    rows += [f"fault: {name}: {fault['status']}, still serving: {fault['still_serving']}" for name, fault in faults.items()]
    rows.append(f"{'PASS' if passed else 'FAIL'} | {machine()} | load average {load:.1f}")
    publish(result, "\n".join(rows), args.json)
    if not passed:
        raise SystemExit(1)
    return result


if __name__ == "__main__":
    main()
