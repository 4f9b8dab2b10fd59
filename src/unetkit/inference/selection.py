"""Choosing one setting among candidates scored image by image, without fooling oneself.

The best candidate on all images replaces the first one (the default) only if it beats it by more
than ``MIN_GAIN`` and if choosing this way also wins, by more than ``MIN_HELD_OUT_GAIN``, on
images left out of the choice: K-fold cross-validation over the images (each fold scored with the
candidate chosen on the others), so that a gain carried by a few lucky images does not replace
the default. Ties keep the default.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

log = logging.getLogger(__name__)

MIN_GAIN = 1e-4  # a candidate must beat the default by more than this on the images it is chosen on
MIN_HELD_OUT_GAIN = 0.005  # and by more than this on held-out images: less is not worth the risk
MAX_FOLDS = 5  # folds of the cross-validation over images (fewer with fewer images)

Score = Callable[[np.ndarray], float]
"""Per-image statistics of some images (rows) -> their score (higher is better)."""


@dataclass
class Selection:
    settings: dict
    score: float  # of the chosen candidate on all images
    default_score: float  # of the first candidate on all images
    held_out: float | None  # cross-validated score of choosing this way; None with one image
    changed: bool  # whether a candidate other than the default was chosen


def choose(candidates: Iterable[tuple[dict, np.ndarray]], score: Score, deadline: float) -> Selection:
    """The chosen one of ``candidates`` (settings, per-image statistics), the first being the
    default; stops evaluating them at ``deadline`` (time.monotonic) with those seen so far."""
    evaluated = _evaluate(candidates, deadline)
    images = len(evaluated[0][1])
    best = _winner(evaluated, score, np.ones(images, dtype=bool))
    default_score = score(evaluated[0][1])
    held_out = _cross_validated(evaluated, score)
    if best and (held_out is None or held_out <= default_score + MIN_HELD_OUT_GAIN):
        default, rejected = evaluated[0][0], evaluated[best][0]
        change = {name: value for name, value in rejected.items() if default.get(name) != value}
        log.info("post-processing: %s won on validation but not on held-out images; not taken", change)
        best = 0
    return Selection(evaluated[best][0], score(evaluated[best][1]), default_score, held_out, changed=best > 0)


def _evaluate(candidates: Iterable[tuple[dict, np.ndarray]], deadline: float) -> list[tuple[dict, np.ndarray]]:
    evaluated = []
    for candidate in candidates:
        evaluated.append(candidate)
        if time.monotonic() > deadline:
            log.warning("post-processing: the search reached its time limit; the best setting so far is kept")
            break
    return evaluated


def _winner(evaluated: list[tuple[dict, np.ndarray]], score: Score, images: np.ndarray) -> int:
    """Index of the best candidate on the ``images`` (mask); 0 unless it wins by more than MIN_GAIN."""
    scores = [score(statistics[images]) for _, statistics in evaluated]
    best = int(np.argmax(scores))
    return best if scores[best] > scores[0] + MIN_GAIN else 0


def _cross_validated(evaluated: list[tuple[dict, np.ndarray]], score: Score) -> float | None:
    """The score of all images, each fold of images scored with the candidate chosen on the others."""
    images = len(evaluated[0][1])
    if images < 2:
        return None
    folds = np.arange(images) % min(MAX_FOLDS, images)
    combined = evaluated[0][1].copy()
    for fold in range(folds.max() + 1):
        held = folds == fold
        combined[held] = evaluated[_winner(evaluated, score, ~held)][1][held]
    return score(combined)
