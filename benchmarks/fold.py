"""Does folding batch norms into their convolutions speed up inference? The classic U-Net (3 -> 1,
widths 64..1024, trained-looking batch-norm statistics) on a batch of ``--size`` px images, as the
predictor runs it (eval mode, inference mode, channels-last, autocast in ``--precision``), with and
without ``fold_batch_norms`` (what ``Predictor.from_checkpoint`` applies), in one process:
``--warmup`` passes each, then ``--rounds`` interleaved rounds (the order alternating); medians and
the largest output difference.

    PYTHONPATH=src python benchmarks/fold.py --precision bf16
    ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 PYTHONPATH=src python benchmarks/fold.py --precision 32
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from common import machine
from torch import nn

from unetkit.cli.cpu import reuse_freed_memory
from unetkit.config import UNetConfig
from unetkit.device import autocast
from unetkit.model import UNet, fold_batch_norms


def trained_looking(model: nn.Module) -> nn.Module:
    """Batch-norm statistics and affine weights away from a fresh network's identity."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--precision", choices=["32", "bf16"], default="bf16")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    reuse_freed_memory()  # as the CLI runs
    torch.manual_seed(0)
    plain = trained_looking(UNet(UNetConfig(in_channels=3, classes=1))).to(memory_format=torch.channels_last)
    models = {"plain": plain, "folded": fold_batch_norms(copy.deepcopy(plain))}
    images = torch.randn(args.batch, 3, args.size, args.size).contiguous(memory_format=torch.channels_last)
    dtype = torch.bfloat16 if args.precision == "bf16" else None

    def forward(model: nn.Module) -> torch.Tensor:
        with torch.inference_mode(), autocast(images.device, dtype):
            return model(images).float()

    difference = (forward(models["plain"]) - forward(models["folded"])).abs().max().item()
    for _ in range(args.warmup):
        for model in models.values():
            forward(model)
    seconds: dict[str, list[float]] = {name: [] for name in models}
    for round_index in range(args.rounds):
        for name in list(models) if round_index % 2 == 0 else list(reversed(models)):
            started = time.perf_counter()
            forward(models[name])
            seconds[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(times) for name, times in seconds.items()}
    print(f"{machine()}; precision {args.precision}, batch {args.batch} x {args.size} px, {args.rounds} rounds")
    print(f"plain {medians['plain']:.4f} s, folded {medians['folded']:.4f} s: folded is "
          f"{medians['plain'] / medians['folded']:.3f}x as fast; largest output difference {difference:.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
