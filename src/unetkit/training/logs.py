"""Run-folder outputs: metrics.csv (one row per validation), curves.png, sample grids, TensorBoard, progress.

Every file is written atomically; only rank 0 calls these.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.atomic import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

COLUMNS = ["step", "epoch", "train_loss", "val_loss", "val_dice", "val_iou", "val_accuracy", "lr", "seconds"]


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
    """Loss and validation metrics against optimizer steps, in one figure with two panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = metrics.column("step")
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(steps, metrics.column("train_loss"), label="train loss")
    ax_loss.plot(steps, metrics.column("val_loss"), label="val loss")
    ax_loss.set_xlabel("step")
    ax_loss.legend()
    for name in ("val_dice", "val_iou", "val_accuracy"):
        ax_metric.plot(steps, metrics.column(name), label=name.replace("_", " "))
    ax_metric.set_xlabel("step")
    ax_metric.set_ylim(0, 1)
    ax_metric.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


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
