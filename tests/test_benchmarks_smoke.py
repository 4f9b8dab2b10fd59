"""The real-data benchmarks run end to end: tiny settings of each script's main() on the shared
samples (skipped where ../shared/data is absent), and the ISBI Rand error on hand-made cells."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO / ".." / "shared" / "data"


def needs_data(name: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not (SHARED_DATA / name).is_dir(), reason=f"no {SHARED_DATA / name}")


def benchmark(name: str) -> ModuleType:
    """A script of benchmarks/ as a module (they import each other by bare name)."""
    if str(REPO / "benchmarks") not in sys.path:
        sys.path.insert(0, str(REPO / "benchmarks"))
    return importlib.import_module(name)


def run_main(name: str, argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture) -> tuple[dict, str]:
    """main() of benchmark ``name`` with ``argv`` plus --json: its result, which the JSON file
    must repeat, and what it printed."""
    json_path = tmp_path / f"{name}.json"
    result = benchmark(name).main([*argv, "--json", str(json_path)])
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(result))
    printed = capsys.readouterr().out
    assert f"benchmarks/{name}.py" in result["command"] and result["command"] in printed
    return result, printed


def test_cell_rand_error_counts_merged_cells() -> None:
    cell_rand_error = benchmark("isbi2012").cell_rand_error
    truth = np.zeros((20, 20), dtype=np.uint8)
    truth[:, 10] = 1  # one membrane column: two cells
    assert cell_rand_error(truth, truth) == pytest.approx(0.0)
    merged = truth.copy()
    merged[5:8, 10] = 0  # a hole in the predicted membrane joins the cells
    assert cell_rand_error(truth, merged) > 0.3


def test_challenge_scores_take_the_best_threshold_where_argmax_misses() -> None:
    isbi = benchmark("isbi2012")
    truth = np.zeros((20, 20), dtype=np.uint8)
    truth[:, 10] = 1
    membrane = np.where(truth == 1, 0.3, 0.1)  # below 0.5: argmax sees no membrane, threshold 0.3 all of it
    argmax = isbi.argmax_scores([truth], [(membrane > 0.5).astype(np.uint8)])
    assert argmax["pixel_error"] == pytest.approx(20 / 400) and argmax["membrane_iou"] == 0.0
    assert argmax["rand_error"] > 0.3  # the two cells merged
    best = isbi.best_threshold_scores([truth], [membrane])
    assert (best["pixel_error_best_threshold"], best["rand_error_best_threshold"]) == (0.0, 0.0)
    assert 0.1 < best["thresholds"]["pixel_error"] <= 0.3  # membrane from the first threshold above 0.1
    assert isbi.best_threshold_scores([truth], [np.full(truth.shape, 0.6)])["pixel_error_best_threshold"] > 0.0


@needs_data("isbi2012")
def test_isbi2012_benchmark(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["--train-slices", "2", "--eval-slices", "1", "--epochs", "1", "--base-width", "2", "--workers", "0",
            "--depth", "2", "--patch-size", "92", "--tile-size", "188", "--out", str(tmp_path / "run")]
    result, printed = run_main("isbi2012", argv, tmp_path, capsys)
    assert (result["train_slices"], result["eval_slices"]) == ("0-1", "25-25")
    metrics = ("pixel_error", "membrane_iou", "rand_error", "pixel_error_best_threshold", "rand_error_best_threshold")
    for metric in metrics:
        assert 0.0 <= result[metric] <= 1.0
    assert "0.0611" in printed and "0.0382" in printed  # the paper's figures beside ours
    again, printed = run_main("isbi2012", [*argv[:4], "--checkpoint", str(tmp_path / "run" / "last.pt")], tmp_path, capsys)
    assert again["train_seconds"] is None and "training: none" in printed
    assert {m: again[m] for m in metrics} == {m: result[m] for m in metrics}  # the same checkpoint, the same scores


@needs_data("isbi2012")
def test_precision_accuracy_benchmark(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["--datasets", "isbi2012", "--epochs", "1", "--image-size", "32", "--base-width", "2", "--workers", "0"]
    result, _ = run_main("precision_accuracy", argv, tmp_path, capsys)
    (row,) = result["rows"]
    assert 0.0 <= row["dice_auto"] <= 1.0 and 0.0 <= row["dice_32"] <= 1.0
    assert row["difference"] == pytest.approx(row["dice_auto"] - row["dice_32"])


@needs_data("carvana")
def test_pipeline_benchmark(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["--patch-size", "64", "--batch-size", "2", "--base-width", "2", "--steps", "1", "--workers", "0", "1"]
    result, _ = run_main("pipeline", argv, tmp_path, capsys)
    assert [row["workers"] for row in result["rows"]] == [0, 1]
    for row in result["rows"]:
        assert row["pipeline_img_s"] > 0 and row["model_img_s"] > 0 and row["data_wait_s"] >= 0
        assert row["ratio"] == pytest.approx(row["pipeline_img_s"] / row["model_img_s"])
