"""The arena (benchmarks/arena.py) end to end at toy size: 20 s budgets on small generated data,
every arm but nnU-Net (whose planning and preprocessing alone take minutes on a small CPU). Peers
run under $UNETKIT_ARENA_PYTHON (the interpreter of a venv with the ``arena`` extra), else this
one; an arm whose packages do not import there is skipped with the arm's own reason."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from test_benchmarks_smoke import benchmark

ARMS = ["unetkit", "monai", "smp", "seeds"]
OBJECT_SCORES = ("dsb_score", "ap_50", "f1_50")


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """One arena run for every arm: (its result, the folder of its runs)."""
    budget = benchmark("budget")
    patch = pytest.MonkeyPatch()
    for name, value in (("BLOB_SIZE", 64), ("BLOB_TRAIN", 8), ("BLOB_TEST", 3)):
        patch.setattr(budget, name, value)  # the generated data small
    out = tmp_path_factory.mktemp("arena")
    python = os.environ.get("UNETKIT_ARENA_PYTHON", sys.executable)
    argv = ["--datasets", "generated", "--arms", *ARMS, "--time", "20s", "--peer-python", python,
            "--out", str(out / "runs"), "--json", str(out / "arena.json")]  # fmt: skip
    try:
        result = benchmark("arena").main(argv)
    finally:
        patch.undo()
    assert json.loads((out / "arena.json").read_text()) == json.loads(json.dumps(result))
    return result, out / "runs"


@pytest.mark.slow
@pytest.mark.parametrize("arm", ARMS)
def test_arena_arm(arena: tuple[dict, Path], arm: str) -> None:
    result, runs = arena
    (row,) = [row for row in result["rows"] if row["arm"] == arm]
    assert row["dataset"] == "generated" and row["budget_seconds"] == 20 and row["machine"] == result["machine"]
    if row["status"] == "not installed":
        pytest.skip(f"{arm}: {row['reason']}")
    assert row["status"] == "ok", row.get("reason")
    for score in ("dice", "iou", *OBJECT_SCORES):
        assert isinstance(row[score], float) and 0.0 <= row[score] <= 1.0, score
    assert row["steps"] > 0 and row["train_seconds"] > 0 and row["predict_seconds"] > 0 and row["train_peak_rss_mb"] > 0
    assert row["missing_predictions"] == [] and row["versions"]["torch"]
    assert len(list((runs / "generated" / arm / "predictions").glob("*_mask.png"))) == 3
