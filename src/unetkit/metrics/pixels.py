"""Pixel metrics: a confusion-matrix accumulator for semantic labels (pixel accuracy, Dice, IoU per
class), all-reduced over processes."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from unetkit.errors import ConfigError


class ConfusionMatrix:
    """Accumulates a (truth x prediction) pixel count matrix over a whole evaluation.

    ``num_classes`` is at least 2: a binary (one-logit) model has classes background and
    foreground. The matrix lives on the device of the labels it is fed and ``update`` never waits
    for the device, so evaluation keeps the GPU busy; ``compute`` reads it back once.

    ``compute`` returns plain Python values (JSON-ready):

    - ``pixel_accuracy``: correct / all non-ignored pixels;
    - ``dice``, ``iou``: means over the foreground classes 1..K-1 (for binary: the foreground
      class) that are *present*, i.e. in the truth or in the prediction. A class absent from both
      has no defined score: it is left out of the means and reported as None in ``per_class``.
    - ``per_class``: one ``{class, name, dice, iou, support}`` per class, support = truth pixels.

    Where nothing is present at all (empty truth, empty prediction, or no pixel counted) there is
    nothing to get wrong: the means and the accuracy are 1.0, never NaN.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, names: list[str] | None = None) -> None:
        self.num_classes = max(2, num_classes)
        self.ignore_index = ignore_index
        if names is not None and len(names) != self.num_classes:
            raise ConfigError(
                f"data.labels.names has {len(names)} names for {self.num_classes} classes; give one name per class"
            )
        self.names = list(names) if names is not None else [f"class {index}" for index in range(self.num_classes)]
        self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Count the pixels of ``pred`` against ``target`` (both long, (N, H, W) or (H, W)).

        Target pixels equal to ``ignore_index`` or outside 0..K-1 are not counted; predictions must
        lie in 0..K-1. Counting is a scatter-add rather than ``torch.bincount``, whose CUDA kernel
        reads the input's min and max back to the host.
        """
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        if self.matrix.device != target.device:
            self.matrix = self.matrix.to(target.device)
        classes = self.num_classes
        target = target.reshape(-1).long()
        pred = pred.reshape(-1).long().to(target.device)
        counted = (target != self.ignore_index) & (target >= 0) & (target < classes)
        # Uncounted pixels go to an extra bin past the matrix, dropped below: no boolean indexing,
        # whose output size would have to be read back from the device.
        cell = torch.where(counted, target * classes + pred, classes * classes)
        counts = torch.zeros(classes * classes + 1, dtype=torch.int64, device=target.device)
        counts.scatter_add_(0, cell, torch.ones_like(cell))
        self.matrix += counts[:-1].view(classes, classes)

    def reset(self) -> None:
        self.matrix.zero_()

    def reduce_from_all_processes(self) -> None:
        """Sum the matrices of all processes (torch.distributed); a no-op in a single process."""
        if not (dist.is_available() and dist.is_initialized()):
            return
        device = self.matrix.device
        if dist.get_backend() == "nccl":  # NCCL reduces only CUDA tensors
            device = torch.device("cuda", torch.cuda.current_device())
        reduced = self.matrix.to(device)
        dist.all_reduce(reduced)
        self.matrix = reduced

    def compute(self) -> dict[str, Any]:
        matrix = self.matrix.cpu().double()
        true_positive = matrix.diag()
        truth = matrix.sum(dim=1)
        predicted = matrix.sum(dim=0)
        union = truth + predicted - true_positive
        present = union > 0
        dice = torch.where(present, 2 * true_positive / (truth + predicted).clamp_min(1), 1.0)
        iou = torch.where(present, true_positive / union.clamp_min(1), 1.0)
        foreground = present[1:]
        total = matrix.sum()
        per_class = [
            {
                "class": index,
                "name": self.names[index],
                "dice": float(dice[index]) if present[index] else None,
                "iou": float(iou[index]) if present[index] else None,
                "support": int(truth[index]),
            }
            for index in range(self.num_classes)
        ]
        return {
            "pixel_accuracy": float(true_positive.sum() / total) if total > 0 else 1.0,
            "dice": float(dice[1:][foreground].mean()) if foreground.any() else 1.0,
            "iou": float(iou[1:][foreground].mean()) if foreground.any() else 1.0,
            "per_class": per_class,
        }
