"""The instance maps a model with an instance target learns: borders and normalised distances."""

from __future__ import annotations

import numpy as np
import pytest

from unetkit.config import LabelConfig
from unetkit.data.instance_maps import instance_target_maps, objects_of


def side_by_side() -> np.ndarray:
    objects = np.zeros((12, 22), dtype=np.int32)
    objects[2:10, 2:10], objects[2:10, 10:20] = 3, 7  # an 8x8 and an 8x10 object touching along column 10
    return objects


def test_border_is_each_objects_inner_outline_so_touching_objects_are_two_pixels_apart() -> None:
    border = instance_target_maps(side_by_side(), ["border"])[..., 0]
    assert border.dtype == np.float32 and set(np.unique(border)) == {0.0, 1.0}
    assert border[5, 9] == border[5, 10] == 1  # both sides of the contact
    assert border[5, 8] == border[5, 11] == 0  # one pixel inside each object
    assert border[0].sum() == 0 and border[5, 1] == 0  # background is never border
    assert border[2, 2:20].all() and border[9, 2:20].all()  # top and bottom rows of both objects


def test_distance_is_one_at_every_objects_centre_and_zero_at_its_border() -> None:
    objects = side_by_side()
    distance = instance_target_maps(objects, ["distance"])[..., 0]
    for label in (3, 7):
        inside = distance[objects == label]
        assert inside.max() == pytest.approx(1.0) and inside.min() == 0.0  # normalised per object
    assert distance[objects == 0].max() == 0.0
    assert distance[5, 9] == distance[5, 10] == 0.0  # the contact line separates the two peaks
    assert distance[5, 6] > distance[5, 4] > distance[5, 3] > 0  # rises towards the centre


def test_both_maps_stack_in_the_order_asked_and_unknown_names_are_refused() -> None:
    objects = side_by_side()
    both = instance_target_maps(objects, ("border", "distance"))
    assert both.shape == (12, 22, 2)
    np.testing.assert_array_equal(both[..., 0], instance_target_maps(objects, ["border"])[..., 0])
    with pytest.raises(ValueError, match="unknown instance maps"):
        instance_target_maps(objects, ["flows"])


def test_no_objects_gives_empty_maps() -> None:
    assert not instance_target_maps(np.zeros((5, 5), np.int32), ("border", "distance")).any()


def test_objects_are_the_instances_else_connected_components_of_the_objects_class() -> None:
    labels = np.zeros((6, 9), np.uint8)
    labels[1:5, 1:4], labels[1:5, 5:8] = 1, 1
    labels[0, 0] = 255  # ignored
    components = objects_of(labels, None, LabelConfig())
    assert components.max() == 2 and components[0, 0] == 0
    instances = np.arange(54).reshape(6, 9)
    assert objects_of(labels, instances, LabelConfig()) is instances
    membranes = objects_of(labels, None, LabelConfig(invert=True))  # the class of interest is 0: cells are 1
    assert membranes[2, 2] == 0 and membranes[2, 4] > 0
