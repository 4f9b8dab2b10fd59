"""Where unetkit's training step spends its time: the share of the profiler's self CPU time per
operator family, for the classic U-Net of ``throughput.py`` (3 -> 1, widths 64..1024, batch 4 at
256 px, fused AdamW, the memory layout and precision ``auto`` chooses for it, as ``train`` does).

If convolutions take nearly all of it, no code around them can make the step much faster at the
same dtype: the convolutions' own speed bounds it. ``--cpu-class`` masks this CPU as
``throughput.CPU_CLASSES`` does (set before torch loads, so the script re-runs itself).

    PYTHONPATH=src python benchmarks/step_profile.py --cpu-class avx512-bf16
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Sequence

import torch
from common import command_line, machine, publish
from throughput import CPU_CLASSES
from torch.profiler import profile

from unetkit.cli.cpu import reuse_freed_memory
from unetkit.config import Config, UNetConfig
from unetkit.device import autocast, memory_format
from unetkit.losses import build_loss
from unetkit.model import UNet
from unetkit.training.speed import step_execution
from unetkit.training.step import build_optimizer

FAMILIES = {  # the first family whose word is in an operator's name gets its time
    "convolution": ("convolution",),
    "normalisation": ("batch_norm", "group_norm", "instance_norm"),
    "activation": ("threshold", "relu", "clamp"),
    "copies and layout": ("copy_", "cat", "contiguous", "to_copy"),
    "optimizer": ("adam",),
}


def family(operator: str) -> str:
    return next((name for name, words in FAMILIES.items() if any(word in operator for word in words)), "other")


def profile_step(base_width: int, size: int, batch: int, steps: int) -> tuple[dict[str, float], str]:
    """Self CPU time share per family over ``steps`` training steps after two warm-up steps."""
    config = Config(model=UNetConfig(in_channels=3, classes=1, base_width=base_width))
    config.data.patch_size, config.train.batch_size = size, batch
    execution = step_execution(config, torch.device("cpu"))
    precision, layout = execution.precision, memory_format(execution.layout.channels_last)
    model = UNet(config.model).to(memory_format=layout)
    optimizer = build_optimizer(model, config)
    loss_fn = build_loss(config.train.loss, classes=1)
    images = torch.randn(batch, 3, size, size).contiguous(memory_format=layout)
    masks = torch.randint(0, 2, (batch, size, size))

    def step() -> None:
        with autocast(images.device, precision.dtype):
            logits = model(images)
        loss = loss_fn(logits.float(), masks, None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step(), step()
    with profile() as profiler:
        for _ in range(steps):
            step()
    times: Counter[str] = Counter()
    for event in profiler.key_averages():
        times[family(event.key)] += event.self_cpu_time_total
    total = sum(times.values())
    return {name: round(times[name] / total, 4) for name in [*FAMILIES, "other"]}, str(precision)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-class", choices=list(CPU_CLASSES), default="native")
    parser.add_argument("--base-width", type=int, default=64)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    mask = CPU_CLASSES[args.cpu_class]
    if any(os.environ.get(name) != value for name, value in mask.items()):  # oneDNN reads it at start
        arguments = sys.argv[1:] if argv is None else list(argv)
        subprocess.run([sys.executable, __file__, *arguments], env={**os.environ, **mask}, check=True)
        return {}
    reuse_freed_memory()
    shares, precision = profile_step(args.base_width, args.size, args.batch, args.steps)
    table = "\n".join(f"{name:<18} {share:6.1%}" for name, share in shares.items())
    result = {"command": command_line(__file__, argv), "machine": machine(), "cpu_class": args.cpu_class,
              "precision": precision, "threads": torch.get_num_threads(), "shares": shares}  # fmt: skip
    return publish(result, f"{result['command']}\n{result['machine']}, class {args.cpu_class}: {precision}\n{table}", args.json)


if __name__ == "__main__":
    main()
