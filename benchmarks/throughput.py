"""Throughput of unetkit's U-Net against reference U-Nets: training and inference images/s.

Every model is the classic U-Net, 3 channels in, 1 class out, widths ``--base-width`` * (1, 2, 4,
8, 16). unetkit runs with the execution settings its trainer and predictor use (autocast in the
dtype ``unetkit.device.autocast_dtype(device, "auto")`` picks, channels_last, the trainer's fused
AdamW, cuDNN autotuning); the references run as their projects run them: float32, contiguous
tensors (``--reference-layout channels_last`` as recent milesial train.py does), milesial's
RMSprop, MONAI's usual Adam (MONAI only if it is installed).

All models live in one process; after ``--warmup`` steps each, ``--rounds`` rounds interleave
the models, so a busy machine slows all of them alike; images/s are medians over rounds and the
speedups medians of per-round ratios. Per model: parameters, forward GFLOPs per image
(FlopCounterMode), training images/s (forward, loss, backward, optimizer step), inference
images/s, the peak memory one training / inference step allocates (profiler allocation events on
the CPU, the CUDA allocator's peak on a GPU; the process's peak RSS comes with every row), and
peak_fraction: achieved model FLOP/s (training = 3 x forward) over the FLOP/s of a large matmul
in the same dtype, the best measured before and after the rounds.

``--compile`` adds a row for unetkit under ``unetkit train --compile`` (torch.compile, falling back
to eager with a warning as the trainer does); its warm-up step pays the compilation.

    PYTHONPATH=src python benchmarks/throughput.py --size 256 --batch 4 --rounds 3 --json throughput.json

On a machine shared with other busy processes, OpenMP threads spend their time waiting for each
other (on 2 loaded cores, 1 thread ran unetkit's training 4-5x faster than 2): add --threads 1.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from common import machine
from reference_unets import MilesialStyleUNet, monai_basic_unet
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from unetkit import reports
from unetkit.atomic import atomic_write_text
from unetkit.config import Config, UNetConfig
from unetkit.device import EagerFallback, autocast, autocast_dtype, maybe_compile, memory_format, select_device
from unetkit.losses import build_loss
from unetkit.model.unet import UNet, count_parameters
from unetkit.training.trainer import build_optimizer

UNETKIT = "unetkit"
UNETKIT_COMPILED = "unetkit+compile"


@dataclass
class Contender:
    """One model with the execution settings it is measured under."""

    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    dtype: torch.dtype | None  # autocast dtype; None = float32
    layout: torch.memory_format
    cudnn_benchmark: bool
    runner: EagerFallback | None = None  # how steps run the model: compiled (falling back) or eager
    train_seconds: list[float] = field(default_factory=list)
    infer_seconds: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.runner = self.runner or EagerFallback(self.model, None)

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.dtype or torch.float32


def build_contenders(args: argparse.Namespace, device: torch.device) -> list[Contender]:
    config = Config(model=UNetConfig(in_channels=3, classes=1, base_width=args.base_width))
    unetkit_layout = memory_format(config.train.channels_last)
    dtype = autocast_dtype(device, config.train.precision)

    def unetkit_contender(name: str, compiled: bool) -> Contender:
        model = UNet(config.model).to(device, memory_format=unetkit_layout)
        runner = maybe_compile(model, compiled)  # as the trainer runs `--compile`
        return Contender(name, model, build_optimizer(model, config), dtype, unetkit_layout, True, runner)

    contenders = [unetkit_contender(UNETKIT, compiled=False)]
    if args.compile:
        contenders.append(unetkit_contender(UNETKIT_COMPILED, compiled=True))
    reference_layout = memory_format(args.reference_layout == "channels_last")
    milesial = MilesialStyleUNet(3, 1, args.base_width).to(device, memory_format=reference_layout)
    # milesial/Pytorch-UNet's train.py: RMSprop(lr=1e-5, weight_decay=1e-8, momentum=0.999, foreach=True).
    rmsprop = torch.optim.RMSprop(milesial.parameters(), lr=1e-5, weight_decay=1e-8, momentum=0.999, foreach=True)
    contenders.append(Contender("milesial-style", milesial, rmsprop, None, reference_layout, False))
    monai = monai_basic_unet(3, 1, args.base_width)
    if monai is not None:
        monai = monai.to(device, memory_format=reference_layout)
        adam = torch.optim.Adam(monai.parameters(), lr=1e-4)
        contenders.append(Contender("monai-basicunet", monai, adam, None, reference_layout, False))
    return contenders


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(run: Callable[[], None], device: torch.device) -> float:
    synchronize(device)
    started = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - started


def train_step(contender: Contender, images: torch.Tensor, masks: torch.Tensor, loss_fn: nn.Module) -> None:
    torch.backends.cudnn.benchmark = contender.cudnn_benchmark
    contender.model.train()

    def forward_backward(model: nn.Module) -> None:
        with autocast(images.device, contender.dtype):
            logits = model(images.contiguous(memory_format=contender.layout))
        loss = loss_fn(logits.float(), masks, None)
        contender.optimizer.zero_grad(set_to_none=True)
        loss.backward()

    contender.runner.run(forward_backward)
    contender.optimizer.step()


def infer_step(contender: Contender, images: torch.Tensor) -> None:
    torch.backends.cudnn.benchmark = contender.cudnn_benchmark
    contender.model.eval()

    def forward(model: nn.Module) -> None:
        with torch.inference_mode(), autocast(images.device, contender.dtype):
            model(images.contiguous(memory_format=contender.layout))

    contender.runner.run(forward)


def forward_gflops_per_image(model: nn.Module, images: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(images)
    return counter.get_total_flops() / len(images) / 1e9


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype, size: int, repeats: int = 3) -> float:
    """FLOP/s of the best of ``repeats`` size x size matmuls in ``dtype`` (after one warm-up)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    best = min(seconds(lambda: a @ b, device) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


# --- peak memory of one step -----------------------------------------------------------------


def step_peak_memory_mb(step: Callable[[], None], device: torch.device) -> float:
    """Peak memory ``step`` allocates on top of what was allocated before it, in MiB.

    On a GPU the CUDA allocator's peak; on the CPU the running sum of the profiler's allocation
    events. (Process RSS proved unreliable for this: glibc keeps freed memory, so the same step
    measured anywhere from 900 to 1300 MB depending on what ran before.)
    """
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        step()
    events = [e for e in profiler.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()  # negative for frees
        peak = max(peak, live)
    return peak / 2**20


def process_peak_rss_mb() -> float:
    """The whole process's peak resident memory so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


# --- the run ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> list[dict]:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    torch.manual_seed(0)
    contenders = build_contenders(args, device)
    loss_fn = build_loss(Config().train.loss, classes=1)
    images = torch.randn(args.batch, 3, args.size, args.size, device=device)
    masks = torch.randint(0, 2, (args.batch, args.size, args.size), device=device)
    load_before = os.getloadavg()[0]

    def train(contender: Contender) -> None:
        train_step(contender, images, masks, loss_fn)

    def infer(contender: Contender) -> None:
        infer_step(contender, images)

    gflops = {c.name: forward_gflops_per_image(c.model, images) for c in contenders}
    dtypes = {c.compute_dtype for c in contenders}
    peaks_before = {dtype: matmul_peak_gflops(device, dtype, args.matmul_size) for dtype in dtypes}
    for contender in contenders:
        for _ in range(args.warmup):
            train(contender)
            infer(contender)
    for _ in range(args.rounds):
        for contender in contenders:
            contender.train_seconds.append(seconds(lambda: train(contender), device))
        for contender in contenders:
            contender.infer_seconds.append(seconds(lambda: infer(contender), device))
    # The machine's best in this run: the load may change between the start and the end.
    peaks = {dtype: max(peak, matmul_peak_gflops(device, dtype, args.matmul_size)) for dtype, peak in peaks_before.items()}

    ours = contenders[0]
    setting = {
        "machine": machine(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "size": args.size,
        "batch": args.batch,
        "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    rows = []
    for contender in contenders:
        row = summarize(contender, ours, args.batch, gflops[contender.name], peaks[contender.compute_dtype])
        row["peak_mem_mb"] = round(step_peak_memory_mb(lambda: train(contender), device), 1)
        row["infer_peak_mem_mb"] = round(step_peak_memory_mb(lambda: infer(contender), device), 1)
        rows.append({**row, **setting})
    for row in rows:
        row["process_peak_rss_mb"] = round(process_peak_rss_mb())
    return rows


def summarize(contender: Contender, ours: Contender, batch: int, gflops: float, peak_gflops: float) -> dict:
    """One model's row; speedups are medians of per-round ratios, robust to load that drifts."""
    train_img_s = batch / statistics.median(contender.train_seconds)
    infer_img_s = batch / statistics.median(contender.infer_seconds)
    return {
        "model": contender.name,
        "params": count_parameters(contender.model),
        "dtype": str(contender.compute_dtype).removeprefix("torch."),
        "memory_format": "channels_last" if contender.layout == torch.channels_last else "contiguous",
        "optimizer": type(contender.optimizer).__name__,
        "gflops_per_img": round(gflops, 3),
        "train_img_s": round(train_img_s, 4),
        "infer_img_s": round(infer_img_s, 4),
        "peak_fraction": round(3 * gflops * train_img_s / peak_gflops, 4),
        "infer_peak_fraction": round(gflops * infer_img_s / peak_gflops, 4),
        "matmul_peak_gflops": round(peak_gflops, 1),
        "unetkit_train_speedup": _median_ratio(contender.train_seconds, ours.train_seconds),
        "unetkit_infer_speedup": _median_ratio(contender.infer_seconds, ours.infer_seconds),
        "train_seconds": [round(s, 4) for s in contender.train_seconds],
        "infer_seconds": [round(s, 4) for s in contender.infer_seconds],
    }


def _median_ratio(theirs: list[float], ours: list[float]) -> float:
    return round(statistics.median(t / o for t, o in zip(theirs, ours)), 3)


COLUMNS = [  # header, row key, format spec
    ("model", "model", ""),
    ("dtype", "dtype", ""),
    ("params", "params", ","),
    ("GFLOP/img", "gflops_per_img", ".1f"),
    ("train img/s", "train_img_s", ".3f"),
    ("infer img/s", "infer_img_s", ".3f"),
    ("train MB", "peak_mem_mb", ".0f"),
    ("infer MB", "infer_peak_mem_mb", ".0f"),
    ("train %peak", "peak_fraction", ".1%"),
    ("matmul GF/s", "matmul_peak_gflops", ".0f"),
]


def print_table(rows: list[dict]) -> None:
    cells = [[format(row[key], spec) for _, key, spec in COLUMNS] for row in rows]
    print(reports.format_table([header for header, _, _ in COLUMNS], cells))
    ours = next(row for row in rows if row["model"] == UNETKIT)
    for row in rows:
        if row is not ours:
            print(
                f"{UNETKIT} / {row['model']} (median of per-round ratios): "
                f"training x{row['unetkit_train_speedup']:.2f}, inference x{row['unetkit_infer_speedup']:.2f}"
            )
    print(f"{ours['machine']}; device {ours['device']}, {ours['threads']} threads, "
          f"1-min load average before/after {ours['load_avg_1min']}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--size", type=int, default=256, help="image side")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds; medians are reported")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per model first")
    parser.add_argument("--base-width", type=int, default=64, help="channels of the first stage")
    parser.add_argument("--matmul-size", type=int, default=4096, help="side of the matmul that sets the peak")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument(
        "--reference-layout",
        choices=["contiguous", "channels_last"],
        default="contiguous",
        help="memory format of the reference models (recent milesial train.py uses channels_last)",
    )
    parser.add_argument(
        "--compile", action="store_true", help="add unetkit under `unetkit train --compile` (torch.compile) as a row"
    )
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    rows = run(args)
    print_table(rows)
    if args.json:
        atomic_write_text(args.json, json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
