"""Does the reduced-precision default cost accuracy? Validation Dice of `--precision auto` (bfloat16
autocast where the hardware has it) against `--precision 32`, same seed, data and epochs.

Each dataset trains twice through ``unetkit train`` in this process, once per precision, with the
same flags: images resized to ``--image-size``, a `same`-padding U-Net of ``--base-width``, the
default loss and optimizer. Validation runs in the same precision as training (the default path
end to end) on full-resolution images. Reported per dataset: the last epoch's validation Dice of
each run and auto - 32 (the target: within 0.005).

- isbi2012: slices 0-19 train, 20-24 validate (benchmarks/isbi2012.py's split), membranes the class.
- carvana: the layout's split by car (one car trains, the other validates).

    PYTHONPATH=src python benchmarks/precision_accuracy.py --epochs 8   # JSON: benchmarks/results/precision_accuracy.json

Other ``unetkit train`` flags pass through and override the dataset settings (e.g. ``--lr 3e-3``).
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path
from typing import Sequence

import yaml
from common import SHARED_DATA, command_line, machine, publish, run_train
from isbi2012 import TRAIN_SLICES, VAL_SLICES, split_folders

from unetkit import tables

PRECISIONS = ("auto", "32")
TARGET = 0.005
RESULTS = Path(__file__).resolve().parent / "results"


def dataset_flags(name: str, data: Path, work: Path) -> list[str]:
    """``unetkit train`` data flags of one benchmark dataset."""
    if name == "isbi2012":
        folders = split_folders(data / name, work, {"train": TRAIN_SLICES, "val": VAL_SLICES})
        return ["--data", str(folders["train"]), "--val-data", str(folders["val"]), "--layout", "isbi2012"]
    return ["--data", str(data / name), "--layout", name]


def last_val_dice(run: Path) -> float:
    with open(run / "metrics.csv", newline="") as handle:
        return float(list(csv.DictReader(handle))[-1]["val_dice"])


def chosen_precision(run: Path) -> str:
    """What the run trained in and why (auto times the run's own step)."""
    return str(yaml.safe_load((run / "config.yaml").read_text())["train"]["precision_chosen"])


def compare(name: str, args: argparse.Namespace, extra_flags: list[str], work: Path) -> dict:
    """Train ``name`` once per precision; the Dice of each and their difference."""
    common = [
        *dataset_flags(name, args.data, work), "--image-size", str(args.image_size), "--padding", "same",
        "--base-width", str(args.base_width), "--epochs", str(args.epochs), "--seed", str(args.seed),
        "--workers", str(args.workers), "--cache", "ram", "--device", args.device, "--no-plan", *extra_flags,
    ]
    row: dict = {"dataset": name}
    for precision in PRECISIONS:
        run = work / f"{name}-{precision}"
        row[f"seconds_{precision}"] = round(run_train([*common, "--precision", precision, "--out", str(run)]), 1)
        row[f"dice_{precision}"] = last_val_dice(run)
    row["auto_chose"] = chosen_precision(work / f"{name}-auto")
    row["difference"] = row["dice_auto"] - row["dice_32"]
    row["within_target"] = abs(row["difference"]) <= TARGET
    return row


def format_table(result: dict) -> str:
    lines = [
        f"validation Dice, precision auto vs 32; {result['machine']}",
        f"command: {result['command']}",
    ]
    columns = ["dataset", "auto_chose", "dice_auto", "dice_32", "difference", "within_target", "seconds_auto", "seconds_32"]
    rows = [[row[name] for name in columns] for row in result["rows"]]
    return "\n".join(lines + [tables.format_table(columns, rows)])


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="folder holding isbi2012/ and carvana/")
    parser.add_argument("--datasets", nargs="+", default=["isbi2012", "carvana"], choices=["isbi2012", "carvana"])
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--base-width", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, default=RESULTS / "precision_accuracy.json",
                        help="where the result is written as JSON (default benchmarks/results/precision_accuracy.json)")  # fmt: skip
    return parser.parse_known_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    """Both precisions on every dataset, print the table (and write ``--json``); returns the result."""
    args, extra_flags = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="precision-") as temporary:
        rows = [compare(name, args, extra_flags, Path(temporary)) for name in args.datasets]
    result = {
        "machine": machine(),
        "command": command_line(__file__, argv),
        "epochs": args.epochs,
        "rows": rows,
    }
    return publish(result, format_table(result), args.json)


if __name__ == "__main__":
    main()
