"""`unetkit train`: a folder of images and masks -> a run folder."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unetkit.atomic import atomic_write_text
from unetkit.cli.options import add_config_options, add_groups, apply_options, config_flags, flag_table, get_path, set_path
from unetkit.cli.shared import add_command, add_execution_options
from unetkit.config import Config
from unetkit.errors import ConfigError

if TYPE_CHECKING:
    from unetkit.training.setup import PreparedData

log = logging.getLogger("unetkit")
DEFAULT_BUDGET = 30 * 60.0  # seconds, when neither a budget nor a length is given

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
RESUME_FLAGS = config_flags("--epochs", "--steps", "--time", "--workers", "--log-every", "--max-pixels")


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
    add_execution_options(groups["execution"])
    add_config_options(groups)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from unetkit.training import distributed
    from unetkit.training.setup import save_weight_maps

    started = time.monotonic()
    prepared = _resumed(args) if args.resume else _planned(args)
    if args.save_weight_maps and distributed.launched_as_main():
        written = save_weight_maps(prepared, Path(args.out) / "weight_maps")
        log.info("wrote %d weight map image(s) into %s", len(written), Path(args.out) / "weight_maps")
    _fit(prepared, args, started)
    return 0


def _fit(prepared: PreparedData, args: argparse.Namespace, started: float) -> None:
    """One run, or every fold of ``--folds K`` (without ``--fold``) into RUN/fold_K/."""
    from unetkit.training.folds import fit_folds
    from unetkit.training.trainer import fit

    out, config = Path(args.out), prepared.config
    config.train.time = _time_left(config.train.time, started, args.resume)
    if not _all_folds(args, config):
        row = fit(prepared, out, resume=args.resume, device=args.device)
        if row:
            log.info("done: best checkpoint %s (val Dice at the end %.4f)", out / "best.pt", row["val_dice"])
        return
    deadline = time.monotonic() + config.train.time if config.train.time else None
    if not args.resume:
        config.train.time /= config.data.folds  # every fold's config holds its share
    fit_folds(lambda fold: _fold_data(config, fold), config.data.folds, out, resume=args.resume, device=args.device,
              deadline=deadline)  # fmt: skip
    log.info("done: %d folds in %s; predict with --checkpoint %s (their ensemble)", config.data.folds, out, out)


def _all_folds(args: argparse.Namespace, config: Config) -> bool:
    return config.data.folds > 1 and getattr(args, "data.fold") is None


def _fold_data(config: Config, fold: int) -> PreparedData:
    from unetkit.training.setup import prepare_data

    fold_config = copy.deepcopy(config)
    fold_config.data.fold = fold
    return prepare_data(fold_config, config.model.classes, config.model.in_channels, keep_labels=True)


def _time_left(budget: float, started: float, resumed: bool) -> float:
    """The training's share of a budget counted from the command's start (planning is in it)."""
    if not budget or resumed:
        return budget
    return max(1.0, budget - (time.monotonic() - started))


def _resumed(args: argparse.Namespace) -> PreparedData:
    from unetkit.training.setup import prepare_data

    out = Path(args.out)
    folds = sorted(out.glob("fold_*/last.pt"))
    config = resumed_config(folds[0] if folds and not (out / "last.pt").exists() else out / "last.pt", args)
    return prepare_data(config, config.model.classes, config.model.in_channels, keep_labels=True)


def _planned(args: argparse.Namespace) -> PreparedData:
    """The data prepared with the given configuration, then (unless --no-plan or --config) the plan
    for it: every value the user did not set is chosen from the data, the machine and the budget."""
    from unetkit.training.setup import prepare_data

    config = train_config(args)
    classes = args.classes if args.classes else (2 if args.preset == "paper" else None)
    prepared = prepare_data(config, classes, args.in_channels)
    if args.no_plan or args.config:
        return prepared
    from unetkit.device import select_device
    from unetkit.planning import format_plan, make_plan
    from unetkit.training import distributed

    fixed = _fixed_values(args, prepared.config)
    if not {"train.time", "train.steps", "train.epochs"} & fixed.keys():
        prepared.config.train.time = DEFAULT_BUDGET
        log.info("no --time, --steps or --epochs: training for %.0f minutes (set --time)", DEFAULT_BUDGET / 60)
    plan = make_plan(prepared, budget_seconds=prepared.config.train.time, device=select_device(args.device),
                     fixed=fixed)
    if distributed.launched_as_main():
        log.info("%s", format_plan(plan))
        Path(args.out).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(args.out) / "plan.yaml", plan.to_yaml())
    # Each rank measured its own speeds; all must train rank 0's plan (the one plan.yaml shows).
    return dataclasses.replace(prepared, config=distributed.from_main(plan.config, distributed.setup(args.device)))


def _fixed_values(args: argparse.Namespace, config: Config) -> dict[str, Any]:
    """Config paths the user set (flags, the preset) with their values: the plan keeps them."""
    fixed = {path: value for path, value in PRESETS.get(args.preset, {}).items()}
    fixed.update({path: getattr(args, path) for _, _, path in flag_table() if getattr(args, path, None) is not None})
    if "train.epochs" in fixed:
        fixed.setdefault("train.steps", 0)  # the steps follow the epochs you set
    return {path: get_path(config, path) for path in fixed}


def train_config(args: argparse.Namespace) -> Config:
    """Dataclass defaults < config file < preset < flags."""
    config = Config.load(args.config) if args.config else Config()
    for path, value in PRESETS.get(args.preset, {}).items():
        set_path(config, path, value)
    config.data.path = str(args.data)
    return apply_options(config, args)


def resumed_config(last: Path, args: argparse.Namespace) -> Config:
    """The run's own config; the data folder and the ``RESUME_FLAGS`` may change between the runs."""
    from unetkit.checkpoint import load_checkpoint

    if not last.exists():
        raise ConfigError(f"{last}: nothing to resume; start without --resume")
    config = load_checkpoint(last)["config"]
    config.data.path = str(args.data)
    return apply_options(config, args, RESUME_FLAGS)
