"""One command, a fixed wall-clock budget: does the plan beat the configuration's defaults?

For each sample dataset, the same training images and the same budget twice:
  planned:  ``unetkit train --data TRAIN --out RUN --time T`` (the default path: plan, budget, tuning)
  defaults: ``unetkit train --data TRAIN --out RUN --time T --no-plan`` (the config's defaults, within
            the same budget; its ``raw`` figures, without the post-processing chosen on validation,
            are what unetkit did before plans)
(side by side, one core each, so that the machine's load hits both alike; ``--one-by-one`` for
all cores each; ``--arms planned`` for one arm), then ``unetkit evaluate`` of each best.pt (every command a process of its own) on held-out images that neither run saw:
  isbi2012: train on slices 0-24 (the trainer validates on 20 % of them), evaluate slices 25-29;
  carvana:  train on the first car's views 1-13, validate on its views 14-16, evaluate the other car
            (split by car: the views of one car are near duplicates);
  dsb2018:  48 images train (20 % of them validate), 12 other images evaluate (split by image,
            seed 0); the object figures (DSB score, AP, F1, PQ, AJI, SEG) as well;
  blobs:    48 generated 256 px images of touching blobs train, 12 others evaluate; objects too.
Arms: ``--arms planned foreground-only`` compares the plan with and without instance maps (issue 18).

    PYTHONPATH=src python benchmarks/budget.py --time 10m --json benchmarks/results/budget-10m.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
from common import SHARED_DATA, command_line, machine, publish
from isbi2012 import split_folders

from unetkit import tables
from unetkit.checkpoint import load_checkpoint
from unetkit.config import parse_duration
from unetkit.data.synthetic import generate_dataset

# The defaults get the one flag today's defaults need on images of different sizes (DSB-2018) or
# of 2 megapixels (Carvana): training patches.
ARMS = {"planned": [], "defaults": ["--no-plan", "--patch-size", "256"],
        "foreground-only": ["--instance-target", "none"]}  # the plan without instance maps (objects: issue 18)
OBJECT_KEYS = ("dsb_score", "ap_50", "precision_50", "recall_50", "f1_50", "pq", "aji", "seg")
BLOB_SIZE, BLOB_TRAIN, BLOB_TEST = 256, 48, 12
DSB_TEST_IMAGES = 12


def isbi2012(data: Path, work: Path) -> tuple[list[str], Path]:
    folders = split_folders(data, work, {"train": range(25), "test": range(25, 30)})
    return ["--data", str(folders["train"])], folders["test"]


def carvana(data: Path, work: Path) -> tuple[list[str], Path]:
    views, test = carvana_cars(data)
    parts = {"train": views[:13], "val": views[13:], "test": test}
    folders = {name: link_carvana(data, chosen, work / f"carvana-{name}") for name, chosen in parts.items()}
    return ["--data", str(folders["train"]), "--val-data", str(folders["val"])], folders["test"]


def carvana_cars(data: Path) -> tuple[list[Path], list[Path]]:
    """The views of the first car and those of the second (a car's views are near duplicates)."""
    images = sorted((data / "train").glob("*.jpg"))
    cars = sorted({image.stem.rsplit("_", 1)[0] for image in images})
    return tuple([image for image in images if image.stem.startswith(car)] for car in cars[:2])


def link_carvana(data: Path, images: list[Path], root: Path) -> Path:
    for folder in ("train", "train_masks"):
        (root / folder).mkdir(parents=True)
    for image in images:
        (root / "train" / image.name).symlink_to(image.resolve())
        mask = data / "train_masks" / f"{image.stem}_mask.gif"
        (root / "train_masks" / mask.name).symlink_to(mask.resolve())
    return root


def dsb2018(data: Path, work: Path) -> tuple[list[str], Path]:
    samples = sorted(path for path in (data / "stage1_train").iterdir() if path.is_dir())
    order = np.random.default_rng(0).permutation(len(samples))
    test = {samples[index] for index in order[:DSB_TEST_IMAGES]}
    folders = {}
    for name, chosen in (("train", [s for s in samples if s not in test]), ("test", sorted(test))):
        root = work / f"dsb2018-{name}" / "stage1_train"
        root.mkdir(parents=True)
        for sample in chosen:
            (root / sample.name).symlink_to(sample.resolve())
        folders[name] = root.parent
    return ["--data", str(folders["train"])], folders["test"]


def blobs(data: Path, work: Path) -> tuple[list[str], Path]:
    """Generated touching blobs (the demo's), whose objects are known exactly; ``data`` is unused."""
    train = generate_dataset(work / "blobs-train", BLOB_TRAIN, BLOB_SIZE, seed=0)
    return ["--data", str(train)], generate_dataset(work / "blobs-test", BLOB_TEST, BLOB_SIZE, seed=1000)


DATASETS: dict[str, Callable[[Path, Path], tuple[list[str], Path]]] = {
    "isbi2012": isbi2012, "carvana": carvana, "dsb2018": dsb2018, "blobs": blobs,
}
INSTANCE_DATASETS = ("dsb2018", "blobs")


def evaluate(run: Path, test: Path, instances: bool) -> dict:
    report_path = run / "test.json"
    command = [sys.executable, "-m", "unetkit", "-q", "evaluate", "--checkpoint", str(run / "best.pt"),
               "--data", str(test), "--json", str(report_path), *(["--instances"] if instances else [])]
    run_command(command, os.environ)
    return json.loads(report_path.read_text())


def train_arms(name: str, data_flags: list[str], args: argparse.Namespace, out: Path) -> dict[str, float]:
    """Both arms' ``unetkit train``, side by side on one core each (or one after the other on all
    cores with ``--one-by-one``); returns each arm's wall seconds."""
    commands = {arm: [sys.executable, "-m", "unetkit", "-q", "train", *data_flags, "--out", str(out / f"{name}-{arm}"),
                      "--time", args.time, "--device", args.device, *ARMS[arm]] for arm in args.arms}  # fmt: skip
    if args.one_by_one:
        return {arm: run_command(command, os.environ) for arm, command in commands.items()}
    single = {**os.environ, "OMP_NUM_THREADS": "1"}
    with ThreadPoolExecutor(len(commands)) as pool:
        futures = {arm: pool.submit(run_command, [*command, "--threads", "1"], single) for arm, command in commands.items()}
        return {arm: future.result() for arm, future in futures.items()}


def run_command(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    finished = subprocess.run(command, env=env, capture_output=True, text=True)
    if finished.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed ({finished.returncode}): {finished.stderr[-2000:]}")
    return time.perf_counter() - started


def arm_row(name: str, arm: str, seconds: float, test: Path, args: argparse.Namespace, out: Path) -> dict:
    run = out / f"{name}-{arm}"
    report = evaluate(run, test, instances=name in INSTANCE_DATASETS)
    config = load_checkpoint(run / "best.pt")["config"]
    last = load_checkpoint(run / "last.pt")
    raw = report.get("raw", {})
    return {
        "dataset": name, "arm": arm, "dice": report["dice"], "iou": report["iou"],
        "dsb_score": report.get("dsb_score"), "raw_dice": raw.get("dice", report["dice"]),
        "raw_dsb_score": raw.get("dsb_score"), "wall_seconds": round(seconds, 1),
        "budget_seconds": parse_duration(args.time), "steps": last["step"],
        "base_width": config.model.base_width, "patch_size": config.data.patch_size,
        "image_size": config.data.image_size, "norm": config.model.norm, "memory_layout": config.train.layout_chosen,
        "instance_target": config.model.instance_target, "weight_map": config.data.weight_map,
        "test_images": len(report["images"]),
        "objects": {key: report[key] for key in OBJECT_KEYS if key in report} | {"pooled": report.get("pooled")},
        "raw_objects": {key: raw[key] for key in OBJECT_KEYS if key in raw},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=list(DATASETS))
    parser.add_argument("--time", default="10m", help="the budget of each run")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--one-by-one", action="store_true", help="the arms one after the other, on every core")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=["planned", "defaults"], help="which arms to run")
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        out = args.out or work / "runs"
        for name in args.datasets:
            data_flags, test = DATASETS[name](args.data / name, work / name)
            seconds = train_arms(name, data_flags, args, out)  # together: a busy spell hits both arms
            for arm in args.arms:
                rows.append(arm_row(name, arm, seconds[arm], test, args, out))
                print(json.dumps(rows[-1]), flush=True)
    result = {"machine": machine(), "command": command_line(__file__, argv), "rows": rows}
    columns = ["dataset", "arm", "dice", "iou", "dsb_score", "raw_dice", "raw_dsb_score", "wall_seconds", "steps",
               "base_width", "patch_size", "image_size", "instance_target", "weight_map"]
    table = tables.format_table(columns, [[_shown(row[c]) for c in columns] for row in rows])
    return publish(result, f"{result['command']}\n{result['machine']}\n{table}", args.json)


def _shown(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if value < 10 else f"{value:.0f}"
    return "-" if value is None else str(value)


if __name__ == "__main__":
    main()
