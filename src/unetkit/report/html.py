"""`unetkit report`: one self-contained HTML file (pictures embedded as data URIs, a few lines of
JavaScript to sort) of an evaluation and, for a run, its config and training curves."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, PackageLoader, select_autoescape

from unetkit.atomic import atomic_write_text
from unetkit.config import Config
from unetkit.report.figures import data_uri
from unetkit.training.logs import curves_png
from unetkit.report.panels import Panel

TEMPLATES = Environment(loader=PackageLoader("unetkit.report", "templates"), autoescape=select_autoescape())


@dataclass
class ReportContent:
    """What a report shows; every part may be missing (a report of a JSON has no curves)."""

    title: str
    evaluation: dict[str, Any] | None = None
    panels: dict[str, Panel] = field(default_factory=dict)  # by image_key of evaluation["images"][i]["image"]
    confusion: list[list[int]] | None = None  # truth x prediction pixel counts
    config: Config | None = None
    metrics: list[dict[str, str]] = field(default_factory=list)  # the rows of a run's metrics.csv
    notes: list[str] = field(default_factory=list)


def write_report(path: str | Path, content: ReportContent) -> Path:
    """Render ``content`` into ``path`` (written atomically); returns the path."""
    path = Path(path)
    evaluation = content.evaluation or {}
    html = TEMPLATES.get_template("report.html").render(
        title=content.title,
        notes=content.notes,
        evaluation=evaluation,
        class_names=[row["name"] for row in evaluation.get("per_class", [])],
        confusion=content.confusion,
        rows=_image_rows(evaluation.get("images", []), content.panels),
        config=yaml.safe_dump(content.config.to_dict(), sort_keys=False) if content.config else None,
        curves=data_uri(curves_png(content.metrics)) if content.metrics else None,
        number=_number,
    )
    atomic_write_text(path, html)
    return path


def _image_rows(images: list[dict[str, Any]], panels: dict[str, Panel]) -> list[dict[str, Any]]:
    """One row per image, the worst first: by the DSB score where objects were scored, else by
    Dice; a row's pictures where they were drawn."""
    rows = []
    for image in images:
        panel = panels.get(image_key(image.get("image", "")))
        rows.append({**image, "errors": panel.errors if panel else None, "panel": panel})
    key = "dsb_score" if any("dsb_score" in row for row in rows) else "dice"
    return sorted(rows, key=lambda row: _sort_value(row.get(key)))


def image_key(path: str | Path) -> str:
    """An image's path made absolute: a JSON written in one folder matches data named from another."""
    return str(Path(path).resolve())


def _sort_value(value: Any) -> float:
    return math.inf if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _number(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)
