"""Run-folder outputs: metrics.csv (one row per validation), curves.png, sample grids, TensorBoard, progress.

Every file is written atomically; only rank 0 calls these.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from unetkit.atomic import atomic_path, atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

COLUMNS = ["step", "epoch", "train_loss", "val_loss", "val_dice", "val_iou", "val_accuracy", "lr", "seconds"]
CURVES = (("loss", ("train_loss", "val_loss")), ("validation", ("val_dice", "val_iou", "val_accuracy")))


EPOCH_DECIMALS = 2  # the epoch column's precision; positions closer than half of it are one
TOLERANCE = 0.5 * 10**-EPOCH_DECIMALS


def epochs_done(step: int, steps_per_epoch: int) -> float | int:
    """Epochs as a view of steps (whole numbers where a validation ends an epoch): the column that
    places a row whatever the number of processes, so of steps per epoch."""
    epochs = step / steps_per_epoch
    return int(epochs) if epochs.is_integer() else round(epochs, EPOCH_DECIMALS)


class MetricsLog:
    """metrics.csv kept whole in memory and rewritten atomically after each validation.

    On resume, rows after the checkpoint's position (written before a crash, never checkpointed) are
    dropped, so the file has exactly one row per validation the run holds.
    """

    def __init__(self, path: Path, resume_epochs: float = 0.0) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        if resume_epochs and path.exists():
            with open(path, newline="") as handle:
                self.rows = [row for row in csv.DictReader(handle) if float(row["epoch"]) < resume_epochs + TOLERANCE]

    def has_row_at(self, epochs: float) -> bool:
        """Whether the latest row is a validation at this position."""
        return bool(self.rows) and abs(float(self.rows[-1]["epoch"]) - epochs) < TOLERANCE

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append({key: row[key] for key in COLUMNS})
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buffer.getvalue())

    def column(self, name: str) -> list[float]:
        return [float(row[name]) for row in self.rows]


def plot_curves(metrics: MetricsLog, path: Path) -> None:
    """curves.png of the run: ``curves_png`` of its rows."""
    atomic_write_bytes(path, curves_png(metrics.rows))


def curves_png(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Loss and validation metrics against epochs (metrics.csv's rows, as written or read back as
    text; runs of every version have the epoch column), in one PNG with two panels; a column with
    no numbers is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [float(row["epoch"]) for row in rows]
    figure, axes = plt.subplots(1, len(CURVES), figsize=(10, 4))
    for axis, (title, columns) in zip(axes, CURVES):
        for column in columns:
            values = [_number(row.get(column)) for row in rows]
            if not all(math.isnan(value) for value in values):
                axis.plot(epochs, values, label=column.replace("_", " "))
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.legend(fontsize="small")
    axes[-1].set_ylim(0, 1)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return buffer.getvalue()


def _number(value: Any) -> float:
    """A metrics.csv cell as a number (NaN where it is empty or not one)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def save_sample_grid(
    path: Path, samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]], classes: int
) -> None:
    """One row per sample: image | truth | prediction (labels drawn with one colour per class)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not samples:
        return
    fig, axes = plt.subplots(len(samples), 3, figsize=(9, 3 * len(samples)), squeeze=False)
    vmax = max(classes - 1, 1)
    for row, (image, truth, prediction) in zip(axes, samples):
        row[0].imshow(image.squeeze(), cmap="gray" if image.ndim == 2 or image.shape[-1] == 1 else None)
        row[1].imshow(np.where(truth > vmax, 0, truth), vmin=0, vmax=vmax, cmap="viridis", interpolation="nearest")
        row[2].imshow(prediction, vmin=0, vmax=vmax, cmap="viridis", interpolation="nearest")
        for ax, title in zip(row, ("image", "truth", "prediction")):
            ax.set_title(title)
            ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


class TensorBoardLog:
    """Scalars to TensorBoard when the package is installed; a warning (once) otherwise."""

    def __init__(self, directory: Path, enabled: bool) -> None:
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.warning("--tensorboard: the tensorboard package is not installed (pip install unetkit[tensorboard])")
            return
        self.writer = SummaryWriter(log_dir=str(directory))

    def scalars(self, row: dict[str, Any], step: int) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if key not in ("step", "epoch"):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
