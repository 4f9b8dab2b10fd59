"""Does the planned loader keep the GPU busy? Batches/s of the training loader alone, built from a
plan (``unetkit plan DATA --device cuda --out plan.yaml``), by worker count, against the model-only
speed the plan's probe measured for the chosen width.

Each setting starts its workers, lets every worker deliver one batch (each fills its own RAM
cache), then times 30 batches; an epoch holds 40 patches of every image, so the pipeline never
drains at an epoch's end.

    PYTHONPATH=src python benchmarks/planned_loader.py --plan plan.yaml --data DATA --workers 2 4 8 14
"""

from __future__ import annotations

import argparse
import time

import yaml
from common import machine

from unetkit.config import Config
from unetkit.data.dataset import SegmentationDataset, build_loader
from unetkit.data.prepare import prepare_data

BATCHES = 30
PATCHES_PER_IMAGE = 40


def batches_per_second(prepared_train: list, config: Config, workers: int) -> float:
    dataset = SegmentationDataset(prepared_train, config.data, config.model.in_channels, train=True,
                                  samples_per_image=PATCHES_PER_IMAGE)  # fmt: skip
    batches = iter(build_loader(dataset, config.train.batch_size, shuffle=True, workers=workers))
    for _ in range(max(2, workers)):
        next(batches)
    started = time.perf_counter()
    for _ in range(BATCHES):
        next(batches)
    return BATCHES / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", required=True, help="a plan.yaml from unetkit plan")
    parser.add_argument("--data", required=True, help="the dataset the plan is for")
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4, 8])
    args = parser.parse_args()
    plan = yaml.safe_load(open(args.plan))
    config = Config.from_dict(plan["config"])
    start = Config()
    start.data.path = args.data
    train = prepare_data(start, None, None).train
    model_rate = plan["measured_steps_per_second"].get(f"width {config.model.base_width}")
    print(f"machine: {machine()} (the model speed is the plan's, from the machine that planned)")
    print(f"model alone (the plan's probe, width {config.model.base_width}): {model_rate} steps/s")
    for workers in args.workers:
        rate = batches_per_second(train, config, workers)
        ratio = f", {rate / model_rate:.2f} of the model" if model_rate else ""
        print(f"workers {workers}: {rate:.2f} batches/s of {config.train.batch_size} x {config.data.patch_size}^2 px{ratio}")


if __name__ == "__main__":
    main()
