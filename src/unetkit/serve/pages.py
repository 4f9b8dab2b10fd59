"""HTML pages of `unetkit serve`: the prediction page and the list of runs (Jinja2 templates)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from unetkit.config import Config
from unetkit.report.figures import data_uri, read_metrics
from unetkit.training.logs import curves_png

TEMPLATES = Environment(loader=PackageLoader("unetkit.serve", "templates"), autoescape=select_autoescape())
MAX_RUNS = 50


@dataclass(frozen=True)
class RunSummary:
    name: str
    epochs: int
    best_dice: float | None
    curves: str | None  # data URIs: the page needs no route that reads a path from a request
    samples: str | None


def render_index(name: str, config: Config) -> str:
    return TEMPLATES.get_template("index.html").render(name=name, classes=config.model.classes)


def render_runs(folder: Path | None) -> str:
    runs = [summarize_run(path, folder) for path in find_runs(folder)] if folder else []
    return TEMPLATES.get_template("runs.html").render(folder=folder, runs=runs)


def find_runs(folder: Path) -> list[Path]:
    """Run folders (holding metrics.csv) in ``folder`` and one level below it, newest first."""
    candidates = [folder, *folder.glob("*"), *folder.glob("*/*")]
    runs = [path for path in candidates if (path / "metrics.csv").is_file()]
    return sorted(runs, key=lambda path: (path / "metrics.csv").stat().st_mtime, reverse=True)[:MAX_RUNS]


def summarize_run(run: Path, folder: Path) -> RunSummary:
    rows = read_metrics(run / "metrics.csv")
    dice = [float(row["val_dice"]) for row in rows if row.get("val_dice")]
    samples = sorted((run / "samples").glob("*.png"))  # epoch_NNN.png or step_NNNNNN.png: the last is the latest
    curves = (run / "curves.png").read_bytes() if (run / "curves.png").is_file() else curves_png(rows) if rows else None
    return RunSummary(
        name=str(run.relative_to(folder)) if run != folder else run.name,
        epochs=int(float(rows[-1]["epoch"])) if rows else 0,
        best_dice=max(dice) if dice else None,
        curves=data_uri(curves) if curves else None,
        samples=data_uri(samples[-1].read_bytes()) if samples else None,
    )
