"""Post-processing chosen on validation: does the gain hold on images it was not chosen on?

Generated microscopy-like data (touching blobs with instance masks, ``unetkit.data.synthetic``):
train a small U-Net with the demo's settings, choose the post-processing on the run's validation
images (``tune_checkpoint``), then evaluate best.pt on generated held-out images with the chosen
post-processing and without it (the figures ``evaluate`` reports as ``raw``).

    PYTHONPATH=src python benchmarks/postprocess.py --json benchmarks/results/postprocess.json
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from common import command_line, machine, publish, run_train

from unetkit import tables
from unetkit.checkpoint import load_checkpoint
from unetkit.data.synthetic import generate_dataset
from unetkit.inference.ensemble import load_predictor
from unetkit.inference.evaluate import evaluate_records, summarize
from unetkit.inference.tuning import tune_checkpoint
from unetkit.data.prepare import discover_data, prepare_data

FIGURES = ("dice", "iou", "dsb_score", "seg")
# The demo's small U-Net (unetkit/demo.py): learns the generated task on two CPU cores in minutes.
MODEL = ["--base-width", "16", "--depth", "3", "--batch-size", "8", "--lr", "3e-3", "--workers", "0"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-images", type=int, default=64, help="20 %% of them validate")
    parser.add_argument("--held-out-images", type=int, default=32)
    parser.add_argument("--size", type=int, default=128, help="image side")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        train = generate_dataset(work / "train", args.train_images, args.size, args.seed)
        held_out = generate_dataset(work / "held-out", args.held_out_images, args.size, args.seed + 10_000)
        run = work / "run"
        epochs = ["--epochs", str(args.epochs), "--seed", str(args.seed), "--device", args.device]
        run_train(["--data", str(train), "--out", str(run), *MODEL, *epochs])
        tuning = tune_checkpoint(run / "best.pt", validation_records(run / "best.pt"), device=args.device)
        predictor = load_predictor(run / "best.pt", device=args.device)
        records = discover_data(predictor.config, str(held_out)).records
        report = summarize(evaluate_records(predictor, records, predictor.config, instances=True))
    rows = [
        {"post-processing": "chosen on validation", **{key: report[key] for key in FIGURES}},
        {"post-processing": "none (defaults)", **{key: report.get("raw", report)[key] for key in FIGURES}},
    ]
    result = {
        "machine": machine(),
        "load_average": round(os.getloadavg()[0], 1),  # above the core count: other work shared the CPU
        "command": command_line(__file__, argv),
        "tuning": tuning,
        "held_out_images": len(records),
        "rows": rows,
    }
    table = tables.format_table(["post-processing", *FIGURES], [[row[key] for key in row] for row in rows])
    return publish(result, f"{result['command']}\n{result['machine']}\n{table}\nchosen: {tuning['chosen']}", args.json)


def validation_records(checkpoint: Path) -> list:
    """The validation images of the run that wrote ``checkpoint`` (its config repeats the split)."""
    config = load_checkpoint(checkpoint)["config"]
    return prepare_data(config, config.model.classes, config.model.in_channels, keep_labels=True).val


if __name__ == "__main__":
    main()
