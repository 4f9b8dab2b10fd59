"""`unetkit` subcommands: each parses its arguments into the config tree and calls one function.

A new subcommand is a module with ``register(commands)`` (add its parser, ``set_defaults(func=run)``)
listed in ``SUBCOMMANDS``. Errors the user can fix (unetkit's own types) end as one line on stderr
and exit code 2; a batch in which some images failed ends with exit code 1.
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
from typing import Sequence

from unetkit.cli import cpu, infer, plan, tools, train, web
from unetkit.cli.shared import HelpFormatter
from unetkit.errors import Terminated, UnetkitError

SUBCOMMANDS = (train, plan, infer, tools, web)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unetkit", description="U-Net image segmentation", formatter_class=HelpFormatter)
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for subcommand in SUBCOMMANDS:
        subcommand.register(commands)
    return parser


def configure_logging(quiet: bool) -> None:
    """One-line messages on stderr; only rank 0 is chatty (the others warn and err)."""
    from unetkit.device.distributed import launched_as_main

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if not quiet and launched_as_main() else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm

    args = build_parser().parse_args(argv)
    started = cpu.sample_cpu()
    cpu.wait_passively()  # before configure_logging, whose imports load torch
    cpu.reuse_freed_memory()
    configure_logging(args.quiet)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    else:
        cpu.leave_busy_cores(started)
    try:
        with logging_redirect_tqdm():  # messages never tear a progress bar
            return args.func(args)
    except UnetkitError as exc:
        print(f"unetkit: error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("unetkit: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("unetkit: interrupted", file=sys.stderr)
        return 130


def run_command() -> None:
    """The ``unetkit`` program: ``main``, then exit with its status. The heap is frozen first: the
    interpreter's exit would otherwise collect every object torch's imports made (about 1 s on a
    2-core CPU, outside any ``--time`` budget), though the process is about to give it all back."""
    status = main()
    gc.freeze()
    raise SystemExit(status)

