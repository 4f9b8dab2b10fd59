"""Does keeping freed memory in the heap pay? ``unetkit predict`` and ``unetkit train`` as shipped
(the CLI sets glibc's malloc to keep freed blocks: ``cli/cpu.py``) against glibc's defaults
(``MALLOC_MMAP_MAX_=65536``: every block over 32 MB is mapped on allocation and unmapped when
freed, so its pages are faulted in again by the next forward pass).

Interleaved pairs (the order alternating), per CPU class (masked as in ``throughput.py``); every
command is a fresh process, timed with its own user and system CPU seconds and peak RSS
(``os.wait4``). ``predict`` runs a model trained untimed (base width 32, 128 px images) on
``--predict-images`` generated images of ``--predict-size`` px in 512 px tiles; ``train`` runs
``--train-steps`` steps on 256 px patches of 512 px images, batch 4.

    PYTHONPATH=src python benchmarks/allocator.py --pairs 3 --json allocator.json
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

from common import command_line, machine, publish
from throughput import CPU_CLASSES

from unetkit import tables
from unetkit.data.synthetic import generate_dataset

ARMS = {"shipped": {}, "glibc default": {"MALLOC_MMAP_MAX_": "65536"}}
UNETKIT = [sys.executable, "-m", "unetkit", "-q"]


def measured(command: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall, user and system seconds and peak RSS (MiB) of one command."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{' '.join(command)} failed: {process.stderr.read().decode()[-2000:]}")
    return {"wall_s": wall, "user_s": usage.ru_utime, "sys_s": usage.ru_stime, "peak_rss_mib": usage.ru_maxrss / 1024}


def workloads(work: Path, args: argparse.Namespace) -> dict[str, list[str]]:
    small = generate_dataset(work / "small", 24, 128, seed=0)
    big = generate_dataset(work / "big", args.predict_images, args.predict_size, seed=1)
    patches = generate_dataset(work / "patches", 16, 512, seed=2)
    model = work / "model"
    subprocess.run([*UNETKIT, "train", "--data", str(small), "--out", str(model), "--no-plan", "--epochs", "3",
                    "--base-width", "32", "--workers", "0"], check=True)  # fmt: skip
    return {
        "predict": ["predict", "--checkpoint", str(model / "best.pt"), str(big / "images"), "--out", str(work / "masks")],
        "train": ["train", "--data", str(patches), "--out", str(work / "run"), "--no-plan", "--steps",
                  str(args.train_steps), "--patch-size", "256", "--batch-size", "4", "--base-width", "32",
                  "--workers", "0", "--val-every", "1000"],  # fmt: skip
    }


def one_class(cpu_class: str, args: argparse.Namespace, work: Path) -> list[dict]:
    mask = CPU_CLASSES[cpu_class]
    env = {name: value for name, value in os.environ.items() if not name.startswith("MALLOC_")}
    env.update(mask, UNETKIT_CACHE_DIR=str(work / f"cache-{cpu_class}"))
    commands = workloads(work / cpu_class, args)
    runs: dict[tuple[str, str], list[dict]] = {(task, arm): [] for task in commands for arm in ARMS}
    for pair in range(args.pairs):
        for task, command in commands.items():
            for arm in ARMS if pair % 2 == 0 else reversed(ARMS):
                runs[task, arm].append(measured([*UNETKIT, *command], {**env, **ARMS[arm]}))
    rows = []
    for (task, arm), results in runs.items():
        medians = {key: round(statistics.median(r[key] for r in results), 2) for key in results[0]}
        rows.append({"cpu_class": cpu_class, "task": task, "arm": arm, **medians,
                     "wall_s_all": [round(r["wall_s"], 2) for r in results]})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--cpu-class", nargs="+", choices=list(CPU_CLASSES), default=["native", "avx512-bf16"])
    parser.add_argument("--predict-images", type=int, default=6)
    parser.add_argument("--predict-size", type=int, default=768)
    parser.add_argument("--train-steps", type=int, default=12)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as temporary:
        rows = [row for cpu_class in args.cpu_class for row in one_class(cpu_class, args, Path(temporary))]
    for row in rows:
        shipped = next(r for r in rows if (r["cpu_class"], r["task"], r["arm"]) == (row["cpu_class"], row["task"], "shipped"))
        row["wall_vs_shipped"] = round(row["wall_s"] / shipped["wall_s"], 3)
    result = {"machine": machine(), "command": command_line(__file__, argv), "load_avg": os.getloadavg(), "rows": rows}
    columns = ["cpu_class", "task", "arm", "wall_s", "wall_vs_shipped", "user_s", "sys_s", "peak_rss_mib"]
    table = tables.format_table(columns, [[str(row[c]) for c in columns] for row in rows])
    return publish(result, f"{result['command']}\n{result['machine']}\n{table}", args.json)


if __name__ == "__main__":
    main()
