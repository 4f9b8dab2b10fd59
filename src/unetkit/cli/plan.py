"""`unetkit plan DATA`: the configuration `unetkit train` would choose for a dataset on this
machine, every choice with its reason, written as YAML and printed as tables."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from unetkit.atomic import atomic_write_text
from unetkit.cli.options import add_config_options, add_groups
from unetkit.cli.shared import add_command, add_execution_options

log = logging.getLogger("unetkit")


def register(commands: argparse._SubParsersAction) -> None:
    parser = add_command(commands, "plan", "a configuration from the data and the machine, each choice with its reason")
    parser.add_argument("data", metavar="DIR", help="the dataset folder (any known layout)")
    parser.add_argument("--out", default="plan.yaml", metavar="YAML", help="where the plan is written (default plan.yaml)")
    groups = add_groups(parser)
    add_execution_options(groups["execution"])
    add_config_options(groups)  # a value you set is kept ("set by you"), as in train
    parser.set_defaults(func=run, config=None, preset=None, classes=None, in_channels=None)


def run(args: argparse.Namespace) -> int:
    from unetkit.cli.train import DEFAULT_BUDGET, _fixed_values, train_config
    from unetkit.device import select_device
    from unetkit.planning import format_plan, make_plan
    from unetkit.training.setup import prepare_data

    prepared = prepare_data(train_config(args), None, None)
    fixed = _fixed_values(args, prepared.config)
    budget = prepared.config.train.time if {"train.time", "train.steps", "train.epochs"} & fixed.keys() else DEFAULT_BUDGET
    plan = make_plan(prepared, budget_seconds=budget, device=select_device(args.device), fixed=fixed)
    print(format_plan(plan))
    atomic_write_text(Path(args.out), plan.to_yaml())
    log.info("wrote %s", args.out)
    return 0
