"""Does the whole training pipeline keep up with the model? `unetkit train` images/s on Carvana
against the model alone, at several loader worker counts.

Pipeline: ``unetkit train`` (cli -> prepare_data -> trainer.fit, the real code) on a folder of
``(warmup + steps) * batch`` Carvana images (1918x1280 JPEG + GIF masks, linked, repeated when
more are needed) for one epoch of random ``--patch-size`` patches with the default augmentation,
validating on one 512x512 crop (kept small: validation is not what is timed). The trainer's
loader is wrapped so that it is timed from the outside: the clock runs from
the request of the first timed batch to the end of the last timed step, so it counts the steps and
every wait for data; ``warmup`` steps before it (oneDNN kernel selection, worker start-up) are not
counted.

Model only: the config ``unetkit train`` resolves from the same flags (``prepare_data``), the same
components (``build_components``: model, memory layout, autocast dtype, fused optimizer,
loss) and the same ``train_step``, fed one synthetic batch of the same shape held in memory,
timed the same way. One untimed model-only run first takes the process's one-off costs; then the
two alternate per worker count, so load from elsewhere on the machine hits both alike.

Reported per worker count: images/s of each, pipeline / model, and the seconds the training loop
waited for batches.

    PYTHONPATH=src python benchmarks/pipeline.py --steps 4 --workers 0 1 2 --json pipeline.json
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
from common import SHARED_DATA, command_line, machine, publish, run_train
from PIL import Image

from unetkit import cli, tables
from unetkit.cli.options import given_settings
from unetkit.config import Config
from unetkit.planning.policy import classes_for, configured
from unetkit.device import distributed
from unetkit.training import batches, control
from unetkit.training.step import build_components, train_step
from unetkit.data.prepare import prepare_data

VALIDATION_CROP = 512
SETTINGS = ("patch_size", "batch_size", "base_width", "steps", "warmup", "precision")  # reported with the figures


@dataclass
class TimedBatches:
    """A loader seen from the training loop: when each batch was asked for and when it came."""

    batches: Any  # a DataLoader or a list of batches; needs len()
    asked: list[float] = field(default_factory=list)
    received: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Any]:
        iterator = iter(self.batches)
        while True:
            self.asked.append(time.perf_counter())  # the previous step has finished
            try:
                batch = next(iterator)
            except StopIteration:
                return
            self.received.append(time.perf_counter())
            yield batch

    def summary(self, batch_size: int, warmup: int, count: int) -> dict[str, Any]:
        """Over ``count`` steps after ``warmup``: images/s, seconds spent waiting for batches, and each
        step's seconds (from asking for its batch to asking for the next)."""
        steps = [later - earlier for earlier, later in zip(self.asked, self.asked[1:])][warmup : warmup + count]
        waits = [got - asked for asked, got in zip(self.asked, self.received)][warmup : warmup + count]
        return {"img_s": len(steps) * batch_size / sum(steps), "wait_s": sum(waits), "step_s": steps}


@contextlib.contextmanager
def timed_epochs(record: list[TimedBatches]) -> Iterator[None]:
    """Within the block, the trainer sees each epoch's loader through a ``TimedBatches`` appended
    to ``record``."""
    original = batches.own_errors

    def timed(loader: Iterable) -> Iterator[Any]:
        record.append(TimedBatches(loader))
        return original(record[-1])

    batches.own_errors = timed
    try:
        yield
    finally:
        batches.own_errors = original


def link_images(carvana: Path, root: Path, count: int) -> Path:
    """A Carvana-layout folder of ``count`` links to the sample's image/mask pairs, reused under new
    car ids when ``count`` exceeds the sample."""
    images = sorted((carvana / "train").glob("*.jpg"))
    if not images:
        raise SystemExit(f"{carvana}/train: no Carvana images; pass --data")
    for folder in ("train", "train_masks"):
        (root / folder).mkdir(parents=True)
    for index in range(count):
        image = images[index % len(images)]
        mask = carvana / "train_masks" / f"{image.stem}_mask.gif"
        car, view = image.stem.rsplit("_", 1)
        name = f"{car}r{index // len(images)}_{view}"
        (root / "train" / f"{name}.jpg").symlink_to(image.resolve())
        (root / "train_masks" / f"{name}_mask.gif").symlink_to(mask.resolve())
    return root


def validation_crop(carvana: Path, root: Path) -> Path:
    """A Carvana-layout folder with one centred crop of the first sample image."""
    image = sorted((carvana / "train").glob("*.jpg"))[0]
    mask = Image.open(carvana / "train_masks" / f"{image.stem}_mask.gif")
    width, height = mask.size
    box = ((width - VALIDATION_CROP) // 2, (height - VALIDATION_CROP) // 2)
    box += (box[0] + VALIDATION_CROP, box[1] + VALIDATION_CROP)
    pictures = {f"train/{image.name}": Image.open(image), f"train_masks/{image.stem}_mask.gif": mask}
    for name, picture in pictures.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        picture.crop(box).save(root / name)
    return root


def train_flags(args: argparse.Namespace, train_dir: Path, val_dir: Path) -> list[str]:
    """``unetkit train`` flags shared by every pipeline run (all but workers and run folder)."""
    return [
        "--data", str(train_dir), "--val-data", str(val_dir), "--layout", "carvana",
        "--patch-size", str(args.patch_size), "--batch-size", str(args.batch_size),
        "--base-width", str(args.base_width), "--precision", args.precision, "--epochs", "1",
        "--samples", "0", "--log-every", str(args.steps + args.warmup), "--device", args.device, "--no-plan",
    ]


def resolved_config(flags: list[str]) -> Config:
    """The config ``unetkit train`` resolves from ``flags`` and the data, as its runs will."""
    parsed = cli.build_parser().parse_args(["train", *flags, "--out", "unused"])
    config = configured(parsed.data, given_settings(parsed), parsed.config, parsed.preset)
    return prepare_data(config, classes_for(parsed.classes, parsed.preset), parsed.in_channels).config


def pipeline_run(flags: list[str], workers: int, run: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The timed epoch of ``unetkit train`` with ``workers`` loader processes."""
    record: list[TimedBatches] = []
    with timed_epochs(record):
        run_train([*flags, "--workers", str(workers), "--out", str(run)])
    return record[0].summary(args.batch_size, args.warmup, args.steps)


def model_run(config: Config, args: argparse.Namespace) -> dict[str, Any]:
    """The trainer's own training step, timed the same way on one in-memory synthetic batch."""
    context = distributed.setup(args.device)
    steps = args.warmup + args.steps
    control.seed_step(config.train.seed, 0, 0)
    parts = build_components(config, context)
    size, batch_size = config.data.patch_size, config.train.batch_size
    batch = {
        "image": torch.rand(batch_size, config.model.in_channels, size, size),
        "mask": torch.randint(0, 2, (batch_size, size, size)),
    }
    timed, buffers = TimedBatches([batch] * steps), list(parts.model.buffers())
    for item in timed:
        train_step(parts, item, config, context.device, buffers)
    return timed.summary(batch_size, args.warmup, args.steps)


def measure(args: argparse.Namespace, work: Path) -> list[dict]:
    # One batch more than timed: a step's time ends when the next batch is asked for.
    train_dir = link_images(args.data, work / "train", (args.warmup + args.steps + 1) * args.batch_size)
    flags = train_flags(args, train_dir, validation_crop(args.data, work / "val"))
    config = resolved_config(flags)
    model_run(config, args)  # the first training in a process pays one-off costs (kernel JIT): not timed
    rows = []
    for workers in args.workers:
        pipeline = pipeline_run(flags, workers, work / f"run-{workers}", args)
        model = model_run(config, args)
        rows.append({
            "workers": workers, "pipeline_img_s": pipeline["img_s"], "model_img_s": model["img_s"],
            "ratio": pipeline["img_s"] / model["img_s"], "data_wait_s": pipeline["wait_s"],
            "pipeline_step_s": pipeline["step_s"], "model_step_s": model["step_s"],
        })
    return rows


def format_table(result: dict) -> str:
    lines = [
        f"training images/s, Carvana patches {result['patch_size']}, batch {result['batch_size']}, "
        f"base width {result['base_width']}, {result['steps']} timed steps; {result['machine']}",
        f"command: {result['command']}",
    ]
    columns = ["workers", "pipeline_img_s", "model_img_s", "ratio", "data_wait_s"]
    rows = [[row[name] for name in columns] for row in result["rows"]]
    return "\n".join(lines + [tables.format_table(columns, rows)])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "carvana")
    parser.add_argument("--patch-size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--base-width", type=int, default=64, help="the default model: 64")
    parser.add_argument("--steps", type=int, default=4, help="timed training steps per measurement")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before them")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--precision", default="auto", choices=["auto", "32", "bf16", "fp16"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, help="also write the result as JSON")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    """Measure every worker count, print the table (and write ``--json``); returns the result."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pipeline-") as temporary:
        rows = measure(args, Path(temporary))
    result = {
        "machine": machine(),
        "command": command_line(__file__, argv),
        **{key: getattr(args, key) for key in SETTINGS},
        "rows": rows,
    }
    return publish(result, format_table(result), args.json)


if __name__ == "__main__":
    main()
