"""A validation during training: the validation images predicted at full resolution through the
inference engine, sharded over the processes and reduced exactly; a grid of samples drawn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unetkit.config import Config
from unetkit.data.records import Record
from unetkit.device import distributed
from unetkit.device.distributed import DistributedContext
from unetkit.inference.evaluate import evaluate_records
from unetkit.inference.predictor import Predictor
from unetkit.model.unet import UNet
from unetkit.training.logs import save_sample_grid


def validate(
    model: UNet, records: list[Record], config: Config, context: DistributedContext,
    loss_fn: nn.Module, out: Path, step: int, layout: str,
) -> dict[str, Any]:
    """Full-resolution validation through the inference engine, sharded by rank, reduced exactly;
    the model stays in the memory ``layout`` it trains in."""
    predictor = Predictor(model, config, device=context.device, precision=config.train.precision, layout=layout)
    samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    wanted = config.train.samples if context.is_main else 0

    def keep_sample(image: np.ndarray, truth: np.ndarray, prediction: np.ndarray, _: Any) -> None:
        if config.model.dims == 3:  # a volume is drawn by its middle slice
            image, truth, prediction = (array[len(array) // 2] for array in (image, truth, prediction))
        samples.append((image, truth, prediction))

    state = evaluate_records(
        predictor, distributed.shard(records, context), config, loss_fn=loss_fn, on_sample=keep_sample, samples=wanted,
    )
    state.confusion.reduce_from_all_processes()
    totals = distributed.all_reduce_sum(torch.tensor([state.loss_sum, float(state.count)]), context)
    report = state.confusion.compute()
    report["loss"] = float(totals[0] / totals[1].clamp(min=1))
    if samples:
        save_sample_grid(out / "samples" / f"step_{step:06d}.png", samples, max(2, config.model.classes))
    return report
