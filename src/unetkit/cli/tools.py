"""`unetkit demo` and `unetkit data ...`: the embedded demo and the dataset tools."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from unetkit.cli.options import option_keywords
from unetkit.cli.shared import add_command, add_execution_options


def register(commands: argparse._SubParsersAction) -> None:
    demo = add_command(commands, "demo", "the whole loop on generated data, on a CPU, in minutes")
    demo.add_argument("--out", default="demo-run", metavar="DIR", help="where the demo writes (default demo-run)")
    demo.add_argument("--seed", type=int, default=0, metavar="N", help="generated data and training (default 0)")
    demo.add_argument("--epochs", type=int, default=None, metavar="N", help="(default: the demo's own; with --dims 3: steps)")
    demo.add_argument("--dims", type=int, default=2, choices=(2, 3), help="2: images; 3: volumes and a 3D U-Net (default 2)")
    add_execution_options(demo.add_argument_group("execution"), device=False)
    demo.set_defaults(func=run_demo)

    data = add_command(commands, "data", "dataset tools").add_subparsers(dest="data_command", required=True, metavar="TOOL")
    inspect = add_command(data, "inspect", "what a dataset folder holds and how training would read it")
    inspect.add_argument("data", metavar="DIR", help="the dataset folder")
    inspect.add_argument("--layout", **option_keywords("data.layout"))
    inspect.add_argument("--json", action="store_true", help="print JSON instead of a table")
    inspect.set_defaults(func=run_inspect)


def run_demo(args: argparse.Namespace) -> int:
    from unetkit.demo import run_demo

    run_demo(Path(args.out), seed=args.seed, epochs=args.epochs, dims=args.dims)
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    from unetkit.data.inspect import format_inspection, inspect_dataset

    report = inspect_dataset(args.data, args.layout or "auto")
    print(json.dumps(report, indent=2, default=str) if args.json else format_inspection(report))
    return 0
