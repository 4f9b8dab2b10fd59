"""The arena's data and its one scorer.

Splits come from ``budget.py`` (carvana: the whole first car trains). Every split is exported,
through unetkit's own readers, to one plain folder that any tool reads: ``images/NAME.png``
(alpha dropped, as unetkit drops it), ``masks/NAME.png`` (foreground 255) and, where the data
has objects, ``instances/NAME.png`` (16-bit labels). Each arm writes ``NAME_mask.png`` per test
image (and may write ``NAME_instances.png``); ``score`` rates them all with unetkit's metrics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from budget import blobs, carvana_cars, dsb2018, isbi2012, link_carvana
from PIL import Image
from scipy import ndimage

from unetkit.data.labels import infer_labels
from unetkit.data.layouts import discover
from unetkit.data.annotations import read_annotation
from unetkit.data.reading import read_image
from unetkit.data.records import map_labels
from unetkit.data.writing import write_instances, write_mask
from unetkit.inference.evaluate import EvaluationState, summarize
from unetkit.metrics import ConfusionMatrix, object_scores


def carvana(data: Path, work: Path) -> tuple[list[str], Path]:
    """Every view of the first car trains (the trainers hold out their own validation), the second car tests."""
    first, second = carvana_cars(data)
    train = link_carvana(data, first, work / "carvana-train")
    return ["--data", str(train)], link_carvana(data, second, work / "carvana-test")


# name -> (data, work) -> (unetkit's --data flags, the test folder), both in the dataset's own layout
SPLITS: dict[str, Callable[[Path, Path], tuple[list[str], Path]]] = {
    "isbi2012": isbi2012, "carvana": carvana, "dsb2018": dsb2018, "generated": blobs,
}
INSTANCE_DATASETS = ("dsb2018", "generated")  # the data with objects to score (budget.py's, blobs named generated)


def export_plain(dataset: Path, out: Path) -> Path:
    """``dataset`` (any layout unetkit reads) as a plain images/ masks/ [instances/] folder at ``out``."""
    discovery = discover(dataset)
    labels = discovery.labels or infer_labels(discovery.records)[0]
    for folder in ("images", "masks"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    for record in [*discovery.records, *discovery.val_records]:
        image = read_image(record.image, record.page)
        raw, instances = read_annotation(record)
        Image.fromarray(_displayable(image)).save(out / "images" / f"{record.name}.png")
        write_mask(out / "masks" / f"{record.name}.png", map_labels(raw, labels) == 1, classes=2)
        if instances is not None:
            (out / "instances").mkdir(exist_ok=True)
            write_instances(out / "instances" / f"{record.name}.png", instances)
    return out


def _displayable(image: np.ndarray) -> np.ndarray:
    """(H, W, C) as PIL writes it: grey 2-D, colour without alpha."""
    return image[..., 0] if image.shape[-1] in (1, 2) else image[..., :3]


def score(test: Path, predictions: Path, instances: bool) -> dict:
    """Dice, IoU (pooled over the images) and, with ``instances``, the object scores of
    ``unetkit evaluate --instances`` of the masks in ``predictions`` against ``test``'s truth.
    An arm without instance output is scored on the connected components of its masks; a missing
    mask counts as empty."""
    state = EvaluationState(ConfusionMatrix(2))
    missing = []
    for truth_path in sorted((test / "masks").glob("*.png")):
        name = truth_path.stem
        truth = _read(truth_path) > 0
        mask_path = predictions / f"{name}_mask.png"
        if not mask_path.exists():
            missing.append(name)
        predicted = _read(mask_path) > 0 if mask_path.exists() else np.zeros_like(truth)
        state.confusion.update(torch.from_numpy(predicted.astype(np.int64)), torch.from_numpy(truth.astype(np.int64)))
        scores = {"name": name}
        if instances:
            predicted_objects = _objects(predictions / f"{name}_instances.png", predicted)
            scores.update(object_scores(predicted_objects, _read(test / "instances" / f"{name}.png")))
        state.images.append(scores)
    report = summarize(state)
    report.pop("images"), report.pop("failed"), report.pop("per_class", None)
    return report | {"missing_predictions": missing}


def _objects(instances_path: Path, mask: np.ndarray) -> np.ndarray:
    return _read(instances_path) if instances_path.exists() else ndimage.label(mask)[0]


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))
