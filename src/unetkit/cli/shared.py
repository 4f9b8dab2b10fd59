"""What several subcommands share: how a subcommand is added, and the execution options."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Wider option column, so flag, metavar and help read as one line where they fit."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=34, width=110)


def add_command(commands: argparse._SubParsersAction, name: str, summary: str) -> argparse.ArgumentParser:
    return commands.add_parser(name, help=summary, description=summary, formatter_class=HelpFormatter)


def add_execution_options(group: argparse._ArgumentGroup, device: bool = True) -> None:
    """Where and how the computation runs: the device (for subcommands that choose one) and CPU threads."""
    if device:
        group.add_argument("--device", default="auto", metavar="DEVICE",
                           help="auto (a CUDA GPU if there is one, else the CPU), cpu, cuda or cuda:N (default auto)")  # fmt: skip
    group.add_argument(
        "--threads", type=positive_int, metavar="N",
        help="CPU threads for torch (default: torch's, one per core); on a CPU shared with other jobs, "
        "fewer threads than cores avoids threads waiting on each other",
    )  # fmt: skip


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value
