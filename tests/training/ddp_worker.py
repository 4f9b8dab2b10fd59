"""Run under torchrun by test_distributed.py: the real `unetkit` commands, watched from outside.

    python -m torch.distributed.run --nproc_per_node 2 ddp_worker.py RECORD_DIR train|predict ARGS...

runs ``unetkit train|predict ARGS`` through ``unetkit.cli.main`` in every process and records,
per rank, into RECORD_DIR: ``rank<r>_model.pt`` (the state dict its model ended training with),
``rank<r>_items.txt`` (the training images it loaded, in order) and ``rank<r>_masks.txt`` (the
mask files it wrote). Nothing in unetkit knows about this; the hooks wrap its functions. With
NAN_RANK=r in the environment, rank r's training images are all NaN; with SLOW_PLAN_RANK=r, rank r's
plan measures its speed 8x slower than it is.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from unetkit import api, cli
from unetkit.data.dataset import SegmentationDataset
from unetkit.inference import outputs
from unetkit.training.speed import measure_steps_per_second
from unetkit.training import trainer


def install_hooks(record: Path, rank: int) -> dict:
    """Wrap the functions to watch; returns the holder that receives the training components."""
    captured: dict = {}
    build_components, get_item, write_mask = trainer.build_components, SegmentationDataset.__getitem__, outputs.write_mask

    def capture_components(*args, **kwargs):
        captured["parts"] = build_components(*args, **kwargs)
        return captured["parts"]

    def log_item(self, index):
        item = get_item(self, index)  # only training reads through the dataset
        append_line(record / f"rank{rank}_items.txt", str(item["name"]))
        if os.environ.get("NAN_RANK") == str(rank):
            item["image"] = torch.full_like(item["image"], float("nan"))
        return item

    def log_mask(path, *args, **kwargs):
        append_line(record / f"rank{rank}_masks.txt", Path(path).name)
        return write_mask(path, *args, **kwargs)

    if os.environ.get("SLOW_PLAN_RANK") == str(rank):  # this rank measures 8x slower: another plan
        make_plan = api.make_plan  # the name the API calls

        def slow_plan(*args, **kwargs):
            return make_plan(*args, **kwargs, speed=lambda *a, **k: measure_steps_per_second(*a, **k) / 8)

        api.make_plan = slow_plan
    trainer.build_components = capture_components
    SegmentationDataset.__getitem__ = log_item
    outputs.write_mask = log_mask
    return captured


def append_line(path: Path, line: str) -> None:
    with open(path, "a") as handle:
        handle.write(line + "\n")


def main() -> int:
    record, argv = Path(sys.argv[1]), sys.argv[2:]
    rank = int(os.environ["RANK"])
    captured = install_hooks(record, rank)
    code = cli.main(argv)
    if code == 0 and "parts" in captured:
        torch.save(captured["parts"].model.state_dict(), record / f"rank{rank}_model.pt")
    return code


if __name__ == "__main__":
    sys.exit(main())
