"""`unetkit plan DATA`: the configuration `unetkit train` would choose for a dataset on this
machine, every choice with its reason (``unetkit.plan``), written as YAML and printed as tables."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from unetkit.atomic import atomic_write_text
from unetkit.cli.options import add_config_options, add_groups, given_settings
from unetkit.cli.shared import add_command, add_execution_options

log = logging.getLogger("unetkit")


def register(commands: argparse._SubParsersAction) -> None:
    parser = add_command(commands, "plan", "a configuration from the data and the machine, each choice with its reason")
    parser.add_argument("data", metavar="DIR", help="the dataset folder (any known layout)")
    parser.add_argument("--out", default="plan.yaml", metavar="YAML", help="where the plan is written (default plan.yaml)")
    groups = add_groups(parser)
    add_execution_options(groups["execution"])
    add_config_options(groups)  # a value you set is kept ("set by you"), as in train
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from unetkit.api import plan
    from unetkit.planning.plan import format_plan

    chosen = plan(args.data, device=args.device, **given_settings(args))
    print(format_plan(chosen))
    atomic_write_text(Path(args.out), chosen.to_yaml())
    log.info("wrote %s", args.out)
    return 0
