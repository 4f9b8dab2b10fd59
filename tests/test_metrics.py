from __future__ import annotations

import json
import math
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from unetkit.errors import ConfigError
from unetkit.metrics import ConfusionMatrix, dsb_score, instance_iou, object_errors, object_scores, pooled_scores, seg_measure

IGNORE = 255


def expected_scores(preds: list[np.ndarray], targets: list[np.ndarray], classes: int) -> dict:
    """Pixel accuracy and per-class Dice / IoU counted pixel by pixel with plain Python loops."""
    tp, fp, fn = [0] * classes, [0] * classes, [0] * classes
    correct = counted = 0
    for pred, target in zip(preds, targets):
        for p, t in zip(pred.ravel().tolist(), target.ravel().tolist()):
            if t == IGNORE:
                continue
            counted += 1
            if p == t:
                correct += 1
                tp[t] += 1
            else:
                fp[p] += 1
                fn[t] += 1
    dice = [2 * tp[c] / (2 * tp[c] + fp[c] + fn[c]) if tp[c] + fp[c] + fn[c] else None for c in range(classes)]
    iou = [tp[c] / (tp[c] + fp[c] + fn[c]) if tp[c] + fp[c] + fn[c] else None for c in range(classes)]
    return {"pixel_accuracy": correct / counted, "dice": dice, "iou": iou, "support": [tp[c] + fn[c] for c in range(classes)]}


def random_labels(rng: np.random.Generator, classes: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    pred = rng.integers(0, classes, shape)
    target = rng.integers(0, classes, shape)
    target[rng.random(shape) < 0.15] = IGNORE
    return pred, target


def test_confusion_matrix_matches_pixel_loops() -> None:
    rng = np.random.default_rng(0)
    classes = 4
    batches = [random_labels(rng, classes, (2, 9, 7)) for _ in range(3)]
    metric = ConfusionMatrix(classes, ignore_index=IGNORE)
    for pred, target in batches:
        metric.update(torch.from_numpy(pred), torch.from_numpy(target))
    result = metric.compute()
    expected = expected_scores([p for p, _ in batches], [t for _, t in batches], classes)
    assert result["pixel_accuracy"] == pytest.approx(expected["pixel_accuracy"])
    assert [row["dice"] for row in result["per_class"]] == pytest.approx(expected["dice"])
    assert [row["iou"] for row in result["per_class"]] == pytest.approx(expected["iou"])
    assert [row["support"] for row in result["per_class"]] == expected["support"]
    assert result["dice"] == pytest.approx(np.mean(expected["dice"][1:]))
    assert result["iou"] == pytest.approx(np.mean(expected["iou"][1:]))


def test_absent_class_is_left_out_of_the_means() -> None:
    pred = torch.tensor([[0, 1, 1], [3, 3, 0]])
    target = torch.tensor([[0, 1, 0], [3, 3, IGNORE]])  # class 2 in neither
    metric = ConfusionMatrix(4, names=["bg", "a", "b", "c"])
    metric.update(pred, target)
    result = metric.compute()
    absent = result["per_class"][2]
    assert absent == {"class": 2, "name": "b", "dice": None, "iou": None, "support": 0}
    assert result["dice"] == pytest.approx((2 / 3 + 1.0) / 2)  # class 1: tp 1, fp 1; class 3: perfect
    assert result["iou"] == pytest.approx((1 / 2 + 1.0) / 2)
    assert result["pixel_accuracy"] == pytest.approx(4 / 5)
    json.dumps(result, allow_nan=False)


def test_empty_truth_and_empty_prediction_are_perfect() -> None:
    metric = ConfusionMatrix(1)  # a binary model: background + foreground
    metric.update(torch.zeros(2, 4, 4, dtype=torch.long), torch.zeros(2, 4, 4, dtype=torch.long))
    result = metric.compute()
    assert metric.num_classes == 2
    assert (result["pixel_accuracy"], result["dice"], result["iou"]) == (1.0, 1.0, 1.0)
    assert result["per_class"][1]["dice"] is None


def test_nothing_counted_is_nan_free() -> None:
    metric = ConfusionMatrix(2)
    metric.update(torch.ones(3, 3, dtype=torch.long), torch.full((3, 3), IGNORE))
    result = metric.compute()
    assert (result["pixel_accuracy"], result["dice"], result["iou"]) == (1.0, 1.0, 1.0)


def test_false_positives_on_empty_truth_score_zero() -> None:
    metric = ConfusionMatrix(2)
    metric.update(torch.ones(3, 3, dtype=torch.long), torch.zeros(3, 3, dtype=torch.long))
    result = metric.compute()
    assert (result["pixel_accuracy"], result["dice"], result["iou"]) == (0.0, 0.0, 0.0)


def test_reset_clears_the_counts() -> None:
    metric = ConfusionMatrix(3)
    metric.update(torch.tensor([1, 2]), torch.tensor([2, 2]))
    metric.reset()
    metric.update(torch.tensor([1, 2]), torch.tensor([1, 2]))
    assert metric.compute()["pixel_accuracy"] == 1.0
    assert int(metric.matrix.sum()) == 2


def test_mismatched_names_and_shapes_are_rejected() -> None:
    with pytest.raises(ConfigError, match="one name per class"):
        ConfusionMatrix(3, names=["a", "b"])
    with pytest.raises(ValueError, match="shape"):
        ConfusionMatrix(3).update(torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))


def test_reduce_is_a_no_op_without_distributed() -> None:
    metric = ConfusionMatrix(2)
    metric.update(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]))
    before = metric.matrix.clone()
    metric.reduce_from_all_processes()
    assert torch.equal(metric.matrix, before)


def _reduce_worker(rank: int, world_size: int, port: int, results: dict) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        metric = ConfusionMatrix(2)
        metric.update(torch.tensor([rank]), torch.tensor([1]))  # rank 0 wrong, rank 1 right
        metric.reduce_from_all_processes()
        results[rank] = metric.compute()["pixel_accuracy"]
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_reduce_sums_over_processes() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_reduce_worker, args=(2, port, results), nprocs=2)
        assert dict(results) == {0: 0.5, 1: 0.5}


def squares(*boxes: tuple[int, int, int, int], labels: list[int] | None = None, size: int = 32) -> np.ndarray:
    """An instance image with one object per (row, col, height, width) box."""
    image = np.zeros((size, size), dtype=np.int32)
    for label, (row, col, height, width) in zip(labels or range(1, len(boxes) + 1), boxes):
        image[row : row + height, col : col + width] = label
    return image


TRUTH = squares((2, 2, 10, 10), (18, 18, 8, 8))


@pytest.mark.parametrize(
    "pred,dsb,seg",
    [
        (squares((18, 18, 8, 8), (2, 2, 10, 10), labels=[900, 7]), 1.0, 1.0),  # same objects, other labels
        (squares((2, 2, 10, 10)), 0.5, 0.5),  # one object missed
        (squares((2, 2, 10, 10), (18, 18, 8, 8), (28, 0, 3, 3)), 2 / 3, 1.0),  # one false positive: SEG ignores it
        # first object shifted 2 px: IoU 80 / 120 = 2/3, a match at thresholds 0.5..0.65 only
        (squares((2, 4, 10, 10), (18, 18, 8, 8)), (4 * 1 + 6 * 1 / 3) / 10, (2 / 3 + 1) / 2),
        (np.zeros_like(TRUTH), 0.0, 0.0),
    ],
)
def test_instance_scores_hand_cases(pred: np.ndarray, dsb: float, seg: float) -> None:
    assert dsb_score(pred, TRUTH) == pytest.approx(dsb)
    assert seg_measure(pred, TRUTH) == pytest.approx(seg)


def test_seg_needs_more_than_half_of_the_reference() -> None:
    # the prediction covers exactly half of the 10x10 reference: no match under |R n S| > 0.5 |R|
    assert seg_measure(squares((2, 2, 5, 10)), squares((2, 2, 10, 10))) == 0.0
    assert seg_measure(squares((2, 2, 6, 10)), squares((2, 2, 10, 10))) == pytest.approx(0.6)


def test_empty_images() -> None:
    empty = np.zeros((8, 8), dtype=np.int32)
    assert dsb_score(empty, empty) == 1.0
    assert dsb_score(squares((1, 1, 3, 3), size=8), empty) == 0.0
    assert math.isnan(seg_measure(squares((1, 1, 3, 3), size=8), empty))


def test_instance_iou_matches_object_loops() -> None:
    rng = np.random.default_rng(1)
    pred = rng.choice([0, 3, 5, 70000], size=(20, 20))
    true = rng.choice([0, -2, 1, 9], size=(20, 20))
    iou = instance_iou(pred, true)
    for i, t in enumerate([-2, 1, 9]):
        for j, p in enumerate([3, 5, 70000]):
            both = np.sum((true == t) & (pred == p))
            either = np.sum((true == t) | (pred == p))
            assert iou[i, j] == pytest.approx(both / either)


def test_instance_shapes_must_agree() -> None:
    with pytest.raises(ValueError, match="shape"):
        dsb_score(np.zeros((4, 4), dtype=np.int32), np.zeros((4, 5), dtype=np.int32))


# Two touching 6x6 squares side by side (true 1 and 2), and a lone 6x10 box (true 3) below them.
TOUCHING = squares((2, 2, 6, 6), (2, 8, 6, 6), (12, 2, 6, 10), size=24)


def test_two_touching_squares_merged_into_one_prediction() -> None:
    merged = squares((2, 2, 6, 12), (12, 2, 6, 10), labels=[5, 6], size=24)
    scores = object_scores(merged, TOUCHING)
    # The merged box has IoU 36/72 = 0.5 with each square: no match (IoU must exceed 0.5); box 3 matches exactly.
    assert (scores["matched_50"], scores["true_objects"], scores["predicted_objects"]) == (1, 3, 2)
    assert scores["ap_50"] == pytest.approx(1 / (1 + 2 + 1))  # TP / (TP + FN + FP)
    assert scores["precision_50"] == pytest.approx(1 / 2) and scores["recall_50"] == pytest.approx(1 / 3)
    assert scores["f1_50"] == pytest.approx(2 * 1 / (2 * 1 + 2 + 1))
    assert scores["pq"] == pytest.approx(1.0 / (1 + 0.5 * 2 + 0.5 * 1))  # the match's IoU 1 over TP + FN/2 + FP/2
    # AJI: each square picks the box (intersection 36, union 72), box 3 itself (60, 60).
    assert scores["aji"] == pytest.approx((36 + 36 + 60) / (72 + 72 + 60))
    assert scores["seg"] == pytest.approx((0.5 + 0.5 + 1) / 3)  # the box covers each square wholly: Jaccard 0.5
    assert (scores["merged_objects"], scores["split_objects"]) == (1, 0)


def test_two_touching_squares_split_along_the_wrong_line() -> None:
    # The cut runs 2 px left of the true one: the left square loses a third, the right one gains it.
    wrong_cut = squares((2, 2, 6, 4), (2, 6, 6, 8), (12, 2, 6, 10), labels=[1, 2, 3], size=24)
    scores = object_scores(wrong_cut, TOUCHING)
    left, right = 24 / 36, 36 / 48  # IoU of each piece with its square
    assert scores["matched_50"] == 3
    assert scores["dsb_score"] == pytest.approx(np.mean([(1 + (left > t) + (right > t)) / (6 - (1 + (left > t) + (right > t)))
                                                          for t in np.linspace(0.5, 0.95, 10)]))  # fmt: skip
    assert scores["pq"] == pytest.approx((left + right + 1) / 3)
    assert scores["aji"] == pytest.approx((24 + 36 + 60) / (36 + 48 + 60))


def test_a_missed_object_and_an_invented_one() -> None:
    predicted = squares((2, 2, 6, 6), (2, 8, 6, 6), (20, 20, 3, 3), labels=[1, 2, 9], size=24)  # box 3 missed, 9 invented
    scores = object_scores(predicted, TOUCHING)
    assert (scores["matched_50"], scores["ap_50"], scores["f1_50"]) == (2, pytest.approx(2 / 4), pytest.approx(4 / 6))
    assert scores["aji"] == pytest.approx((36 + 36) / (36 + 36 + 60 + 9))  # the miss and the invention add to the union
    assert scores["seg"] == pytest.approx(2 / 3)  # SEG ignores the invented object
    errors = object_errors(predicted, TOUCHING)
    assert errors.missed == {3} and errors.invented == {9} and errors.matched == {1, 2}


def test_a_true_object_cut_in_two_is_a_split() -> None:
    halves = squares((2, 2, 6, 6), (2, 8, 6, 6), (12, 2, 6, 5), (12, 7, 6, 5), labels=[1, 2, 7, 8], size=24)
    scores = object_scores(halves, TOUCHING)
    assert (scores["split_objects"], scores["merged_objects"], scores["matched_50"]) == (1, 0, 2)
    errors = object_errors(halves, TOUCHING)
    assert errors.split == {7, 8} and errors.missed == {3} and not errors.invented


def test_pooled_scores_weigh_every_object_alike() -> None:
    perfect = object_scores(TOUCHING, TOUCHING)
    empty_guess = object_scores(np.zeros_like(TOUCHING), TOUCHING)
    pooled = pooled_scores([perfect, empty_guess])
    assert pooled["ap_50"] == pytest.approx(3 / 6) and pooled["recall_50"] == pytest.approx(0.5)
    assert pooled["precision_50"] == 1.0  # nothing predicted in the second image: nothing wrongly
    assert pooled["aji"] == pytest.approx(132 / 264)


def test_both_empty_is_perfect_except_seg() -> None:
    empty = np.zeros((8, 8), dtype=np.int32)
    scores = object_scores(empty, empty)
    assert all(scores[key] == 1.0 for key in ("dsb_score", "ap_50", "precision_50", "recall_50", "f1_50", "pq", "aji"))
    assert math.isnan(scores["seg"])
