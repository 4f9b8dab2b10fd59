"""How `unetkit demo` and `unetkit train` share the CPU: wall time idle, beside a second torch job
that uses the whole machine, and beside pure-Python busy loops (one per core).

Each foreground run is a fresh process; the background starts a moment before it and stops when it
ends (and by itself after ``--background-seconds`` in any case). Settings of the foreground:

- ``spin``: torch is imported before unetkit's CLI runs, so OpenMP keeps its default spin-waiting
  and torch its default threads (one per core): unetkit as it was before it set the CPU up;
- ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` (OpenMP threads sleep at barriers);
- ``free-cores``: spin-waiting, ``--threads`` = the cores found free just before the start;
- ``passive+free-cores``: both;
- ``shipped``: ``python -m unetkit`` with no environment set, as a user runs it.

The background torch job is what a second training or ``predict`` would be: a convolution loop
with torch's default threads and wait policy. Runs interleave (round by round, every background,
every setting), so drifting load from other work touches all settings alike; the table gives the
median seconds per setting and background, and the ratio busy / idle.

    PYTHONPATH=src python benchmarks/contention.py --workload demo --rounds 2 --json contention.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from common import command_line, machine, publish

from unetkit import tables
from unetkit.cli.cpu import MIN_SAMPLE_SECONDS, WAIT_POLICY, cores_busy_elsewhere, sample_cpu, threads_beside, usable_cores
from unetkit.data.synthetic import generate_dataset

SETTINGS = ("spin", "passive", "free-cores", "passive+free-cores", "shipped")
BACKGROUNDS = ("idle", "torch-job", "python-loops")
TORCH_JOB = """
import sys, time, torch
deadline = time.time() + float(sys.argv[1])
conv = torch.nn.Conv2d(32, 32, 3, padding=1)
images = torch.randn(4, 32, 128, 128)
while time.time() < deadline:
    conv(images).sum().backward()
"""
PYTHON_LOOP = "import sys, time\ndeadline = time.time() + float(sys.argv[1])\nwhile time.time() < deadline: pass\n"
# unetkit's CLI with torch already loaded: the OpenMP environment it would set comes too late.
TORCH_FIRST = "import sys, torch\nfrom unetkit.cli import main\nsys.exit(main(sys.argv[1:]))\n"


def background(kind: str, seconds: float) -> list[subprocess.Popen]:
    """The competing processes, bounded in time; none when idle."""
    if kind == "idle":
        return []
    if kind == "torch-job":
        return [subprocess.Popen([sys.executable, "-c", TORCH_JOB, str(seconds)], env=_clean_env())]
    return [subprocess.Popen([sys.executable, "-c", PYTHON_LOOP, str(seconds)]) for _ in range(os.cpu_count() or 1)]


def free_cores(sample_seconds: float = MIN_SAMPLE_SECONDS) -> int:
    """Cores of this process's CPU set not busy with other work, over ``sample_seconds`` (>= 1)."""
    cores = usable_cores()
    before = sample_cpu()
    time.sleep(sample_seconds)
    after = sample_cpu()
    busy = cores_busy_elsewhere(before, after, os.cpu_count() or cores) if before and after else None
    return threads_beside(busy or 0.0, cores, cores)


def foreground(setting: str, unetkit_args: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command and environment of one foreground run under ``setting``."""
    env = _clean_env()
    threads = ["--threads", str(free_cores())] if "free-cores" in setting else []
    if "passive" in setting:
        env[WAIT_POLICY] = "PASSIVE"
    launcher = ["-m", "unetkit"] if setting in ("shipped", "passive") else ["-c", TORCH_FIRST]
    command, *rest = unetkit_args
    return [sys.executable, *launcher, "-q", command, *threads, *rest], env


def _clean_env() -> dict[str, str]:
    """This environment without OpenMP or thread settings, so each setting states its own."""
    drop = {WAIT_POLICY, "OMP_NUM_THREADS", "MKL_NUM_THREADS", "GOMP_SPINCOUNT"}
    return {name: value for name, value in os.environ.items() if name not in drop}


def timed_run(setting: str, kind: str, unetkit_args: list[str], background_seconds: float) -> dict:
    load_before = os.getloadavg()[0]
    competitors = background(kind, background_seconds)
    time.sleep(1.0 if competitors else 0.0)  # the background in full swing first
    command, env = foreground(setting, unetkit_args)
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    for process in competitors:
        process.terminate()
        process.wait()
    return {"setting": setting, "background": kind, "seconds": round(seconds, 2),
            "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}  # fmt: skip


def workload_args(workload: str, work: Path, epochs: int) -> list[str]:
    """``unetkit`` arguments of one run (default settings but the epochs); a new output folder each time."""
    out = tempfile.mkdtemp(dir=work)
    if workload == "demo":
        return ["demo", "--out", out, "--epochs", str(epochs)]
    data = work / "data"
    if not data.exists():
        generate_dataset(data, 64, 128, seed=0)
    return ["train", "--data", str(data), "--out", out, "--epochs", str(epochs)]


def summarize(runs: list[dict], settings: Sequence[str], backgrounds: Sequence[str]) -> list[dict]:
    rows = []
    for setting in settings:
        median = {kind: statistics.median(r["seconds"] for r in runs if (r["setting"], r["background"]) == (setting, kind))
                  for kind in backgrounds}  # fmt: skip
        row = {"setting": setting, **{f"{kind}_s": round(seconds, 1) for kind, seconds in median.items()}}
        row.update({f"{kind}_ratio": round(median[kind] / median["idle"], 2) for kind in backgrounds if kind != "idle"})
        rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    backgrounds = ["idle", *[kind for kind in BACKGROUNDS if kind in args.backgrounds and kind != "idle"]]
    runs = []
    with tempfile.TemporaryDirectory(prefix="contention-") as temporary:
        os.environ["UNETKIT_CACHE_DIR"] = str(Path(temporary) / "cache")  # the precision probe runs once, untimed:
        timed_run("shipped", "idle", workload_args(args.workload, Path(temporary), args.epochs), 0)
        for _ in range(args.rounds):
            for kind in backgrounds:
                for setting in args.settings:
                    arguments = workload_args(args.workload, Path(temporary), args.epochs)
                    runs.append(timed_run(setting, kind, arguments, args.background_seconds))
                    print(runs[-1], file=sys.stderr, flush=True)
    rows = summarize(runs, args.settings, backgrounds)
    headers = list(rows[0])
    table = tables.format_table(headers, [[str(row[h]) for h in headers] for row in rows])
    result = {"command": command_line(__file__, argv), "machine": machine(), "workload": args.workload,
              "epochs": args.epochs, "rows": rows, "runs": runs}  # fmt: skip
    return publish(result, f"{table}\n{result['machine']}; {args.workload}, {args.epochs} epochs", args.json)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=["demo", "train"], default="demo")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each run (the demo's own is 12)")
    parser.add_argument("--rounds", type=int, default=2, help="repetitions of every setting and background")
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument("--backgrounds", nargs="+", choices=BACKGROUNDS, default=list(BACKGROUNDS))
    parser.add_argument("--background-seconds", type=float, default=900, help="the background stops by itself after this")
    parser.add_argument("--json", type=Path)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()
