"""`unetkit serve` and `unetkit report`: a model behind a web page, a run or evaluation as HTML."""

from __future__ import annotations

import argparse
import typing
from pathlib import Path

from unetkit.cli.shared import add_command, add_execution_options, positive_float, positive_int
from unetkit.config import Precision
from unetkit.serve.limits import MiB, ServeLimits

LIMITS = ServeLimits()  # the one home of the serve limits' defaults


def register(commands: argparse._SubParsersAction) -> None:
    serve = add_command(commands, "serve", "a browser page and an HTTP API for a trained model (pip install 'unetkit[serve]')")
    serve.add_argument("--checkpoint", required=True, metavar="CKPT|RUN",
                       help="a checkpoint, a run folder (its best.pt) or a run of folds (their ensemble)")  # fmt: skip
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every network)")  # fmt: skip
    serve.add_argument("--port", type=int, default=8000, help="(default 8000)")
    serve.add_argument("--runs", metavar="DIR", help="list the runs in DIR (curves, samples) on /runs")
    limits = serve.add_argument_group("limits (a request beyond one gets a JSON 4xx naming it)")
    limits.add_argument("--max-upload-mb", type=positive_int, default=LIMITS.max_upload_bytes // MiB, metavar="MB",
                        help=f"largest upload (default {LIMITS.max_upload_bytes // MiB})")  # fmt: skip
    limits.add_argument("--max-pixels", type=positive_int, default=LIMITS.max_pixels, metavar="N",
                        help=f"largest image, in pixels (default {LIMITS.max_pixels})")  # fmt: skip
    limits.add_argument("--max-decoded-mb", type=positive_int, default=LIMITS.max_decoded_bytes // MiB, metavar="MB",
                        help="largest decoded image: width x height x samples x bytes per sample, TIFF tiles "
                             f"counted whole (default {LIMITS.max_decoded_bytes // MiB})")  # fmt: skip
    limits.add_argument("--max-tiles", type=positive_int, default=LIMITS.max_tiles, metavar="N",
                        help="network tiles per request (default: what the largest square image of --max-pixels takes)")  # fmt: skip
    limits.add_argument("--queue", type=positive_int, default=LIMITS.max_queue, metavar="N",
                        help=f"requests in progress at once, uploads included; more get 503 (default {LIMITS.max_queue})")  # fmt: skip
    limits.add_argument("--max-memory-mb", type=positive_int, default=LIMITS.max_memory_bytes // MiB, metavar="MB",
                        help="memory the requests in progress may hold at once; each reserves its estimate from its "
                             f"image's header, waiting its turn (default {LIMITS.max_memory_bytes // MiB})")  # fmt: skip
    limits.add_argument("--upload-timeout", type=positive_float, default=LIMITS.upload_timeout_s, metavar="S",
                        help=f"seconds an upload may take to arrive; then 408 (default {LIMITS.upload_timeout_s:g})")  # fmt: skip
    serve.add_argument("--precision", default="auto", choices=typing.get_args(Precision), help="(default auto)")
    add_execution_options(serve.add_argument_group("execution"))
    serve.set_defaults(func=run_serve)

    report = add_command(commands, "report", "one self-contained HTML page of a run or an evaluation")
    report.add_argument("source", metavar="RUN|EVAL_JSON", help="a run folder, or the JSON of `unetkit evaluate --json`")
    report.add_argument("--out", required=True, metavar="HTML", help="the report file")
    report.add_argument("--checkpoint", metavar="CKPT", help="with EVAL_JSON and --data: draw each image's prediction")
    report.add_argument("--data", metavar="DIR", help="with EVAL_JSON and --checkpoint: the evaluated dataset")
    add_execution_options(report.add_argument_group("execution"))
    report.set_defaults(func=run_report)


def run_serve(args: argparse.Namespace) -> int:
    from unetkit.serve.app import serve

    limits = ServeLimits(
        max_upload_bytes=args.max_upload_mb * MiB, max_pixels=args.max_pixels, max_decoded_bytes=args.max_decoded_mb * MiB,
        max_tiles=args.max_tiles, max_queue=args.queue, max_memory_bytes=args.max_memory_mb * MiB,
        upload_timeout_s=args.upload_timeout,
    )  # fmt: skip
    serve(args.checkpoint, args.host, args.port, args.runs, args.device, args.precision, limits)
    return 0


def run_report(args: argparse.Namespace) -> int:
    import logging

    from unetkit.report.sources import report_of

    optional = (Path(args.checkpoint) if args.checkpoint else None, Path(args.data) if args.data else None)
    path = report_of(Path(args.source), Path(args.out), *optional, device=args.device)
    logging.getLogger("unetkit").info("wrote %s", path)
    return 0
