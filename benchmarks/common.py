"""What the benchmarks share: where the data is, the machine, the command to repeat a run,
running `unetkit train` in process, publishing a result (printed table, optional JSON), and timing,
peak FLOP/s and peak memory of a step."""

from __future__ import annotations

import datetime
import http.client
import socket
import subprocess
import json
import os
import platform
import resource
import shlex
import sys
import statistics
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.profiler import ProfilerActivity, profile

from unetkit import cli
from unetkit.atomic import atomic_write_text

# The published samples: $UNETKIT_SAMPLE_DATA, else ../shared/data beside the repository (as the tests).
SHARED_DATA = Path(os.environ.get("UNETKIT_SAMPLE_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


def machine() -> str:
    """The CPU (and GPU), core count and torch build that figures were measured on."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    cpu = models[0] if models else platform.processor() or platform.machine()
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}"


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """How to repeat a benchmark run: ``python benchmarks/<script> <its arguments>``."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["python", f"benchmarks/{Path(script).name}", *arguments])


def publish(result: dict, table: str, json_path: Path | None) -> dict:
    """Print a benchmark's ``table``, write its ``result`` to ``json_path`` when given; returns ``result``,
    stamped first (``stamp``)."""
    print(table)
    stamp(result)
    if json_path:
        atomic_write_text(json_path, json.dumps(result, indent=2) + "\n")
    return result


def stamp(result: dict) -> dict:
    """Add to ``result`` (in place) the ``machine``, the ``torch`` version and the ``date`` (UTC) it
    was measured on, each unless the script recorded it itself. The command is the script's to
    record (``command_line``): every published figure names its JSON, and the JSON these four."""
    result.setdefault("machine", machine())
    result.setdefault("torch", torch.__version__)
    result.setdefault("date", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    return result


def run_train(argv: list[str]) -> float:
    """``unetkit train`` with ``argv`` in this process; returns its wall time in seconds."""
    started = time.perf_counter()
    code = cli.main(["-q", "train", *argv])
    if code != 0:
        raise SystemExit(f"unetkit train {shlex.join(argv)} failed with exit code {code}")
    return time.perf_counter() - started


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(run: Callable[[], object], device: torch.device) -> float:
    synchronize(device)
    started = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - started


def matmul_gflops(device: torch.device, dtype: torch.dtype, size: int, repeats: int) -> dict[str, float]:
    """FLOP/s of ``repeats`` size x size matmuls in ``dtype`` after one warm-up: the best (the
    machine's peak) and the median and worst, which show how busy the machine was."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    rates = sorted(2 * size**3 / seconds(lambda: a @ b, device) / 1e9 for _ in range(repeats))
    return {"best": round(rates[-1], 1), "median": round(statistics.median(rates), 1), "worst": round(rates[0], 1)}


def step_peak_memory_mb(step: Callable[[], None], device: torch.device) -> float:
    """Peak memory ``step`` allocates on top of what was allocated before it, in MiB.

    On a GPU the CUDA allocator's peak; on the CPU the running sum of the profiler's allocation
    events. (Process RSS proved unreliable for this: glibc keeps freed memory, so the same step
    measured anywhere from 900 to 1300 MB depending on what ran before.)
    """
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        step()
    events = [e for e in profiler.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()  # negative for frees
        peak = max(peak, live)
    return peak / 2**20


def process_peak_rss_mb() -> float:
    """The whole process's peak resident memory so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def start_server(checkpoint: Path, flags: list[str], log: Path) -> tuple[subprocess.Popen, int]:
    """``unetkit serve --checkpoint CHECKPOINT FLAGS`` on a free local port, once /health answers;
    the server's output goes to ``log``. Returns (the process, its port)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "unetkit", "serve", "--checkpoint", str(checkpoint), "--port", str(port), *flags]
    server = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and server.poll() is None:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return server, port
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit(f"unetkit serve did not start: {log.read_text()}")
