"""`unetkit train`: a folder of images and masks -> a run folder."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from unetkit.cli.options import add_config_options, add_groups, apply_options, config_flags, set_path
from unetkit.cli.shared import add_command, add_execution_options
from unetkit.config import Config
from unetkit.errors import ConfigError

log = logging.getLogger("unetkit")

PRESETS: dict[str, dict[str, Any]] = {
    # Ronneberger et al. 2015: unpadded convs, no norm, 64..1024, transposed up, dropout, He init,
    # SGD momentum 0.99, batch 1 of large tiles, border-weighted softmax CE, elastic deformation.
    "paper": {
        "model.padding": "valid", "model.norm": "none", "model.base_width": 64, "model.depth": 4,
        "model.upsample": "transpose", "model.dropout": 0.5, "model.init": "he",
        "train.optimizer": "sgd", "train.momentum": 0.99, "train.lr": 0.01, "train.weight_decay": 0.0,
        "train.batch_size": 1, "train.loss": "weighted-ce", "train.scheduler": "none",
        "data.patch_size": 572, "data.augment": "paper", "data.weight_map": True,
        "predict.tile_size": 572,
    },
}  # fmt: skip
# What may change when a run resumes; the rest comes from the run, so model and labels match its weights.
RESUME_FLAGS = config_flags("--epochs", "--workers", "--log-every", "--max-pixels")


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
    groups["training"].add_argument("--resume", action="store_true", help="continue from RUN/last.pt")
    groups["training"].add_argument("--save-weight-maps", action="store_true",
                                    help="draw the training weight maps into RUN/weight_maps/")  # fmt: skip
    groups["execution"].add_argument("--amp", dest="train.precision", action="store_const", const="auto",
                                     help="mixed precision (the default; same as --precision auto)")  # fmt: skip
    add_execution_options(groups["execution"])
    add_config_options(groups)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from unetkit.training import distributed
    from unetkit.training.setup import prepare_data, save_weight_maps
    from unetkit.training.trainer import fit

    if args.resume:
        config = resumed_config(Path(args.out), args)
        prepared = prepare_data(config, config.model.classes, config.model.in_channels, keep_labels=True)
    else:
        config = train_config(args)
        classes = args.classes if args.classes else (2 if args.preset == "paper" else None)
        prepared = prepare_data(config, classes, args.in_channels)
    if args.save_weight_maps and distributed.launched_as_main():
        written = save_weight_maps(prepared, Path(args.out) / "weight_maps")
        log.info("wrote %d weight map image(s) into %s", len(written), Path(args.out) / "weight_maps")
    row = fit(prepared, Path(args.out), resume=args.resume, device=args.device)
    if row:
        log.info("done: best checkpoint %s (val Dice of the last epoch %.4f)", Path(args.out) / "best.pt", row["val_dice"])
    return 0


def train_config(args: argparse.Namespace) -> Config:
    """Dataclass defaults < config file < preset < flags."""
    config = Config.load(args.config) if args.config else Config()
    for path, value in PRESETS.get(args.preset, {}).items():
        set_path(config, path, value)
    config.data.path = str(args.data)
    return apply_options(config, args)


def resumed_config(out: Path, args: argparse.Namespace) -> Config:
    """The run's own config; the data folder and the ``RESUME_FLAGS`` may change between the runs."""
    from unetkit.checkpoint import load_checkpoint

    if not (out / "last.pt").exists():
        raise ConfigError(f"{out / 'last.pt'}: nothing to resume; start without --resume")
    config = load_checkpoint(out / "last.pt")["config"]
    config.data.path = str(args.data)
    return apply_options(config, args, RESUME_FLAGS)
