"""Where a report's content comes from: an evaluation as it runs, a run folder, or an evaluation JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from unetkit.config import Config
from unetkit.data.layouts import discover
from unetkit.data.records import Record
from unetkit.data.splits import split_entry
from unetkit.errors import ConfigError, DataError, UnetkitError
from unetkit.inference.evaluate import EvaluationState, evaluate_records, summarize
from unetkit.inference.predictor import Predictor
from unetkit.report.figures import read_metrics
from unetkit.report.html import ReportContent, image_key, write_report
from unetkit.report.panels import Panel, PanelCollector


def evaluate_with_panels(
    predictor: Predictor, records: Sequence[Record], config: Config, **options: bool
) -> tuple[EvaluationState, dict[str, Panel]]:
    """``evaluate_records`` (same ``options``) drawing each image's panel as it goes, so the report
    costs no second prediction; the panels are keyed by image path."""
    collector = PanelCollector(config.data.labels.ignore_index)
    state = evaluate_records(predictor, records, config, on_sample=collector, samples=len(records), **options)
    # on_sample runs right after an image's scores are appended, so the two lists pair up.
    return state, {image_key(image["image"]): panel for image, panel in zip(state.images, collector.panels)}


def evaluation_content(title: str, state: EvaluationState, panels: dict[str, Panel], config: Config) -> ReportContent:
    return ReportContent(
        title=title, evaluation=summarize(state), panels=panels, confusion=state.confusion.matrix.cpu().tolist(), config=config
    )


def run_content(run: Path, device: str = "auto", precision: str = "auto") -> ReportContent:
    """A run folder: its config and curves, and ``best.pt`` evaluated on the run's validation images
    (split.json) where the checkpoint and the data are still there."""
    if not (run / "config.yaml").is_file() and not (run / "best.pt").is_file():
        raise ConfigError(f"{run}: not a run folder (no config.yaml or best.pt); pass the --out folder of `unetkit train`")
    metrics = read_metrics(run / "metrics.csv") if (run / "metrics.csv").is_file() else []
    if not (run / "best.pt").is_file():
        content = ReportContent(title=str(run), config=Config.load(run / "config.yaml"), metrics=metrics)
        content.notes.append(f"{run / 'best.pt'} is missing: no evaluation.")
        return content
    predictor = Predictor.from_checkpoint(run / "best.pt", device=device, precision=precision)
    try:
        records = validation_records(run, predictor.config)
    except UnetkitError as error:
        content = ReportContent(title=str(run), config=predictor.config, metrics=metrics)
        content.notes.append(f"No evaluation: {error}")
        return content
    state, panels = evaluate_with_panels(predictor, records, predictor.config, skip_failed=True, instances=True)
    content = evaluation_content(f"{run}: best.pt on {len(records)} validation image(s)", state, panels, predictor.config)
    content.metrics = metrics
    return content


def validation_records(run: Path, config: Config) -> list[Record]:
    """The records split.json lists as validation, found again in the run's data folders."""
    split_path = run / "split.json"
    if not split_path.is_file():
        raise DataError(f"{split_path}: missing, so the validation images are unknown")
    root = Path(config.data.path)
    wanted = {split_entry_path(root, entry) for entry in json.loads(split_path.read_text()).get("val", [])}
    records = []
    for folder in filter(None, (config.data.path, config.data.val_path)):
        records += [r for r in _records_in(folder, config) if split_entry_path(root, split_entry(r, root)) in wanted]
    if not records:
        raise DataError(f"{split_path}: none of its validation images is in {config.data.path} any more")
    return list({(r.image, r.page): r for r in records}.values())


def split_entry_path(root: Path, entry: str) -> str:
    """A split entry (``relative/path#page``) made absolute, so entries of two roots compare."""
    path, _, page = entry.partition("#")
    return f"{(root / path).resolve()}#{page}"


def json_content(
    path: Path, checkpoint: Path | None = None, data: Path | None = None, device: str = "auto", precision: str = "auto"
) -> ReportContent:
    """An evaluation JSON (`unetkit evaluate --json`); with the checkpoint and the data folder its
    images are predicted again to draw their pictures."""
    try:
        evaluation = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: not a readable evaluation JSON ({error}); write one with `unetkit evaluate --json`") from None
    if not isinstance(evaluation, dict) or "per_class" not in evaluation or "images" not in evaluation:
        raise DataError(f"{path}: not an evaluation of `unetkit evaluate --json` (no per_class and images)")
    content = ReportContent(title=f"evaluation {path.name}", evaluation=evaluation)
    if checkpoint is None or data is None:
        content.notes.append("No pictures: give --checkpoint and --data to draw each image's prediction and errors.")
        return content
    predictor = Predictor.from_checkpoint(checkpoint, device=device, precision=precision)
    config = predictor.config
    listed = {image_key(image["image"]) for image in evaluation["images"]}
    records = [record for record in _records_in(data, config) if image_key(record.image) in listed]
    objects = "dsb_score" in evaluation
    state, content.panels = evaluate_with_panels(predictor, records, config, skip_failed=True, instances=objects)
    content.confusion, content.config = state.confusion.matrix.cpu().tolist(), config
    return content


def _records_in(folder: str | Path, config: Config) -> list[Record]:
    discovery = discover(folder, config.data.layout, data=config.data)
    return discovery.records + discovery.val_records


def evaluate_and_report(
    out: str | Path, predictor: Predictor, records: Sequence[Record], config: Config, **options: bool
) -> EvaluationState:
    """`unetkit evaluate --report`: the evaluation, and its report written to ``out`` from the same pass."""
    state, panels = evaluate_with_panels(predictor, records, config, **options)
    write_report(out, evaluation_content(f"evaluation of {len(state.images)} image(s)", state, panels, config))
    return state


def report_of(
    source: Path, out: Path, checkpoint: Path | None = None, data: Path | None = None, device: str = "auto"
) -> Path:
    """`unetkit report`: a run folder or an evaluation JSON -> ``out``."""
    if source.is_dir():
        return write_report(out, run_content(source, device))
    if not source.is_file():
        raise DataError(f"{source}: no such run folder or evaluation JSON")
    return write_report(out, json_content(source, checkpoint, data, device))
