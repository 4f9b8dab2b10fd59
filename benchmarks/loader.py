"""Can the data loader keep the model busy? Images/s of the loader alone against training images/s.

The loader reads Carvana (1918x1280 JPEG + GIF masks, found by ``discover`` with the carvana
layout), cuts random ``--patch`` patches with the default augmentation and batches them, at each
``--workers`` count, without and with ``--cache ram``. Each setting runs ``--epochs`` epochs and
reports its best epoch after the first: by then the workers are up and, with the RAM cache, each
worker has decoded most of what it is asked for (every worker fills its own cache). The loader
runs alone here; in training the workers share the CPU with the main process. The model side is one training step (forward, loss, backward,
AdamW) of the default U-Net (``Config()``: base width 64, depth 4) on a batch of the same
patches, in the precision and memory layout the trainer resolves for that step (``step_execution``: ``auto`` timed, cached).

    PYTHONPATH=src python benchmarks/loader.py
    PYTHONPATH=src python benchmarks/loader.py --workers 0 2 --model-steps 1 --json loader.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from unetkit.atomic import atomic_write_text
from unetkit.config import Config
from unetkit.data.dataset import SegmentationDataset, build_loader
from unetkit.data.layouts import discover
from unetkit.data.records import Record
from unetkit.device import autocast, memory_format, select_device
from unetkit.losses import build_loss
from unetkit.model.unet import UNet
from unetkit.training.speed import step_execution

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "carvana"


def loader_images_per_second(records: list[Record], config: Config, workers: int, epochs: int, repeats: int) -> float:
    """The best images/s over epochs 2..``epochs`` of the training loader (epoch 1 starts the
    workers and fills caches); each record is ``repeats`` items per epoch."""
    dataset = SegmentationDataset(records, config.data, config.model.in_channels, train=True, samples_per_image=repeats)
    loader = build_loader(dataset, config.train.batch_size, shuffle=True, workers=workers)
    rates = []
    for _ in range(epochs):
        started = time.perf_counter()
        images = sum(len(batch["image"]) for batch in loader)
        rates.append(images / (time.perf_counter() - started))
    return max(rates[1:])


def training_images_per_second(config: Config, device: torch.device, steps: int) -> tuple[float, str]:
    """Images/s of full training steps of the default U-Net on random patches (after one warm-up)."""
    torch.manual_seed(0)
    execution = step_execution(config, device)
    fmt = memory_format(execution.layout.channels_last)
    model = UNet(config.model).to(device, memory_format=fmt).train()
    loss_fn = build_loss(config.train.loss, config.model.classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr)
    dtype = execution.precision.dtype
    side, batch = config.data.patch_size, config.train.batch_size
    images = torch.rand(batch, config.model.in_channels, side, side, device=device).contiguous(memory_format=fmt)
    masks = torch.randint(0, 2, (batch, side, side), device=device)

    def step() -> None:
        with autocast(device, dtype):
            logits = model(images)
        loss = loss_fn(logits.float(), masks, None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    _synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    _synchronize(device)
    return steps * batch / (time.perf_counter() - started), str(dtype or torch.float32).replace("torch.", "")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(args: argparse.Namespace) -> dict:
    config = Config()
    config.data.patch_size = args.patch
    records = discover(args.data, "carvana").records
    loader_rows = []
    for cache in ("none", "ram"):
        config.data.cache = cache
        for workers in args.workers:
            rate = loader_images_per_second(records, config, workers, args.epochs, args.repeats)
            loader_rows.append({"workers": workers, "cache": cache, "images_per_second": round(rate, 2)})
    device = select_device(args.device)
    model_rate, dtype = training_images_per_second(config, device, args.model_steps)
    return {
        "data": str(Path(args.data).resolve()),
        "images": len(records),
        "patch": args.patch,
        "patches_per_image": args.repeats,
        "batch_size": config.train.batch_size,
        "augment": config.data.augment,
        "loader": loader_rows,
        "model": {
            "device": str(device),
            "autocast": dtype,
            "base_width": config.model.base_width,
            "depth": config.model.depth,
            "images_per_second": round(model_rate, 2),
        },
        "cpu_threads": torch.get_num_threads(),
    }


def print_table(report: dict) -> None:
    model = report["model"]
    print(
        f"Carvana: {report['images']} images, patch {report['patch']}, batch {report['batch_size']}, "
        f"augment {report['augment']}, {report['cpu_threads']} CPU threads"
    )
    print(f"{'loader':<22}{'images/s':>10}{'x model':>10}")
    for row in report["loader"]:
        label = f"workers {row['workers']}, cache {row['cache']}"
        print(f"{label:<22}{row['images_per_second']:>10.2f}{row['images_per_second'] / model['images_per_second']:>10.1f}")
    label = f"training step ({model['device']}, {model['autocast']}, U-Net {model['base_width']}/{model['depth']})"
    print(f"{label}: {model['images_per_second']:.2f} images/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the Carvana folder (train/, train_masks/)")
    parser.add_argument("--patch", type=int, default=512)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=4, help="epochs per loader setting; the best after the first counts")
    parser.add_argument("--repeats", type=int, default=2, help="patches per image and epoch")
    parser.add_argument("--model-steps", type=int, default=2, help="timed training steps after one warm-up")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    report = run(args)
    print_table(report)
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
