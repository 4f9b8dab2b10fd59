"""The budget rules with a fake probe: measured speeds in, width, steps and cadence out."""

from __future__ import annotations

import pytest
from planning_helpers import fingerprint

from unetkit.planning import budget


class FakeProbe:
    """Steps per second by width, and which widths were measured."""

    def __init__(self, rates: dict[int, float]) -> None:
        self.rates = rates
        self.asked: list[int] = []

    def __call__(self, width: int) -> float:
        self.asked.append(width)
        return self.rates[width]


def test_the_widest_width_reaching_the_minimum_steps_wins_and_wider_ones_are_not_measured() -> None:
    probe = FakeProbe({8: 10.0, 16: 4.0, 32: 1.0})
    choice, measured = budget.budget_width(600, "cpu", probe)  # 480 s of training
    assert choice.value == 16  # 1920 steps; width 32 would make 480
    assert probe.asked == [8, 16]  # under twice the minimum: a 2x wider network cannot reach it
    assert measured == {8: 10.0, 16: 4.0}
    assert "1920 steps" in choice.reason and "narrower" in choice.reason


def test_wide_networks_when_the_budget_allows() -> None:
    choice, _ = budget.budget_width(3600, "cuda", FakeProbe({8: 50.0, 16: 40.0, 32: 20.0, 64: 8.0}))
    assert choice.value == 64  # 8 steps/s x 2880 s = 23040 steps


def test_a_cpu_never_gets_wider_than_32() -> None:
    probe = FakeProbe({8: 100.0, 16: 100.0, 32: 100.0, 64: 100.0})
    assert budget.budget_width(3600, "cpu", probe)[0].value == 32 and 64 not in probe.asked


def test_a_budget_too_small_for_any_width_takes_the_narrowest_and_says_so() -> None:
    choice, measured = budget.budget_width(60, "cpu", FakeProbe({8: 2.0, 16: 1.0}))
    assert choice.value == 8 and measured == {8: 2.0}
    assert "more time" in choice.reason


def test_a_width_you_set_is_the_only_one_measured() -> None:
    probe = FakeProbe({24: 3.0})
    choice, measured = budget.budget_width(600, "cpu", probe, widths=[24])
    assert choice.value == 24 and probe.asked == [24]


def test_steps_fill_the_budget_after_validation_and_start_up() -> None:
    choice = budget.budget_steps(600, rate=2.5)
    assert choice.path == "train.steps" and choice.value == int(2.5 * 600 * (1 - budget.VALIDATION_SHARE - budget.OTHER_SHARE))
    assert choice.value == 1200


def test_without_a_budget_steps_follow_the_dataset_within_bounds() -> None:
    small = fingerprint(train_images=10, median_size=(584, 565))  # 629 steps by the rule
    assert budget.dataset_steps(small, batch=4, patch=256, resized=0, rate=2.0).value == budget.MIN_STEPS
    many = fingerprint(train_images=500, median_size=(1000, 1000))
    assert budget.dataset_steps(many, batch=4, patch=256, resized=0, rate=2.0).value == budget.MAX_STEPS
    middle = fingerprint(train_images=30, median_size=(512, 512))
    steps = budget.dataset_steps(middle, batch=4, patch=256, resized=0, rate=2.0).value
    assert steps == budget.NO_BUDGET_PASSES * 30 * 4 // 4  # 50 passes of 4 patches per image, 4 per step


@pytest.mark.parametrize("val_images, every", [(6, 50), (500, 1000)])
def test_validation_cadence_keeps_validation_near_its_share(val_images: int, every: int) -> None:
    # 1000 steps at 2 steps/s of 4 x 256^2 px: forward passes run at 3 x 524k px/s
    choice = budget.val_every(1000, 2.0, 4, 256, val_images, 512 * 512, budget_seconds=600)
    assert choice.value == every  # few images: the most validations (20); many: as often as 15 % allows (1)
