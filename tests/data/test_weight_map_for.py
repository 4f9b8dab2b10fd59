"""weight_map_for: which pixels make the objects of the border weight map, ISBI membranes first;
the training dataset and the validation loss of a weighted model use the same map."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from unetkit.config import Config, DataConfig, LabelConfig, UNetConfig
from unetkit.data.dataset import SegmentationDataset
from unetkit.data.records import Record
from unetkit.data.weights import border_weight_map, weight_map_for
from unetkit.inference.evaluate import evaluate_records
from unetkit.inference.predictor import Predictor
from unetkit.losses import build_loss
from unetkit.model.unet import UNet

W0, SIGMA = 10.0, 5.0
MEMBRANE, CELL, IGNORE = 1, 0, 255


def membrane_grid(size: int = 64, pitch: int = 16) -> np.ndarray:
    """ISBI-like class ids: one-pixel membranes (class 1) every ``pitch`` pixels, cells (class 0) between."""
    labels = np.full((size, size), CELL, dtype=np.uint8)
    labels[pitch::pitch, :] = MEMBRANE
    labels[:, pitch::pitch] = MEMBRANE
    return labels


def data_config(invert: bool) -> DataConfig:
    return DataConfig(weight_w0=W0, weight_sigma=SIGMA, labels=LabelConfig(threshold=128, invert=invert))


def test_isbi_membranes_between_cells_get_the_border_weight() -> None:
    labels = membrane_grid()
    weights = weight_map_for(labels, None, data_config(invert=True))
    membrane_weight, cell_weight = weights[labels == MEMBRANE], weights[labels == CELL]
    # A one-pixel membrane between two cells: d1 = d2 = 1, so w = w_c + w0 * exp(-4 / (2 sigma^2)).
    class_weight = labels.size / (2 * np.count_nonzero(labels == MEMBRANE))
    between_two_cells = weights[16, 8]
    assert between_two_cells == pytest.approx(class_weight + W0 * math.exp(-4 / (2 * SIGMA**2)), rel=1e-5)
    assert membrane_weight.min() > cell_weight.max() + W0 / 2
    assert np.all(cell_weight == cell_weight[0])  # inside the cells only the class weight


def test_isbi_objects_are_the_cells_not_the_membrane_network() -> None:
    labels = membrane_grid()
    cells = ndimage.label(labels == CELL)[0]
    assert cells.max() == 16
    np.testing.assert_array_equal(
        weight_map_for(labels, None, data_config(invert=True)), border_weight_map(cells, W0, SIGMA)
    )
    # Read the other way, the connected membranes are one object: no border term anywhere.
    foreground_objects = weight_map_for(labels, None, data_config(invert=False))
    assert len(np.unique(foreground_objects)) == 2


def test_ignored_pixels_belong_to_no_object() -> None:
    labels = membrane_grid()
    labels[:, 40:] = IGNORE
    for invert in (True, False):
        weights = weight_map_for(labels, None, data_config(invert))
        expected_objects = (labels == CELL) if invert else (labels == MEMBRANE)
        np.testing.assert_array_equal(
            weights, border_weight_map(ndimage.label(expected_objects)[0], W0, SIGMA)
        )


def test_instance_labels_take_precedence() -> None:
    instances = np.zeros((32, 32), dtype=np.int32)
    instances[4:14, 4:15] = 1
    instances[4:14, 16:27] = 2
    semantic = (instances > 0).astype(np.uint8)
    for invert in (True, False):
        np.testing.assert_array_equal(
            weight_map_for(semantic, instances, data_config(invert)), border_weight_map(instances, W0, SIGMA)
        )


@pytest.fixture
def isbi_record(tmp_path) -> Record:
    """One ISBI-like slice on disk: a random image and the membrane grid stored as 0 in a 0/255 mask."""
    raw = np.where(membrane_grid(64) == MEMBRANE, 0, 255).astype(np.uint8)
    Image.fromarray(raw).save(tmp_path / "label.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, raw.shape, dtype=np.uint8)).save(tmp_path / "image.png")
    return Record(tmp_path / "image.png", (tmp_path / "label.png",), group="0")


def test_dataset_weights_isbi_membranes(isbi_record: Record) -> None:
    data = data_config(invert=True)
    data.weight_map = True
    item = SegmentationDataset([isbi_record], data, in_channels=1, train=False)[0]
    labels = item["mask"].numpy()
    assert np.all(labels == membrane_grid(64))
    np.testing.assert_array_equal(item["weight"].numpy(), weight_map_for(labels.astype(np.uint8), None, data))


def test_validation_loss_of_a_weighted_model_uses_the_weight_map(isbi_record: Record) -> None:
    """The paper preset's weighted-ce used to fail at the first validation (no weight map there)."""
    config = Config(
        model=UNetConfig(in_channels=1, classes=2, depth=2, base_width=2, norm="none", padding="valid"),
        data=data_config(invert=True),
    )
    config.predict.tile_size = 44
    torch.manual_seed(0)
    predictor = Predictor(UNet(config.model), config, precision="32")
    weighted = evaluate_records(predictor, [isbi_record], config, loss_fn=build_loss("weighted-ce", 2))
    plain = evaluate_records(predictor, [isbi_record], config, loss_fn=build_loss("ce", 2))
    assert math.isfinite(weighted.loss_sum) and weighted.loss_sum != pytest.approx(plain.loss_sum)
