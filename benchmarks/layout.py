"""Memory layout and norm kernels: training steps/s of the U-Net the plan builds, per CPU class.

The plan trains an instance-norm U-Net (on a CPU: width 8-32, 256 px patches, batch 4) in the
precision ``auto`` measures on its channels-last step. This script times its optimizer step
(``training.speed``: warm-up, then the median of the 1-6 steps that fit about a second; 2-6 when
the committed JSON was made) for each norm kernel in both memory layouts, in interleaved rounds:

- ``instance (InstanceNorm2d)``: the module instance norm was built from before, which copies
  channels-last tensors to contiguous and back in both passes;
- ``instance (GroupNorm C/C)``: one group per channel, as unetkit builds it now;
- ``batch``: batch norm, for comparison.

Per width it prints steps/s (medians over rounds), the layout ``layout.choice_for_speedup`` picks for
the shipped instance norm from these figures, and what that choice gains over the earlier default
(InstanceNorm2d, channels-last). ``--cpu-class`` repeats it in subprocesses with the capability
masks of ``throughput.CPU_CLASSES``.

    PYTHONPATH=src python benchmarks/layout.py --widths 16 32 --rounds 3 --cpu-class native avx512-bf16 avx2
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Sequence

import torch
from common import command_line, machine, publish
from throughput import CPU_CLASSES, rows_in_class
from torch import nn

from unetkit import tables
from unetkit.cli.cpu import reuse_freed_memory
from unetkit.config import Norm, UNetConfig
from unetkit.device import Timing, resolve_precision
from unetkit.device.layout import choice_for_speedup
from unetkit.model import UNet
from unetkit.training.speed import network_steps_per_second, training_subject

EARLIER = "instance (InstanceNorm2d)"
SHIPPED = "instance (GroupNorm C/C)"
NORMS: dict[str, Norm] = {EARLIER: "instance", SHIPPED: "instance", "batch": "batch"}
LAYOUTS = {"channels-last": True, "contiguous": False}


def build(name: str, model: UNetConfig) -> nn.Module:
    net = UNet(model)
    if name == EARLIER:
        for block in net.modules():
            for index, layer in block.named_children():
                if isinstance(layer, nn.GroupNorm):
                    setattr(block, index, nn.InstanceNorm2d(layer.num_channels, affine=True))
    return net


def shipped_step_timing(args: argparse.Namespace, model: UNetConfig) -> Timing:
    """The shipped U-Net's channels-last training step, as the plan times it for ``--precision auto``."""
    return Timing(training_subject(model, args.patch, args.batch, True), lambda dtype: network_steps_per_second(
        build(SHIPPED, model), model, args.patch, args.batch, torch.device("cpu"), dtype, True))


def measure(args: argparse.Namespace, width: int) -> list[dict]:
    """Rows for one width: every norm kernel in both layouts, ``args.rounds`` interleaved rounds."""
    device = torch.device("cpu")
    models = {name: UNetConfig(in_channels=3, classes=1, base_width=width, norm=norm) for name, norm in NORMS.items()}
    precision = resolve_precision(device, "auto", shipped_step_timing(args, models[SHIPPED]))
    rates: dict[tuple[str, str], list[float]] = {(n, layout): [] for n in NORMS for layout in LAYOUTS}
    for _ in range(args.rounds):
        for name, layout in rates:
            net = build(name, models[name])
            rates[name, layout].append(
                network_steps_per_second(net, models[name], args.patch, args.batch, device, precision.dtype, LAYOUTS[layout])
            )
    median = {key: statistics.median(values) for key, values in rates.items()}
    chosen_layout = choice_for_speedup(median[SHIPPED, "contiguous"] / median[SHIPPED, "channels-last"], "training step").name
    before = median[EARLIER, "channels-last"]
    return [
        {"width": width, "precision": str(precision), "norm": name, "layout": layout,
         "steps_per_s": round(median[name, layout], 4), "rounds": [round(r, 4) for r in rates[name, layout]],
         "vs_earlier_default": round(median[name, layout] / before, 3),
         "plan_choice": name == SHIPPED and layout == chosen_layout}
        for name, layout in rates
    ]  # fmt: skip


def run(args: argparse.Namespace) -> list[dict]:
    reuse_freed_memory()  # as the CLI runs
    setting = {"cpu_class": args.child_class, "cpu_mask": CPU_CLASSES[args.child_class], "machine": machine(),
               "threads": torch.get_num_threads(), "patch": args.patch, "batch": args.batch}  # fmt: skip
    return [{**row, **setting} for width in args.widths for row in measure(args, width)]


def child_argv(args: argparse.Namespace) -> list[str]:
    return ["--widths", *map(str, args.widths), "--rounds", str(args.rounds), "--patch", str(args.patch),
            "--batch", str(args.batch)]  # fmt: skip


def table(rows: list[dict]) -> str:
    header = ["class", "width", "precision", "norm", "layout", "steps/s", "x earlier default", "plan's choice"]
    cells = [[r["cpu_class"], str(r["width"]), r["precision"].split(" ")[0], r["norm"], r["layout"], f"{r['steps_per_s']:.3f}",
              f"{r['vs_earlier_default']:.2f}", "<-" if r["plan_choice"] else ""] for r in rows]  # fmt: skip
    return tables.format_table(header, cells) + f"\n{rows[0]['machine']}, {rows[0]['threads']} threads"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32], help="base widths (the plan's CPU range is 8-32)")
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpu-class", nargs="+", choices=list(CPU_CLASSES), default=["native"])
    parser.add_argument("--child-class", choices=list(CPU_CLASSES), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.child_class:
        rows = run(args)
        args.json.write_text(json.dumps(rows))
        return rows
    rows = [row for cpu_class in args.cpu_class for row in rows_in_class(__file__, child_argv(args), cpu_class)]
    return publish({"command": command_line(__file__, argv), "rows": rows}, table(rows), args.json)["rows"]


if __name__ == "__main__":
    main()
