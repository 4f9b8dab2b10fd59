"""`unetkit train`: a folder of images and masks -> a run folder (``unetkit.train``)."""

from __future__ import annotations

import argparse

from unetkit.cli.options import add_config_options, add_groups, given_settings
from unetkit.cli.shared import add_command, add_execution_options
from unetkit.planning.policy import PRESETS


def register(commands: argparse._SubParsersAction) -> None:
    parser = add_command(commands, "train", "train a U-Net on a folder of images and masks")
    parser.add_argument("--out", required=True, metavar="RUN", help="run folder (checkpoints, logs, plots)")
    parser.add_argument("--config", metavar="YAML", help="start from this config (e.g. a run's config.yaml)")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a named setting; its flags can be overridden")
    groups = add_groups(parser)
    groups["data"].add_argument("--data", required=True, metavar="DIR", help="the dataset folder (any known layout)")
    groups["model"].add_argument("--classes", type=int, metavar="K",
                                 help="1 = binary (sigmoid); K >= 2 = softmax (default: from the masks)")  # fmt: skip
    groups["model"].add_argument("--in-channels", type=int, metavar="N", help="(default: from the images, grey 1, colour 3)")
    groups["training"].add_argument("--resume", action="store_true", help="continue from RUN/last.pt (a folds run: RUN)")
    groups["training"].add_argument("--no-plan", action="store_true",
                                    help="train with the configuration's defaults instead of a plan from the data and "
                                    "the machine (unetkit plan shows what the plan would choose)")  # fmt: skip
    groups["training"].add_argument("--save-weight-maps", action="store_true",
                                    help="draw the training weight maps into RUN/weight_maps/")  # fmt: skip
    groups["execution"].add_argument("--amp", dest="train.precision", action="store_const", const="auto",
                                     help="mixed precision (the default; same as --precision auto)")  # fmt: skip
    for flag, layout in (("--channels-last", "channels-last"), ("--no-channels-last", "contiguous")):
        groups["execution"].add_argument(flag, dest="train.memory_layout", action="store_const", const=layout,
                                         help=f"same as --memory-layout {layout}")  # fmt: skip
    add_execution_options(groups["execution"])
    add_config_options(groups)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from unetkit.api import train

    train(
        args.data, args.out, device=args.device, config=args.config, preset=args.preset, classes=args.classes,
        in_channels=args.in_channels, use_plan=False if args.no_plan else None, resume=args.resume,
        save_weight_maps=args.save_weight_maps, **given_settings(args),
    )
    return 0
