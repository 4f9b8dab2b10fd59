"""`unetkit demo`: the whole loop on generated microscopy-like data, on a CPU, in minutes.

generate train + held-out sets -> train a small U-Net (checkpoint chosen on a validation split of
the training set) -> evaluate best.pt on the held-out images -> overlays of the held-out images.
``--dims 3``: the same on generated volumes with a 3D U-Net (label volumes instead of overlays).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from unetkit.atomic import atomic_write_text
from unetkit.config import Config
from unetkit.data.synthetic import generate_dataset
from unetkit.data.synthetic3d import SPACING, generate_volumes
from unetkit.inference.evaluate import evaluate_records, summarize
from unetkit.inference.outputs import OutputOptions, collect_images, predict_files
from unetkit.inference.predictor import Predictor
from unetkit.planning.volume_rules import topology
from unetkit.data.prepare import discover_data, prepare_data
from unetkit.training.trainer import fit

log = logging.getLogger(__name__)

TRAIN_IMAGES = 64
HELD_OUT_IMAGES = 16
IMAGE_SIZE = 128


def demo_config(data: Path, seed: int, epochs: int | None) -> Config:
    """A small U-Net that learns the synthetic task on two CPU cores in a couple of minutes."""
    config = Config()
    config.data.path = str(data)
    config.data.augment = "light"
    config.model.base_width = 16
    config.model.depth = 3
    config.train.epochs = epochs or 12
    config.train.batch_size = 8
    config.train.lr = 3e-3
    config.train.seed = seed
    config.train.workers = 0
    config.train.samples = 3
    return config


TRAIN_VOLUMES = 20
HELD_OUT_VOLUMES = 6
VOLUME_PATCH = [16, 48, 48]
VOLUME_STEPS = 150  # about 3 minutes on two CPU cores


def volume_demo_config(data: Path, seed: int, steps: int | None) -> Config:
    """A small 3D U-Net that learns the generated volumes on two CPU cores in a few minutes; its
    pooling and kernels from the plan's rule for their spacing (in-plane first)."""
    config = Config()
    config.data.path = str(data)
    config.data.patch_shape, config.predict.window = VOLUME_PATCH, [24, 64, 64]
    config.data.foreground_oversample, config.data.cache = 0.33, "ram"
    config.data.normalize.mode = "zscore"
    config.model.dims, config.model.base_width, config.model.norm = 3, 8, "instance"
    config.model.pool, config.model.kernels = topology(VOLUME_PATCH, SPACING)
    config.model.depth = len(config.model.pool)
    config.train.steps = steps or VOLUME_STEPS
    config.train.val_every = config.train.steps // 3
    config.train.batch_size, config.train.lr, config.train.seed = 2, 3e-3, seed
    config.train.workers, config.train.samples = 0, 2
    return config


def run_demo(out: Path, seed: int = 0, epochs: int | None = None, dims: int = 2) -> dict:
    """Run the demo into ``out``; returns the held-out evaluation report. ``dims`` 3: on volumes,
    where ``epochs`` counts optimizer steps."""
    if dims == 3:
        return run_volume_demo(out, seed, epochs)
    train_dir = generate_dataset(out / "data" / "train", TRAIN_IMAGES, IMAGE_SIZE, seed)
    held_out_dir = generate_dataset(out / "data" / "held-out", HELD_OUT_IMAGES, IMAGE_SIZE, seed + 10_000)
    log.info("generated %d training and %d held-out images in %s", TRAIN_IMAGES, HELD_OUT_IMAGES, out / "data")
    prepared = prepare_data(demo_config(train_dir, seed, epochs), classes=None, in_channels=None)
    run = out / "run"
    fit(prepared, run)
    predictor = Predictor.from_checkpoint(run / "best.pt", device="cpu")
    records = discover_data(predictor.config, str(held_out_dir)).records
    report = summarize(evaluate_records(predictor, records, predictor.config))
    atomic_write_text(out / "held-out.json", json.dumps(report, indent=2))
    images = collect_images([held_out_dir / "images"])
    predict_files(predictor, images, out / "predictions", OutputOptions(overlay=True), progress=False, fail_fast=True)
    log.info(
        "held-out Dice %.4f, IoU %.4f, pixel accuracy %.4f on %d generated images\n"
        "run folder: %s (best.pt, metrics.csv, curves.png, samples/); overlays: %s",
        report["dice"], report["iou"], report["pixel_accuracy"], len(records), run, out / "predictions",
    )
    return report


def run_volume_demo(out: Path, seed: int = 0, steps: int | None = None) -> dict:
    """The demo on generated volumes: a 3D U-Net, evaluated on held-out volumes, label volumes written."""
    train_dir = generate_volumes(out / "data" / "train", TRAIN_VOLUMES, seed)
    held_out_dir = generate_volumes(out / "data" / "held-out", HELD_OUT_VOLUMES, seed + 10_000)
    log.info("generated %d training and %d held-out volumes in %s", TRAIN_VOLUMES, HELD_OUT_VOLUMES, out / "data")
    prepared = prepare_data(volume_demo_config(train_dir, seed, steps), classes=None, in_channels=None)
    run = out / "run"
    fit(prepared, run, device="cpu")
    predictor = Predictor.from_checkpoint(run / "best.pt", device="cpu")
    records = discover_data(predictor.config, str(held_out_dir)).records
    report = summarize(evaluate_records(predictor, records, predictor.config))
    atomic_write_text(out / "held-out.json", json.dumps(report, indent=2))
    predict_files(predictor, collect_images([held_out_dir / "images"]), out / "predictions", OutputOptions(),
                  progress=False, fail_fast=True)  # fmt: skip
    log.info(
        "held-out Dice %.4f, IoU %.4f, voxel accuracy %.4f on %d generated volumes\n"
        "run folder: %s (best.pt, metrics.csv, samples/); label volumes: %s",
        report["dice"], report["iou"], report["pixel_accuracy"], len(records), run, out / "predictions",
    )
    return report
