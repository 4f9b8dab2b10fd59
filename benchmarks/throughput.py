"""Throughput of unetkit's U-Net against reference U-Nets: training and inference images/s.

Every model is the classic U-Net, 3 channels in, 1 class out, widths ``--base-width`` * (1, 2, 4,
8, 16). unetkit runs as its CLI would on this machine: the memory layout and precision that
``auto`` resolves to for its training step (``training.speed.step_execution``, as ``train`` does)
and, apart, for its forward pass on the benchmark's batch (``TorchNetwork``, as predict, evaluate
and serve do), with the trainer's fused AdamW and cuDNN autotuning; in three precisions: ``auto``
(the choices and their reasons come with every row), float32 and bfloat16. Each reference runs in
both memory layouts, as its project runs it (float32, milesial's RMSprop, MONAI's usual Adam; MONAI
only if it is installed) and, where unetkit's ``auto`` dtypes are not float32, in those too
(autocast as milesial's ``--amp`` does), which separates what the dtype buys from what unetkit's
own code buys. unetkit's default is then compared with each reference's faster layout, in training
and in inference apart (``throughput_report``).

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

    PYTHONPATH=src python benchmarks/throughput.py --size 256 --batch 4 --rounds 3 --json throughput.json  # {command, date, machine, rows}
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
from pathlib import Path
from typing import Sequence

import torch
from common import command_line, machine, matmul_gflops, process_peak_rss_mb, seconds, stamp, step_peak_memory_mb
from contenders import Contender, build_contenders, infer_step, train_step, unetkit_executions
from throughput_report import mark_faster_layouts, print_table
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from unetkit.atomic import atomic_write_text
from unetkit.cli.cpu import reuse_freed_memory
from unetkit.config import Config
from unetkit.device import select_device
from unetkit.device.precision import has_bf16_instructions
from unetkit.losses import build_loss
from unetkit.model.unet import count_parameters

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
    auto = unetkit_executions(args, device)
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
    dtypes = {c.compute_dtype for c in contenders} | {c.infer_compute_dtype for c in contenders}
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
        "precision_auto": str(auto.train.precision),
        "precision_auto_infer": str(auto.infer.precision),
        "probe_bf16_speedup": auto.train.precision.bf16_speedup,
        "layout_train": str(auto.train.layout),
        "layout_infer": str(auto.infer.layout),
        "bf16_row": "measured" if has_bf16_instructions() else "left out: bfloat16 is emulated on this class",
        "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    rows = []
    for contender in contenders:
        peak, infer_peak = peaks[contender.compute_dtype], peaks[contender.infer_compute_dtype]
        best = lambda rates: max(rates["before_best"], rates["after_best"])  # noqa: E731
        row = summarize(contender, contenders[0], args.batch, gflops[contender.name], best(peak), best(infer_peak))
        row["matmul_gflops"] = peak
        row["peak_mem_mb"] = round(step_peak_memory_mb(lambda: train(contender), device), 1)
        row["infer_peak_mem_mb"] = round(step_peak_memory_mb(lambda: infer(contender), device), 1)
        rows.append({**row, **setting})
    for row in rows:
        row["process_peak_rss_mb"] = round(process_peak_rss_mb())
    mark_faster_layouts(rows)
    return rows


def summarize(
    contender: Contender, ours: Contender, batch: int, gflops: float, peak_gflops: float, infer_peak_gflops: float
) -> dict:
    """One model's row; speedups are medians of per-round ratios, robust to load that drifts."""
    train_img_s = batch / statistics.median(contender.train_seconds)
    infer_img_s = batch / statistics.median(contender.infer_seconds)
    return {
        "model": contender.name,
        "params": count_parameters(contender.model),
        "dtype": str(contender.compute_dtype).removeprefix("torch."),
        "memory_format": _layout_name(contender.layout),
        "infer_memory_format": _layout_name(contender.infer_layout),
        "infer_dtype": str(contender.infer_compute_dtype).removeprefix("torch."),
        "reference_setting": contender.reference_setting,
        "optimizer": type(contender.optimizer).__name__,
        "gflops_per_img": round(gflops, 3),
        "train_img_s": round(train_img_s, 4),
        "infer_img_s": round(infer_img_s, 4),
        "peak_fraction": round(3 * gflops * train_img_s / peak_gflops, 4),
        "infer_peak_fraction": round(gflops * infer_img_s / infer_peak_gflops, 4),
        "matmul_peak_gflops": round(peak_gflops, 1),
        "unetkit_train_speedup": _median_ratio(contender.train_seconds, ours.train_seconds),
        "unetkit_infer_speedup": _median_ratio(contender.infer_seconds, ours.infer_seconds),
        "train_seconds": [round(s, 4) for s in contender.train_seconds],
        "infer_seconds": [round(s, 4) for s in contender.infer_seconds],
    }


def _layout_name(layout: torch.memory_format | None) -> str:
    return "channels_last" if layout == torch.channels_last else "contiguous"


def _median_ratio(theirs: list[float], ours: list[float]) -> float:
    return round(statistics.median(t / o for t, o in zip(theirs, ours)), 3)


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
    if args.json:  # a CPU class's child hands its bare rows to the parent, which publishes them
        written = rows if args.child_class != "native" else stamp({"command": command_line(__file__, argv), "rows": rows})
        atomic_write_text(args.json, json.dumps(written, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
