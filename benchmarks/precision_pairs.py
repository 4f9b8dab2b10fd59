"""Is the default precision ever slower than float32? ``unetkit train`` and ``unetkit predict`` with no
precision flag against ``--precision 32``, in interleaved pairs (the order alternating), per CPU
class (this CPU as it is, and with oneDNN capped below AMX or below bfloat16 units).

``predict`` runs on larger generated images (``--predict-size``, 768 px as the issue measured),
so that the comparison is of the network's work rather than of the process's start-up (the model
trains at the data's own 128 px, so ``predict`` tiles the big images rather than resizing them).

Every command is a fresh process with a fresh precision cache, so ``auto`` measures each time
(as a new user's first run would); ``--warm-cache`` keeps one cache per class, so only the first
run measures (every later run, as a user's). Reported per class: the median wall time of each, their ratio
(default / float32: at most 1.05 is the target), and what ``auto`` chose and why.

    PYTHONPATH=src python benchmarks/precision_pairs.py --pairs 3 --json precision-pairs.json
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
from unetkit.config import Config
from unetkit.data.synthetic import generate_dataset

ARMS = {"default": [], "float32": ["--precision", "32"]}


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    finished = subprocess.run(command, env=env, capture_output=True, text=True)
    if finished.returncode:
        raise SystemExit(f"{' '.join(command)} failed: {finished.stderr[-2000:]}")
    return time.perf_counter() - started


def one_class(name: str, args: argparse.Namespace, work: Path) -> dict:
    mask = CPU_CLASSES[name]
    seconds: dict[str, dict[str, list[float]]] = {arm: {"train": [], "predict": []} for arm in ARMS}
    chosen = ""
    for pair in range(args.pairs):
        arms = list(ARMS) if pair % 2 == 0 else list(reversed(ARMS))
        for arm in arms:
            cache = work / (f"cache-{name}" if args.warm_cache else f"cache-{name}-{pair}-{arm}")
            env = {**os.environ, **mask, "UNETKIT_CACHE_DIR": str(cache)}
            run = work / f"{name}-{pair}-{arm}"
            unetkit = [sys.executable, "-m", "unetkit", "-q"]
            seconds[arm]["train"].append(timed([*unetkit, "train", "--data", str(args.data), "--out", str(run),
                                                "--no-plan", "--epochs", str(args.epochs), "--base-width",
                                                str(args.base_width), "--workers", "0",
                                                *ARMS[arm]], env))  # fmt: skip
            seconds[arm]["predict"].append(timed([*unetkit, "predict", "--checkpoint", str(run / "best.pt"),
                                                  str(args.predict_images), "--out", str(run / "masks"),
                                                  *ARMS[arm]], env))  # fmt: skip
            if arm == "default":
                chosen = Config.load(run / "config.yaml").train.precision_chosen
    seconds_rounded = {arm: {task: [round(s, 2) for s in times] for task, times in tasks.items()} for arm, tasks in seconds.items()}
    medians = {arm: {task: statistics.median(times) for task, times in tasks.items()} for arm, tasks in seconds.items()}
    return {
        "class": name, "auto_chose": chosen, "seconds": seconds_rounded,
        **{f"{task}_default_s": round(medians["default"][task], 2) for task in ("train", "predict")},
        **{f"{task}_float32_s": round(medians["float32"][task], 2) for task in ("train", "predict")},
        **{f"{task}_ratio": round(medians["default"][task] / medians["float32"][task], 3) for task in ("train", "predict")},
        # Robust to load that drifts during the run: each pair ran back to back.
        **{f"{task}_pair_ratio": round(statistics.median(d / f for d, f in zip(seconds["default"][task], seconds["float32"][task])), 3)
           for task in ("train", "predict")},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--cpu-class", nargs="+", choices=list(CPU_CLASSES), default=["native", "avx512-bf16"],
                        help="CPU classes, masked as in throughput.py (avx512-bf16: no AMX)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--base-width", type=int, default=32)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--predict-images", type=int, default=6)
    parser.add_argument("--predict-size", type=int, default=768)
    parser.add_argument("--warm-cache", action="store_true",
                        help="one precision cache per class: auto measures once, later runs read it (a user's second run)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        args.data = generate_dataset(work / "data", args.images, 128, seed=0)
        args.predict_images = generate_dataset(work / "big", args.predict_images, args.predict_size, seed=1) / "images"
        rows = [one_class(name, args, work) for name in args.cpu_class]
    result = {"machine": machine(), "command": command_line(__file__, argv), "rows": rows}
    columns = ["class", "train_ratio", "predict_ratio", "train_pair_ratio", "predict_pair_ratio", "train_default_s", "train_float32_s", "predict_default_s",
               "predict_float32_s", "auto_chose"]
    table = tables.format_table(columns, [[row[c] for c in columns] for row in rows])
    return publish(result, f"{result['command']}\n{result['machine']}\n{table}", args.json)


if __name__ == "__main__":
    main()
