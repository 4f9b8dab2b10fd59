"""`unetkit` subcommands: each parses its arguments into the config tree and calls one function.

Errors that the user can fix (unetkit's own types) end as one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, Sequence

from unetkit.config import Config
from unetkit.errors import ConfigError, Terminated, UnetkitError

log = logging.getLogger("unetkit")

# (flag, config path, argparse keywords): flags left unset keep the preset's or the config file's value.
TRAIN_OPTIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("--val-data", "data.val_path", {"metavar": "DIR", "help": "a separate validation folder"}),
    ("--val-fraction", "data.val_fraction", {"type": float, "help": "share of groups held out (default 0.2)"}),
    ("--folds", "data.folds", {"type": int, "help": "K-fold cross-validation over groups"}),
    ("--fold", "data.fold", {"type": int, "help": "which fold validates (0..K-1)"}),
    ("--layout", "data.layout", {"help": "dataset layout (default: detect)"}),
    ("--strict", "data.strict", {"action": "store_true", "default": None, "help": "unmatched files are an error"}),
    ("--pets-mode", "data.pets_mode", {"choices": ["trimap", "binary", "binary-ignore"]}),
    ("--ctc-truth", "data.ctc_truth", {"choices": ["gold", "silver", "both"]}),
    ("--image-size", "data.image_size", {"type": int, "help": "resize images to N x N"}),
    ("--patch-size", "data.patch_size", {"type": int, "help": "train on random N x N patches (network input)"}),
    ("--augment", "data.augment", {"choices": ["none", "light", "paper", "strong"]}),
    ("--cache", "data.cache", {"choices": ["none", "ram"], "help": "keep decoded images in memory"}),
    ("--normalize", "data.normalize.mode", {"choices": ["scale", "meanstd", "percentile"]}),
    ("--weight-map", "data.weight_map", {"action": "store_true", "default": None, "help": "the paper's border weight map"}),
    ("--max-pixels", "data.max_pixels", {"type": int, "help": "refuse larger images (decompression bombs)"}),
    ("--base-width", "model.base_width", {"type": int}),
    ("--depth", "model.depth", {"type": int}),
    ("--norm", "model.norm", {"choices": ["batch", "instance", "group", "none"]}),
    ("--padding", "model.padding", {"choices": ["same", "valid"]}),
    ("--upsample", "model.upsample", {"choices": ["transpose", "bilinear"]}),
    ("--dropout", "model.dropout", {"type": float}),
    ("--init", "model.init", {"choices": ["default", "he"]}),
    ("--checkpoint-activations", "model.checkpoint_activations", {"action": "store_true", "default": None}),
    ("--epochs", "train.epochs", {"type": int}),
    ("--batch-size", "train.batch_size", {"type": int}),
    ("--lr", "train.lr", {"type": float}),
    ("--optimizer", "train.optimizer", {"choices": ["adamw", "sgd"]}),
    ("--momentum", "train.momentum", {"type": float}),
    ("--weight-decay", "train.weight_decay", {"type": float}),
    ("--scheduler", "train.scheduler", {"choices": ["cosine", "none"]}),
    ("--warmup-epochs", "train.warmup_epochs", {"type": int}),
    ("--loss", "train.loss", {"choices": ["bce", "ce", "dice", "bce+dice", "ce+dice", "weighted-bce", "weighted-ce"]}),
    ("--precision", "train.precision", {"choices": ["auto", "32", "bf16", "fp16"], "help": "default auto: bf16 where native"}),
    ("--compile", "train.compile", {"action": "store_true", "default": None, "help": "torch.compile the model"}),
    ("--seed", "train.seed", {"type": int}),
    ("--deterministic", "train.deterministic", {"action": "store_true", "default": None}),
    ("--workers", "train.workers", {"type": int, "help": "data loader processes"}),
    ("--log-every", "train.log_every", {"type": int}),
    ("--grad-clip", "train.grad_clip", {"type": float}),
    ("--max-bad-steps", "train.max_bad_steps", {"type": int}),
    ("--sync-batchnorm", "train.sync_batchnorm", {"action": "store_true", "default": None}),
    ("--tensorboard", "train.tensorboard", {"action": "store_true", "default": None}),
    ("--samples", "train.samples", {"type": int, "help": "validation images drawn per epoch"}),
    ("--tile-size", "predict.tile_size", {"type": int, "help": "inference tile (network input)"}),
    ("--overlap", "predict.overlap", {"type": float, "help": "tile overlap fraction"}),
    ("--blend", "predict.blend", {"choices": ["gaussian", "linear", "constant"]}),
    ("--tta", "predict.tta", {"action": "store_true", "default": None, "help": "average the 8 flips/rotations"}),
    ("--threshold", "predict.threshold", {"type": float}),
]
# The pixel limit too: the error for a large image names the flag that raises it.
PREDICT_OPTIONS = [option for option in TRAIN_OPTIONS if option[1].startswith("predict.") or option[0] == "--max-pixels"]

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
}


def set_path(config: Config, path: str, value: Any) -> None:
    *parents, name = path.split(".")
    target: Any = config
    for parent in parents:
        target = getattr(target, parent)
    setattr(target, name, value)


def add_options(parser: argparse.ArgumentParser, options: list[tuple[str, str, dict[str, Any]]]) -> None:
    for flag, path, kwargs in options:
        parser.add_argument(flag, dest=path, **kwargs)


def apply_options(config: Config, args: argparse.Namespace, options: list[tuple[str, str, dict[str, Any]]]) -> Config:
    for _, path, _ in options:
        value = getattr(args, path)
        if value is not None:
            set_path(config, path, value)
    return config


def train_config(args: argparse.Namespace) -> Config:
    config = Config.load(args.config) if args.config else Config()
    for path, value in PRESETS.get(args.preset, {}).items():
        set_path(config, path, value)
    config.data.path = str(args.data)
    return apply_options(config, args, TRAIN_OPTIONS)


def cmd_train(args: argparse.Namespace) -> int:
    from unetkit.training.setup import prepare_data, save_weight_maps
    from unetkit.training.trainer import fit

    config = train_config(args)
    if args.resume:
        config = resumed_config(Path(args.out), args)
        prepared = prepare_data(config, config.model.classes, config.model.in_channels, keep_labels=True)
    else:
        classes = args.classes if args.classes else (2 if args.preset == "paper" else None)
        prepared = prepare_data(config, classes, args.in_channels)
    if args.save_weight_maps and os.environ.get("RANK", "0") == "0":
        written = save_weight_maps(prepared, Path(args.out) / "weight_maps")
        log.info("wrote %d weight map image(s) into %s", len(written), Path(args.out) / "weight_maps")
    row = fit(prepared, Path(args.out), resume=args.resume, device=args.device)
    if row:
        log.info("done: best checkpoint %s (val Dice of the last epoch %.4f)", Path(args.out) / "best.pt", row["val_dice"])
    return 0


RESUME_OPTIONS = [option for option in TRAIN_OPTIONS if option[0] in ("--epochs", "--workers", "--log-every", "--max-pixels")]


def resumed_config(out: Path, args: argparse.Namespace) -> Config:
    """The run's own config (so the model and labels match its weights); the data folder, epoch
    count, loader workers and pixel limit may change between the runs."""
    from unetkit.checkpoint import load_checkpoint

    if not (out / "last.pt").exists():
        raise ConfigError(f"{out / 'last.pt'}: nothing to resume; start without --resume")
    config = load_checkpoint(out / "last.pt")["config"]
    config.data.path = str(args.data)
    return apply_options(config, args, RESUME_OPTIONS)


def cmd_predict(args: argparse.Namespace) -> int:
    from unetkit.inference.outputs import OutputOptions, collect_images, predict_files, write_rle_csv
    from unetkit.inference.predictor import Predictor
    from unetkit.training import distributed

    context = distributed.setup(args.device)
    try:
        predictor = Predictor.from_checkpoint(
            args.checkpoint, device=str(context.device), precision=args.precision, engine=args.engine, onnx_path=args.onnx
        )
        apply_options(predictor.config, args, PREDICT_OPTIONS)
        options = OutputOptions(args.format, args.overlay, args.instances, args.prob_format, args.rle_order)
        images = distributed.shard(collect_images(args.inputs), context)
        rows = predict_files(predictor, images, Path(args.out), options, progress=context.is_main and not args.quiet)
        if "rle" in args.format:
            rows = gather_rows(rows, context)
            if context.is_main:
                write_rle_csv(Path(args.out) / "rle.csv", rows)
        log.info("wrote predictions for %d image(s) into %s", len(images), args.out)
    finally:
        distributed.teardown(context)
    return 0


def gather_rows(rows: list[list[str]], context: Any) -> list[list[str]]:
    if not context.enabled:
        return rows
    import torch.distributed as dist

    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, rows)
    return [row for part in gathered for row in part]


def cmd_evaluate(args: argparse.Namespace) -> int:
    from unetkit.inference.evaluate import evaluate_records, summarize
    from unetkit.inference.predictor import Predictor
    from unetkit.training.setup import discover_data
    from unetkit.atomic import atomic_write_text
    from unetkit.reports import format_evaluation

    predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device, precision=args.precision, engine=args.engine, onnx_path=args.onnx)
    config = apply_options(predictor.config, args, PREDICT_OPTIONS)
    if args.layout:
        config.data.layout = args.layout
    discovery = discover_data(config, args.data)
    records = discovery.records + discovery.val_records
    report = summarize(evaluate_records(predictor, records, config, instances=args.instances))
    print(format_evaluation(report))
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from unetkit.inference.export import export_checkpoint

    path = export_checkpoint(args.checkpoint, args.format, Path(args.out), check=not args.no_check)
    log.info("exported %s", path)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from unetkit.demo import run_demo

    run_demo(Path(args.out), seed=args.seed, epochs=args.epochs)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from unetkit.data.inspect import format_inspection, inspect_dataset

    report = inspect_dataset(args.data, args.layout or "auto")
    print(json.dumps(report, indent=2, default=str) if args.json else format_inspection(report))
    return 0


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unetkit", description="U-Net image segmentation")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    commands = parser.add_subparsers(dest="command", required=True)
    # Options every computing subcommand takes.
    computing = argparse.ArgumentParser(add_help=False)
    computing.add_argument(
        "--threads", type=positive_int, metavar="N",
        help="CPU threads for torch (default: torch's, one per core); on a CPU shared with other jobs, "
        "fewer threads than cores avoids threads waiting on each other",
    )

    train = commands.add_parser("train", parents=[computing], help="train a U-Net on a folder of images and masks")
    train.add_argument("--data", required=True, metavar="DIR")
    train.add_argument("--out", required=True, metavar="RUN", help="run folder (checkpoints, logs, plots)")
    train.add_argument("--config", metavar="YAML", help="start from this config (e.g. a run's config.yaml)")
    train.add_argument("--preset", choices=sorted(PRESETS), help="a named setting; its flags can be overridden")
    train.add_argument("--classes", type=int, help="1 = binary (sigmoid); K >= 2 = softmax (default: from the masks)")
    train.add_argument("--in-channels", type=int, help="default: from the images (grey 1, colour 3)")
    train.add_argument("--amp", dest="train.precision", action="store_const", const="auto", help="mixed precision (the default)")
    train.add_argument("--resume", action="store_true", help="continue from RUN/last.pt")
    train.add_argument("--save-weight-maps", action="store_true", help="draw training weight maps into RUN/weight_maps/")
    train.add_argument("--device", default="auto")
    add_options(train, TRAIN_OPTIONS)
    train.set_defaults(func=cmd_train)

    predict = commands.add_parser("predict", parents=[computing], help="masks for new images of any size")
    predict.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    add_inference_arguments(predict)
    predict.add_argument("--out", required=True, metavar="DIR")
    predict.add_argument("--format", nargs="+", default=["png"], choices=["png", "prob", "rle"])
    predict.add_argument("--prob-format", default="png", choices=["png", "npy"], help="16-bit PNG or float .npy")
    predict.add_argument("--rle-order", default="row", choices=["row", "column"], help="Carvana: row; DSB-2018: column")
    predict.add_argument("--overlay", action="store_true", help="also write <stem>_overlay.png")
    predict.add_argument("--instances", action="store_true", help="also write a 16-bit instance label image")
    predict.set_defaults(func=cmd_predict)

    evaluate = commands.add_parser("evaluate", parents=[computing], help="per-class Dice/IoU/accuracy at full resolution")
    add_inference_arguments(evaluate)
    evaluate.add_argument("--data", required=True, metavar="DIR")
    evaluate.add_argument("--layout")
    evaluate.add_argument("--json", metavar="FILE")
    evaluate.add_argument("--instances", action="store_true", help="also the DSB-2018 score and CTC SEG")
    evaluate.set_defaults(func=cmd_evaluate)

    export = commands.add_parser("export", parents=[computing], help="ONNX / TorchScript / safetensors for deployment")
    export.add_argument("--checkpoint", required=True)
    export.add_argument("--format", required=True, choices=["onnx", "torchscript", "safetensors"])
    export.add_argument("--out", required=True, metavar="FILE")
    export.add_argument("--no-check", action="store_true", help="skip the parity check against PyTorch")
    export.set_defaults(func=cmd_export)

    demo = commands.add_parser("demo", parents=[computing], help="the whole loop on generated data, on a CPU, in minutes")
    demo.add_argument("--out", default="demo-run", metavar="DIR")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--epochs", type=int, default=None)
    demo.set_defaults(func=cmd_demo)

    data = commands.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    inspect = data.add_parser("inspect", help="what a dataset folder holds and how training would read it")
    inspect.add_argument("data", metavar="DIR")
    inspect.add_argument("--layout")
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(func=cmd_inspect)
    return parser


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="CKPT")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=["auto", "32", "bf16", "fp16"])
    parser.add_argument("--engine", default="torch", choices=["torch", "onnxruntime"])
    parser.add_argument("--onnx", metavar="FILE", help="ONNX model for --engine onnxruntime (default: beside the checkpoint)")
    add_options(parser, PREDICT_OPTIONS)


def configure_logging(quiet: bool) -> None:
    """Messages through tqdm.write so they never tear a progress bar; only rank 0 is chatty."""
    import os

    from tqdm import tqdm

    class TqdmHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            tqdm.write(self.format(record), file=sys.stderr)

    handler = TqdmHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    chatty = not quiet and os.environ.get("RANK", "0") == "0"
    root.setLevel(logging.INFO if chatty else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.quiet)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    try:
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
