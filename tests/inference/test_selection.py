from __future__ import annotations

import time

import numpy as np
import pytest

from unetkit.inference.selection import choose

NO_DEADLINE = float("inf")


def scored(*per_image: list[float]) -> list[tuple[dict, np.ndarray]]:
    """Candidates named 0, 1, ... with the given per-image scores; candidate 0 is the default."""
    return [({"name": index}, np.array(scores)) for index, scores in enumerate(per_image)]


def test_a_candidate_better_on_every_image_is_chosen() -> None:
    choice = choose(scored([0.5, 0.6, 0.4, 0.5], [0.7, 0.8, 0.6, 0.7], [0.6, 0.7, 0.5, 0.6]), np.mean, NO_DEADLINE)
    assert choice.settings == {"name": 1}
    assert choice.score == pytest.approx(0.7) and choice.default_score == pytest.approx(0.5)
    assert choice.held_out == pytest.approx(0.7)


def test_a_gain_carried_by_one_lucky_image_keeps_the_default() -> None:
    # Better on average (0.6 against 0.5) but only through image 0, and worse on all the others.
    choice = choose(scored([0.5, 0.5, 0.5, 0.5], [1.0, 0.48, 0.46, 0.46]), np.mean, NO_DEADLINE)
    assert choice.settings == {"name": 0} and choice.held_out < 0.5


def test_ties_and_one_image_keep_the_default() -> None:
    assert choose(scored([0.5, 0.5], [0.5, 0.5]), np.mean, NO_DEADLINE).settings == {"name": 0}
    single = choose(scored([0.5], [0.9]), np.mean, NO_DEADLINE)
    assert single.settings == {"name": 0} and single.held_out is None


def test_the_deadline_stops_the_evaluation_of_candidates() -> None:
    evaluated = []

    def lazily() -> object:
        for name, scores in enumerate(([0.5, 0.5], [0.6, 0.6], [0.9, 0.9])):
            evaluated.append(name)
            yield {"name": name}, np.array(scores)

    choice = choose(lazily(), np.mean, time.monotonic() - 1)
    assert evaluated == [0] and choice.settings == {"name": 0}


def test_a_held_out_gain_under_half_a_point_keeps_the_default() -> None:
    assert choose(scored([0.5, 0.5, 0.5, 0.5], [0.504, 0.504, 0.504, 0.504]), np.mean, NO_DEADLINE).settings == {"name": 0}
    assert choose(scored([0.5, 0.5, 0.5, 0.5], [0.51, 0.51, 0.51, 0.51]), np.mean, NO_DEADLINE).settings == {"name": 1}
