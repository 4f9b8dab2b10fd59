"""The U-Net paper's ISBI 2012 experiment with unetkit's `--preset paper`, on the labelled slices.

Protocol: the challenge's test labels were never released, so the 30 labelled slices of the
sample data are split once and for all: slices 0-19 train, 20-24 validate (they choose the best
checkpoint and the post-processing, and are what to watch when tuning flags), 25-29 evaluate and
are used for nothing else. Training is ``unetkit train --preset paper`` (valid convolutions,
572 -> 388 tiles, batch 1, SGD momentum 0.99, border-weighted cross-entropy, elastic deformation)
with the ISBI layout's labels (membrane, stored as 0, is the class of interest); for a CPU at a
reduced ``--base-width`` and few epochs. ``best.pt`` (best validation Dice) predicts the 5
held-out slices with overlap-tile at full resolution. Reported:

- from the argmax labels `unetkit predict` writes: pixel error = 1 - pixel accuracy and membrane
  IoU, pooled over the 5 slices; Rand error = ``skimage.metrics.adapted_rand_error`` of the cells
  (4-connected components of the non-membrane pixels) of the prediction against those of the
  truth, membranes of the truth left out, averaged over the slices;
- by the challenge's definitions, which the paper's figures use: the membrane probability map is
  thresholded at 0.05, 0.10, ..., 0.95 and the best threshold on the evaluated slices counts (an
  oracle choice, as the challenge made it: these two figures are optimistic by construction);
  pixel error = 1 - the best F-score of the cell pixels, Rand error = the best adapted Rand error
  (1 - the F-score of the foreground-restricted Rand index).

The paper's figures (pixel error 0.0611, Rand error 0.0382) were measured on the hidden test set
with a full-width network trained far longer; they are printed beside ours for orientation only.

    PYTHONPATH=src python benchmarks/isbi2012.py --base-width 16 --epochs 4 --json isbi.json
    PYTHONPATH=src python benchmarks/isbi2012.py --base-width 64 --epochs 40 --device cuda  # the paper's width

Other ``unetkit train`` flags pass through (e.g. ``--lr 0.005 --tile-size 476``).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
from common import SHARED_DATA, command_line, machine, publish, run_train
from scipy import ndimage
from skimage.metrics import adapted_rand_error

from unetkit import tables
from unetkit.data.annotations import read_annotation
from unetkit.data.reading import read_image
from unetkit.data.layouts import discover
from unetkit.data.records import map_labels
from unetkit.inference.predictor import Predictor

TRAIN_SLICES, VAL_SLICES, EVAL_SLICES = range(0, 20), range(20, 25), range(25, 30)
PAPER = {"pixel_error": 0.0611, "rand_error": 0.0382}
MEMBRANE = 1  # class id of the membranes under the ISBI layout's labels
THRESHOLDS = np.round(np.arange(0.05, 1.0, 0.05), 2)  # of the membrane probability


def split_folders(data: Path, work: Path, splits: dict[str, Sequence[int]]) -> dict[str, Path]:
    """One ISBI-layout folder of links to ``data``'s slices per split (name -> slice numbers)."""
    folders = {}
    for name, slices in splits.items():
        root = work / f"isbi-{name}"
        for kind in ("image", "label"):
            folder = root / "train" / kind
            folder.mkdir(parents=True, exist_ok=True)
            for index in slices:
                source = (data / "train" / kind / f"{index}.png").resolve()
                if not source.is_file():
                    raise SystemExit(f"{source}: missing; --data must hold train/image/N.png and train/label/N.png")
                (folder / source.name).symlink_to(source)
        folders[name] = root
    return folders


def cell_rand_error(truth: np.ndarray, prediction: np.ndarray) -> float:
    """Adapted Rand error between the cells (4-connected non-membrane regions) of two label images;
    pixels that are membrane in the truth count for nothing (label 0 is ignored)."""
    true_cells = ndimage.label(truth != MEMBRANE)[0]
    predicted_cells = ndimage.label(prediction != MEMBRANE)[0]
    return float(adapted_rand_error(true_cells, predicted_cells)[0])


def evaluate_slices(checkpoint: Path, eval_dir: Path, device: str) -> dict[str, float]:
    """The argmax scores and the challenge-style best-threshold scores of ``checkpoint`` on the
    evaluation slices."""
    predictor = Predictor.from_checkpoint(checkpoint, device=device)
    data = predictor.config.data
    truths, membrane_maps, predictions = [], [], []
    for record in discover(eval_dir, "isbi2012").records:
        probabilities = predictor.predict_image(read_image(record.image, record.page, data.max_pixels))
        truths.append(map_labels(read_annotation(record, data.max_pixels)[0], data.labels))
        membrane_maps.append(probabilities[MEMBRANE])
        predictions.append(predictor.labels(probabilities))
    return {**argmax_scores(truths, predictions), **best_threshold_scores(truths, membrane_maps)}


def argmax_scores(truths: list[np.ndarray], predictions: list[np.ndarray]) -> dict[str, float]:
    """What `unetkit predict` gives: pixel error and membrane IoU pooled, cell Rand error averaged."""
    truth, prediction = np.concatenate(truths) == MEMBRANE, np.concatenate(predictions) == MEMBRANE
    return {
        "pixel_error": float(np.mean(truth != prediction)),
        "membrane_iou": float(np.sum(truth & prediction) / max(1, np.sum(truth | prediction))),
        "rand_error": float(np.mean([cell_rand_error(t, p) for t, p in zip(truths, predictions)])),
    }


def best_threshold_scores(truths: list[np.ndarray], membrane_maps: list[np.ndarray]) -> dict[str, float]:
    """The challenge's (and the paper's) definitions: the membrane map is thresholded at each of
    THRESHOLDS, and the best threshold on the evaluated slices counts. Pixel error = 1 - the best
    F-score of the cell (non-membrane) pixels, pooled; Rand error = the best mean adapted Rand error."""
    cells = np.concatenate(truths) != MEMBRANE
    pixel_errors, rand_errors = [], []
    for threshold in THRESHOLDS:
        predictions = [(membrane >= threshold).astype(np.uint8) * MEMBRANE for membrane in membrane_maps]
        predicted_cells = np.concatenate(predictions) != MEMBRANE
        true_positives = np.sum(cells & predicted_cells)
        f_score = 2 * true_positives / max(1, np.sum(cells) + np.sum(predicted_cells))
        pixel_errors.append(1.0 - f_score)
        rand_errors.append(np.mean([cell_rand_error(t, p) for t, p in zip(truths, predictions)]))
    return {
        "pixel_error_best_threshold": float(min(pixel_errors)),
        "rand_error_best_threshold": float(min(rand_errors)),
        "thresholds": {  # the membrane probability that gave each best
            "pixel_error": float(THRESHOLDS[np.argmin(pixel_errors)]),
            "rand_error": float(THRESHOLDS[np.argmin(rand_errors)]),
        },
    }


ROWS = [  # label, result key, the paper's figure (challenge definitions)
    ("pixel error (argmax: 1 - accuracy)", "pixel_error", None),
    ("membrane IoU (argmax)", "membrane_iou", None),
    ("Rand error (argmax, adapted)", "rand_error", None),
    ("pixel error (best threshold: 1 - F)", "pixel_error_best_threshold", PAPER["pixel_error"]),
    ("Rand error (best threshold)", "rand_error_best_threshold", PAPER["rand_error"]),
]


def format_table(result: dict) -> str:
    lines = [
        f"ISBI 2012: train slices {result['train_slices']}, validate {result['val_slices']}, "
        f"evaluate {result['eval_slices']}; {result['machine']}",
        f"command: {result['command']}",
        "training: none (--checkpoint)" if result["train_seconds"] is None else f"training {result['train_seconds']:.0f} s",
    ]
    rows = [[label, f"{result[key]:.4f}", "-" if paper is None else f"{paper:.4f}"] for label, key, paper in ROWS]
    table = tables.format_table(["metric", "unetkit", "paper (hidden test set, full width)"], rows)
    return "\n".join([*lines, table])


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "isbi2012")
    parser.add_argument("--base-width", type=int, default=16, help="the paper: 64 (CPU: 16)")
    parser.add_argument("--epochs", type=int, default=4, help="passes over the 20 training slices")
    parser.add_argument("--train-slices", type=int, default=len(TRAIN_SLICES), help="use the first N (smoke runs)")
    parser.add_argument("--val-slices", type=int, default=len(VAL_SLICES), help="use the first N (smoke runs)")
    parser.add_argument("--eval-slices", type=int, default=len(EVAL_SLICES), help="use the first N (smoke runs)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, help="keep the run folder here (default: a temporary folder)")
    parser.add_argument(
        "--checkpoint", type=Path, help="evaluate this checkpoint (of a run trained on slices 0-19) instead of training"
    )
    parser.add_argument("--json", type=Path, help="also write the result as JSON")
    return parser.parse_known_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    """Train, evaluate, print the table (and write ``--json``); returns the result."""
    args, train_flags = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="isbi2012-") as temporary:
        work = Path(temporary)
        run = args.out or work / "run"
        splits = {"train": TRAIN_SLICES[: args.train_slices], "val": VAL_SLICES[: args.val_slices],
                  "eval": EVAL_SLICES[: args.eval_slices]}  # fmt: skip
        folders = split_folders(args.data, work, splits)
        train_argv = [
            "--data", str(folders["train"]), "--val-data", str(folders["val"]), "--layout", "isbi2012", "--preset", "paper",
            "--base-width", str(args.base_width), "--epochs", str(args.epochs), "--workers", str(args.workers),
            "--device", args.device, "--out", str(run), "--no-plan", *train_flags,
        ]
        seconds = None if args.checkpoint else round(run_train(train_argv), 1)
        result = {
            **{f"{name}_slices": f"{slices.start}-{slices.stop - 1}" for name, slices in splits.items()},
            "machine": machine(),
            "command": command_line(__file__, argv),
            "train_seconds": seconds,
            **evaluate_slices(args.checkpoint or run / "best.pt", folders["eval"], args.device),
            "paper": PAPER,
        }
    return publish(result, format_table(result), args.json)


if __name__ == "__main__":
    main()
