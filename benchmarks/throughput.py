"""Throughput of unetkit's U-Net against reference U-Nets: training and inference images/s.

Every model is the classic U-Net, 3 channels in, 1 class out, widths ``--base-width`` * (1, 2, 4,
8, 16). unetkit runs with the execution settings its trainer and predictor use (channels_last, the
trainer's fused AdamW, cuDNN autotuning) in three precisions: ``auto`` (what ``--precision auto``
chooses on this machine; the choice and its reason come with every row), float32 and bfloat16.
Each reference runs twice: as its project runs it (float32, contiguous tensors, milesial's RMSprop,
MONAI's usual Adam; MONAI only if it is installed), and at unetkit's ``auto`` dtype and layout
(autocast as milesial's ``--amp`` does, channels_last), which separates what the dtype buys from
what unetkit's own code buys.

All models live in one process; after ``--warmup`` steps each, ``--rounds`` rounds interleave
the models, so a busy machine slows all of them alike; images/s are medians over rounds and the
speedups medians of per-round ratios. Per model: parameters, forward GFLOPs per image
(FlopCounterMode), training images/s (forward, loss, backward, optimizer step), inference
images/s, the peak memory one training / inference step allocates (profiler allocation events on
the CPU, the CUDA allocator's peak on a GPU; the process's peak RSS comes with every row), and
peak_fraction: achieved model FLOP/s (training = 3 x forward) over the FLOP/s of a matmul in the
same dtype, the best of ``--matmul-repeats`` before and as many after the rounds (their median and
worst come with it: the spread shows how busy the machine was).

``--cpu-class`` measures once per CPU class, each in a subprocess whose environment masks what
this CPU has: ``avx512-bf16`` (oneDNN without AMX), ``avx512`` (oneDNN without bfloat16
instructions), ``avx2`` (oneDNN, ATen and MKL at AVX2, TorchInductor building for an AVX2 CPU);
``native`` is the CPU as it is.
``--compile`` adds a row for unetkit under ``unetkit train --compile``.

    PYTHONPATH=src python benchmarks/throughput.py --size 256 --batch 4 --rounds 3 --json throughput.json
    PYTHONPATH=src python benchmarks/throughput.py --cpu-class native avx512-bf16 avx2 --json classes.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from common import machine, matmul_gflops, process_peak_rss_mb, seconds, step_peak_memory_mb
from reference_unets import REFERENCES
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from unetkit import tables
from unetkit.atomic import atomic_write_text
from unetkit.cli.cpu import reuse_freed_memory
from unetkit.config import Config, UNetConfig
from unetkit.device import EagerFallback, PrecisionChoice, autocast, maybe_compile, memory_format, resolve_precision, select_device
from unetkit.device.precision import has_bf16_instructions
from unetkit.losses import build_loss
from unetkit.model.unet import UNet, count_parameters
from unetkit.training.speed import step_timing
from unetkit.training.step import build_optimizer

UNETKIT = "unetkit"
UNETKIT_COMPILED = "unetkit+compile"
# Environments that make this CPU behave as a lesser one (oneDNN, ATen and MKL read them at start;
# .ci/run runs the default suite's fast subset under "avx2"). TorchInductor follows ATen's capability
# for its vector code but compiles with -march=native: on an AVX-512 CPU that mix miscompiles (the
# compiled U-Net's backward aborts, torch 2.13), so "avx2" also builds for an AVX2 CPU (x86-64-v3).
CPU_CLASSES: dict[str, dict[str, str]] = {
    "native": {},
    "avx512-bf16": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"},
    "avx512": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
             "TORCHINDUCTOR_CPP_MARCH": "x86-64-v3"},
}


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


def build_contenders(args: argparse.Namespace, device: torch.device, auto: PrecisionChoice) -> list[Contender]:
    """unetkit in its three precisions (and compiled, if asked), then each reference as shipped and
    at unetkit's ``auto`` dtype and layout."""
    config = Config(model=UNetConfig(in_channels=3, classes=1, base_width=args.base_width))
    unetkit_layout = memory_format(config.train.channels_last)

    def unetkit_contender(name: str, precision: str, compiled: bool = False) -> Contender:
        model = UNet(config.model).to(device, memory_format=unetkit_layout)
        dtype = auto.dtype if precision == "auto" else resolve_precision(device, precision).dtype
        runner = maybe_compile(model, compiled)  # as the trainer runs `--compile`
        return Contender(name, model, build_optimizer(model, config), dtype, unetkit_layout, True, runner)

    contenders = [unetkit_contender(UNETKIT, "auto"), unetkit_contender(f"{UNETKIT} float32", "32")]
    if has_bf16_instructions():  # else emulated (auto does not time it): minutes per step at these sizes
        contenders.append(unetkit_contender(f"{UNETKIT} bfloat16", "bf16"))
    if args.compile:
        contenders.append(unetkit_contender(UNETKIT_COMPILED, "auto", compiled=True))
    settings = {"": (None, torch.contiguous_format), ", unetkit's dtype+layout": (auto.dtype, unetkit_layout)}
    for reference in REFERENCES:
        for suffix, (dtype, layout) in settings.items():
            model = reference.build(3, 1, args.base_width)
            if model is not None:
                model = model.to(device, memory_format=layout)
                contenders.append(Contender(reference.name + suffix, model, reference.optimizer(model), dtype, layout, False))
    return contenders


def auto_precision(args: argparse.Namespace, device: torch.device) -> PrecisionChoice:
    """What ``--precision auto`` chooses for unetkit's training step here, timed as training times it."""
    config = Config(model=UNetConfig(in_channels=3, classes=1, base_width=args.base_width))
    config.data.patch_size, config.train.batch_size = args.size, args.batch
    return resolve_precision(device, "auto", step_timing(config, device))


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


# --- the run ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> list[dict]:
    # As the CLI runs: the process keeps freed memory (every model here, references too, gains from it).
    reuse_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    torch.manual_seed(0)
    auto = auto_precision(args, device)
    contenders = build_contenders(args, device, auto)
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
    # The machine's best in this run, measured before and after: the load may change in between.
    peaks = {dtype: matmul_gflops(device, dtype, args.matmul_size, args.matmul_repeats) for dtype in dtypes}
    for contender in contenders:
        for _ in range(args.warmup):
            train(contender)
            infer(contender)
    for _ in range(args.rounds):
        for contender in contenders:
            contender.train_seconds.append(seconds(lambda: train(contender), device))
        for contender in contenders:
            contender.infer_seconds.append(seconds(lambda: infer(contender), device))
    after = {dtype: matmul_gflops(device, dtype, args.matmul_size, args.matmul_repeats) for dtype in dtypes}
    peaks = {dtype: {f"{when}_{key}": value for when, rates in (("before", peaks[dtype]), ("after", after[dtype]))
                     for key, value in rates.items()} for dtype in dtypes}  # fmt: skip

    setting = {
        "machine": machine(),
        "cpu_class": args.child_class,
        "cpu_mask": CPU_CLASSES[args.child_class],
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "size": args.size,
        "batch": args.batch,
        "precision_auto": str(auto),
        "probe_bf16_speedup": auto.bf16_speedup,
        "bf16_row": "measured" if has_bf16_instructions() else "left out: bfloat16 is emulated on this class",
        "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    rows = []
    for contender in contenders:
        peak = peaks[contender.compute_dtype]
        row = summarize(contender, contenders[0], args.batch, gflops[contender.name], max(peak["before_best"], peak["after_best"]))
        row["matmul_gflops"] = peak
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
    ("layout", "memory_format", ""),
    ("GFLOP/img", "gflops_per_img", ".1f"),
    ("train img/s", "train_img_s", ".3f"),
    ("infer img/s", "infer_img_s", ".3f"),
    ("unetkit x train", "unetkit_train_speedup", ".2f"),
    ("unetkit x infer", "unetkit_infer_speedup", ".2f"),
    ("train MB", "peak_mem_mb", ".0f"),
    ("train %peak", "peak_fraction", ".1%"),
    ("matmul GF/s", "matmul_peak_gflops", ".0f"),
]


def print_table(rows: list[dict]) -> None:
    """One table per CPU class; "unetkit x" columns: how many times faster unetkit (auto) ran."""
    for cpu_class in dict.fromkeys(row["cpu_class"] for row in rows):
        group = [row for row in rows if row["cpu_class"] == cpu_class]
        cells = [[format(row[key], spec) for _, key, spec in COLUMNS] for row in group]
        first = group[0]
        print(f"\nCPU class {cpu_class} {first['cpu_mask'] or ''}: precision auto = {first['precision_auto']}; "
              f"unetkit bfloat16 row {first['bf16_row']}")
        print(tables.format_table([header for header, _, _ in COLUMNS], cells))
        spreads = {row["dtype"]: row["matmul_gflops"] for row in group}
        for dtype, rates in spreads.items():
            print(f"matmul {dtype} GFLOP/s (best/median/worst) before {rates['before_best']}/{rates['before_median']}/"
                  f"{rates['before_worst']}, after {rates['after_best']}/{rates['after_median']}/{rates['after_worst']}")
        print(f"{first['machine']}; device {first['device']}, {first['threads']} threads, "
              f"1-min load average before/after {first['load_avg_1min']}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--size", type=int, default=256, help="image side")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds; medians are reported")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per model first")
    parser.add_argument("--base-width", type=int, default=64, help="channels of the first stage")
    parser.add_argument("--matmul-size", type=int, default=2048, help="side of the matmul that sets the peak")
    parser.add_argument("--matmul-repeats", type=int, default=10, help="matmuls timed before and after the rounds")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--cpu-class", nargs="+", choices=list(CPU_CLASSES), default=["native"],
                        help="CPU classes to measure, each in a subprocess with its mask (default: native, in process)")  # fmt: skip
    parser.add_argument("--child-class", choices=list(CPU_CLASSES), default="native", help=argparse.SUPPRESS)
    parser.add_argument(
        "--compile", action="store_true", help="add unetkit under `unetkit train --compile` (torch.compile) as a row"
    )
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    return parser.parse_args(argv)


def rows_in_class(script: str, argv: list[str], cpu_class: str) -> list[dict]:
    """``script`` with ``argv`` in a fresh process with ``cpu_class``'s environment (oneDNN, ATen
    and MKL read it at start): the rows it writes to ``--json``."""
    with tempfile.TemporaryDirectory(prefix="masked-") as temporary:
        out = Path(temporary) / "rows.json"
        command = [sys.executable, script, *argv, "--child-class", cpu_class, "--json", str(out)]
        subprocess.run(command, env={**os.environ, **CPU_CLASSES[cpu_class]}, check=True, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())


def main(argv: Sequence[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.cpu_class == ["native"] or args.child_class != "native":
        rows = run(args)
    else:
        argv = list(sys.argv[1:] if argv is None else argv)
        shared = argv[: argv.index("--cpu-class")] + [a for a in argv[argv.index("--cpu-class") + 1:] if a not in CPU_CLASSES]
        shared = [a for i, a in enumerate(shared) if a != "--json" and (i == 0 or shared[i - 1] != "--json")]
        rows = [row for cpu_class in args.cpu_class for row in rows_in_class(__file__, shared, cpu_class)]
    if args.child_class == "native":
        print_table(rows)
    if args.json:
        atomic_write_text(args.json, json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
