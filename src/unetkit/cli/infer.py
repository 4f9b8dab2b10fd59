"""`unetkit predict`, `evaluate` and `export`: using a trained checkpoint.

A batch goes on past an image that cannot be read or predicted: each failure is one line, the
others are written, a summary ends the run and the exit code is 1 (``--fail-fast``: stop at the
first, exit code 2).
"""

from __future__ import annotations

import argparse
import json
import logging
import typing
from pathlib import Path

from unetkit.cli.options import add_config_options, add_groups, given_settings, option_keywords
from unetkit.cli.shared import add_command, add_execution_options
from unetkit.config import Engine, ExportFormat, OutputFormat, Precision, ProbFormat, RleOrder
from unetkit.config.flags import FLAGS, config_flags

log = logging.getLogger("unetkit")

# The inference group, and the pixel limit: the error for a large image names the flag that raises it.
INFERENCE_FLAGS = FLAGS["inference"] | config_flags("--max-pixels")


def register(commands: argparse._SubParsersAction) -> None:
    register_predict(commands)
    register_evaluate(commands)
    register_export(commands)


def register_predict(commands: argparse._SubParsersAction) -> None:
    parser = add_command(commands, "predict", "masks for new images of any size")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the masks (created if missing)")
    parser.add_argument("--format", nargs="+", default=["png"], choices=typing.get_args(OutputFormat),
                        help="png: masks; prob: probabilities; rle: Kaggle rle.csv (default png)")  # fmt: skip
    parser.add_argument("--prob-format", default="png", choices=typing.get_args(ProbFormat),
                        help="16-bit PNG or float .npy (default png)")  # fmt: skip
    parser.add_argument("--rle-order", default="row", choices=typing.get_args(RleOrder),
                        help="Carvana: row; DSB-2018: column (default row)")  # fmt: skip
    parser.add_argument("--overlay", action="store_true", help="also write <stem>_overlay.png")
    parser.add_argument("--instances", action="store_true", help="also write a 16-bit instance label image")
    add_inference_options(parser)
    parser.set_defaults(func=run_predict)


def register_evaluate(commands: argparse._SubParsersAction) -> None:
    parser = add_command(commands, "evaluate", "per-class Dice/IoU/accuracy at full resolution")
    parser.add_argument("--data", required=True, metavar="DIR", help="a dataset folder with masks")
    parser.add_argument("--layout", **option_keywords("data.layout"))
    parser.add_argument("--json", metavar="FILE", help="also write the whole report (per image, failed images)")
    parser.add_argument("--instances", action="store_true", help=(
        "also the object metrics (DSB score, AP, F1, PQ, AJI, SEG) where the data has instances; on by itself "
        "for models trained with instance maps"))  # fmt: skip
    parser.add_argument("--report", metavar="HTML", help="also write an HTML report (per image: truth, prediction, errors)")
    add_inference_options(parser)
    parser.set_defaults(func=run_evaluate)


def register_export(commands: argparse._SubParsersAction) -> None:
    parser = add_command(commands, "export", "ONNX / TorchScript / safetensors for deployment")
    parser.add_argument("--checkpoint", required=True, metavar="CKPT",
                        help="a checkpoint (best.pt, last.pt) or a run folder; a run of folds exports as an ONNX folder")  # fmt: skip
    parser.add_argument("--format", required=True, choices=typing.get_args(ExportFormat), help="the file format")
    parser.add_argument("--out", required=True, metavar="FILE", help="the exported file")
    parser.add_argument("--no-check", action="store_true", help="skip the parity check against PyTorch")
    add_execution_options(parser.add_argument_group("execution"), device=False)
    parser.set_defaults(func=run_export)


def add_inference_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, action="append", metavar="CKPT",
                        help="a checkpoint (best.pt, last.pt), a run folder (its best.pt) or a run of folds "
                        "(their ensemble); repeat it to ensemble several")  # fmt: skip
    parser.add_argument("--no-postprocess", action="store_true",
                        help="skip the post-processing chosen on validation (threshold, small objects, watershed)")  # fmt: skip
    parser.add_argument("--fail-fast", action="store_true",
                        help="stop at the first image that fails (exit code 2) instead of skipping it")  # fmt: skip
    groups = add_groups(parser, "options left unset keep the checkpoint's values; the defaults shown are a new run's")
    groups["inference"].add_argument("--engine", default="torch", choices=typing.get_args(Engine),
                                     help="onnxruntime runs the exported ONNX model (default torch)")  # fmt: skip
    groups["inference"].add_argument("--onnx", metavar="FILE", help="ONNX model for --engine onnxruntime "
                                     "(default: beside the checkpoint)")  # fmt: skip
    groups["execution"].add_argument("--precision", default="auto", choices=typing.get_args(Precision),
                                     help="auto: on a CPU what a short probe measures faster, cached (default auto)")  # fmt: skip
    add_execution_options(groups["execution"])
    add_config_options(groups, INFERENCE_FLAGS)


def load_predictor(args: argparse.Namespace, device: str):
    from unetkit.api import load

    return load(args.checkpoint, device, precision=args.precision, engine=args.engine, onnx=args.onnx,
                postprocess=not args.no_postprocess, **given_settings(args, INFERENCE_FLAGS))  # fmt: skip


def run_predict(args: argparse.Namespace) -> int:
    from unetkit.inference.outputs import OutputOptions, collect_images, predict_files, write_rle_csv
    from unetkit.device import distributed

    context = distributed.setup(args.device)
    try:
        predictor = load_predictor(args, str(context.device))
        options = OutputOptions(args.format, args.overlay, args.instances, args.prob_format, args.rle_order)
        images = collect_images(args.inputs)
        result = predict_files(predictor, distributed.shard(images, context), Path(args.out), options,
                               progress=context.is_main and not args.quiet, fail_fast=args.fail_fast)  # fmt: skip
        rows = distributed.all_gather_lists(result.rle_rows, context)
        failed = sorted(distributed.all_gather_lists(list(result.failed), context))
        if "rle" in args.format and context.is_main:
            write_rle_csv(Path(args.out) / "rle.csv", rows)
    finally:
        distributed.teardown(context)
    if context.is_main:
        summarize_batch("predicted", len(images), failed, args.out)
    return 1 if failed else 0


def run_evaluate(args: argparse.Namespace) -> int:
    from unetkit.api import evaluate
    from unetkit.atomic import atomic_write_text
    from unetkit.tables import format_evaluation

    report = evaluate(load_predictor(args, args.device), args.data, instances=args.instances or None, layout=args.layout,
                      html=args.report, skip_failed=not args.fail_fast)  # fmt: skip
    print(format_evaluation(report))
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2))
    failed = sorted(report["failed"])
    summarize_batch("evaluated", len(report["images"]) + len(failed), failed, args.json or "the table above")
    return 1 if failed else 0


def summarize_batch(verb: str, total: int, failed: list[str], where: str) -> None:
    """One closing line: all done, or how many failed and which (each was reported as it failed)."""
    if not failed:
        log.info("%s %d image(s): %s", verb, total, where)
        return
    names = ", ".join(Path(name).name for name in failed[:10]) + (f" and {len(failed) - 10} more" if len(failed) > 10 else "")
    log.warning("%s %d of %d; %d failed: %s", verb, total - len(failed), total, len(failed), names)


def run_export(args: argparse.Namespace) -> int:
    from unetkit.inference.ensemble import export_checkpoints

    path = export_checkpoints(args.checkpoint, args.format, Path(args.out), check=not args.no_check)
    log.info("exported %s", path)
    return 0
