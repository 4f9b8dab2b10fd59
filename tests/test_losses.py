from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unetkit.errors import ConfigError
from unetkit.losses import LOSS_NAMES, build_loss

IGNORE = 255

# (loss name, model classes): every loss on a binary and on a 3-class model where it applies.
CASES = [(name, 1) for name in LOSS_NAMES] + [(name, 3) for name in LOSS_NAMES if "bce" not in name]
# ... each with and without a weight map, except the weighted losses, which require one.
WEIGHTING_CASES = [(name, classes, weighted) for name, classes in CASES for weighted in (False, True)
                   if weighted or not name.startswith("weighted")]


def reference_loss(name: str, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> float:
    """The losses written out independently in float64 numpy, straight from their definitions."""
    x = logits.double().numpy()
    t = target.numpy()
    w = np.ones(t.shape) if weight is None else weight.double().numpy()
    w = np.where(t == IGNORE, 0.0, w)
    t = np.where(t == IGNORE, 0, t)
    if x.shape[1] == 1:
        foreground = 1 / (1 + np.exp(-x[:, 0]))
        probabilities = np.stack([1 - foreground, foreground], axis=1)
    else:
        exp = np.exp(x - x.max(axis=1, keepdims=True))
        probabilities = exp / exp.sum(axis=1, keepdims=True)
    parts = name.removeprefix("weighted-").split("+")
    total = 0.0
    if "ce" in parts or "bce" in parts:
        per_pixel = -np.log(np.take_along_axis(probabilities, t[:, None], axis=1)[:, 0])
        total += (w * per_pixel).sum() / w.sum()
    if "dice" in parts:
        scores = []
        for c in range(1, probabilities.shape[1]):
            p, truth = probabilities[:, c], (t == c)
            scores.append((2 * (w * p * truth).sum() + 1) / ((w * p).sum() + (w * truth).sum() + 1))
        total += 1 - np.mean(scores)
    return total


def random_batch(classes: int, seed: int = 0, size: int = 6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, targets with about 20% ignored pixels, and a positive weight map."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, classes, size, size, generator=generator) * 2
    target = torch.randint(0, max(classes, 2), (2, size, size), generator=generator)
    target[torch.rand(target.shape, generator=generator) < 0.2] = IGNORE
    weight = torch.rand(target.shape, generator=generator) * 5 + 0.5
    return logits, target, weight


def test_zero_logits_give_log_k_cross_entropy() -> None:
    target = torch.tensor([[[0, 1], [1, 0]]])
    assert build_loss("bce", 1)(torch.zeros(1, 1, 2, 2), target).item() == pytest.approx(math.log(2))
    assert build_loss("ce", 3)(torch.zeros(1, 3, 2, 2), target).item() == pytest.approx(math.log(3))


def test_cross_entropy_hand_case() -> None:
    # softmax([0, ln 3]) = [0.25, 0.75]: the loss is -ln 0.75 on class 1 and -ln 0.25 on class 0.
    logits = torch.tensor([0.0, math.log(3)]).view(1, 2, 1, 1).repeat(1, 1, 1, 2)
    target = torch.tensor([[[1, 0]]])
    expected = (-math.log(0.75) - math.log(0.25)) / 2
    assert build_loss("ce", 2)(logits, target).item() == pytest.approx(expected)


def test_dice_hand_case() -> None:
    # p = 0.5 on two pixels, truth [0, 1]: intersection 0.5, sums 1 + 1, smooth 1 -> Dice 2/3.
    loss = build_loss("dice", 1)(torch.zeros(1, 1, 1, 2), torch.tensor([[[0, 1]]]))
    assert loss.item() == pytest.approx(1 / 3)


@pytest.mark.parametrize("name,classes,weighted", WEIGHTING_CASES)
def test_matches_numpy_reference(name: str, classes: int, weighted: bool) -> None:
    logits, target, weight = random_batch(classes)
    weight = weight if weighted else None
    loss = build_loss(name, classes)(logits, target, weight)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(reference_loss(name, logits, target, weight), rel=1e-5)


@pytest.mark.parametrize("classes", [1, 3])
def test_dice_of_empty_prediction_on_empty_mask_is_zero(classes: int) -> None:
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    logits = torch.full((2, classes, 4, 4), -20.0)
    if classes > 1:
        logits[:, 0] = 20.0  # confident background
    assert build_loss("dice", classes)(logits, target).item() == pytest.approx(0.0, abs=1e-6)


def test_dice_of_full_prediction_on_empty_mask_is_near_one() -> None:
    loss = build_loss("dice", 1)(torch.full((1, 1, 4, 4), 20.0), torch.zeros(1, 4, 4, dtype=torch.long))
    assert loss.item() == pytest.approx(1 - 1 / 17, abs=1e-6)  # Dice = smooth / (16 + smooth)


@pytest.mark.parametrize("name,classes", CASES)
def test_ignored_pixels_count_in_no_term(name: str, classes: int) -> None:
    logits, target, weight = random_batch(classes, seed=1)
    ignored = (target == IGNORE).unsqueeze(1).expand_as(logits)
    loss_fn = build_loss(name, classes)
    changed = torch.where(ignored, torch.randn_like(logits) * 50, logits).requires_grad_(True)
    loss = loss_fn(changed, target, weight)
    loss.backward()
    assert loss.item() == pytest.approx(loss_fn(logits, target, weight).item(), rel=1e-6)
    assert torch.all(changed.grad[ignored] == 0)
    assert torch.all(changed.grad[~ignored] != 0)


@pytest.mark.parametrize("name,classes", CASES)
def test_zero_weight_is_the_same_as_ignoring(name: str, classes: int) -> None:
    logits, target, weight = random_batch(classes, seed=2)
    dropped = torch.rand(target.shape, generator=torch.Generator().manual_seed(3)) < 0.3
    loss_fn = build_loss(name, classes)
    zero_weighted = loss_fn(logits, target, torch.where(dropped, 0.0, weight))
    ignored = loss_fn(logits, torch.where(dropped, IGNORE, target), weight)
    assert zero_weighted.item() == pytest.approx(ignored.item(), rel=1e-6)


@pytest.mark.parametrize("name,classes", [("weighted-bce", 1), ("weighted-ce", 3)])
def test_uniform_weight_map_changes_nothing(name: str, classes: int) -> None:
    logits, target, _ = random_batch(classes, seed=4)
    unweighted = build_loss(name.removeprefix("weighted-"), classes)(logits, target)
    weighted = build_loss(name, classes)(logits, target, torch.full(target.shape, 7.0))
    assert weighted.item() == pytest.approx(unweighted.item(), rel=1e-6)


@pytest.mark.parametrize("name,classes", CASES)
def test_all_pixels_ignored_gives_zero_and_finite_gradient(name: str, classes: int) -> None:
    logits = torch.randn(1, classes, 3, 3, requires_grad=True)
    target = torch.full((1, 3, 3), IGNORE)
    loss = build_loss(name, classes)(logits, target, torch.ones(1, 3, 3))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.all(logits.grad == 0)


@pytest.mark.parametrize("name,classes", CASES)
def test_bf16_autocast_computes_in_float32(name: str, classes: int) -> None:
    logits, target, weight = random_batch(classes, seed=5)
    logits = logits.bfloat16()
    loss_fn = build_loss(name, classes)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = loss_fn(logits, target, weight)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(loss_fn(logits.float(), target, weight).item(), rel=1e-6)


def test_weighted_loss_without_weight_map_is_a_config_error() -> None:
    loss_fn = build_loss("weighted-ce", 3)
    assert loss_fn.needs_weight_map and not build_loss("ce", 3).needs_weight_map
    with pytest.raises(ConfigError, match="data.weight_map"):
        loss_fn(*random_batch(3)[:2])


@pytest.mark.parametrize(
    "name,classes,resolved",
    [
        ("ce", 1, "bce"),
        ("ce+dice", 1, "bce+dice"),
        ("weighted-ce", 1, "weighted-bce"),
        ("bce", 2, "ce"),
        ("bce+dice", 2, "ce+dice"),
        ("weighted-bce", 2, "weighted-ce"),
        ("dice", 1, "dice"),
        ("dice", 4, "dice"),
    ],
)
def test_ce_and_bce_names_swap_where_the_other_fits(name: str, classes: int, resolved: str) -> None:
    assert build_loss(name, classes).name == resolved


def test_sigmoid_and_two_class_softmax_agree() -> None:
    # softmax over logits [0, z] is sigmoid(z): the binary and two-class losses coincide.
    binary_logits, target, _ = random_batch(1, seed=6)
    two_class_logits = torch.cat([torch.zeros_like(binary_logits), binary_logits], dim=1)
    for name in ("bce", "bce+dice"):
        binary = build_loss(name, 1)(binary_logits, target)
        assert build_loss(name, 2)(two_class_logits, target).item() == pytest.approx(binary.item(), rel=1e-6)


@pytest.mark.parametrize(
    "name,classes,message",
    [("bce", 3, "use 'ce'"), ("bce+dice", 5, "use 'ce\\+dice'"), ("focal", 1, "unknown loss"), ("ce", 0, ">= 1")],
)
def test_impossible_loss_is_a_config_error(name: str, classes: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_loss(name, classes)


def test_wrong_channel_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="3 logit channel"):
        build_loss("ce", 3)(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))


def test_custom_ignore_index() -> None:
    logits, target, _ = random_batch(3, seed=7)
    target[target == IGNORE] = 0
    target[:, 0] = 9
    loss_fn = build_loss("ce+dice", 3, ignore_index=9)
    assert loss_fn(logits, target).item() == pytest.approx(loss_fn(logits[:, :, 1:], target[:, 1:]).item(), rel=1e-6)


def test_instance_maps_add_their_own_term_on_the_channels_after_the_classes() -> None:
    """Cross-entropy on every map (calibrated on continuous targets), soft Dice on the border only."""
    logits, target, _ = random_batch(1, seed=3)
    maps = torch.rand(target.shape[0], 2, *target.shape[1:])
    map_logits = torch.randn_like(maps)
    loss_fn = build_loss("bce+dice", 1, instance_maps=("border", "distance"))
    combined = loss_fn(torch.cat([logits, map_logits], dim=1), target, None, maps)
    class_only = build_loss("bce+dice", 1)(logits, target)
    valid = (target != IGNORE).float().unsqueeze(1)
    bce = (F.binary_cross_entropy_with_logits(map_logits, maps, reduction="none") * valid).sum() / (2 * valid.sum())
    p, t = torch.sigmoid(map_logits[:, :1]) * valid, maps[:, :1] * valid
    dice = (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    assert combined.item() == pytest.approx((class_only + bce + 1 - dice).item(), rel=1e-5)


def test_the_distance_maps_term_is_least_where_the_prediction_is_the_target() -> None:
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    distance = torch.rand(1, 1, 4, 4) * 0.8 + 0.1
    loss_fn = build_loss("bce", 1, instance_maps=("distance",))
    exact = torch.logit(distance)
    losses = [loss_fn(torch.cat([torch.zeros(1, 1, 4, 4), exact + shift], dim=1), target, None, distance).item()
              for shift in (-0.5, 0.0, 0.5)]  # fmt: skip
    assert losses[1] < losses[0] and losses[1] < losses[2]


def test_a_model_with_instance_maps_needs_their_targets() -> None:
    loss_fn = build_loss("ce+dice", 3, instance_maps=("distance",))
    logits, target = torch.zeros(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="1 instance map"):
        loss_fn(logits, target)
    with pytest.raises(ValueError, match="4 logit channel"):
        loss_fn(logits[:, :3], target, None, torch.zeros(1, 1, 2, 2))
