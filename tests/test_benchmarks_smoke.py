"""The real-data benchmarks run end to end: tiny settings of each script's main() on the sample
data (sample_data.py: skipped without it, slow with it), and the ISBI Rand error on hand-made cells."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from sample_data import SAMPLE_DATA, needs_sample

REPO = Path(__file__).resolve().parents[1]


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


@needs_sample("isbi2012")
def test_isbi2012_benchmark(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = ["--data", str(SAMPLE_DATA / "isbi2012")]
    argv = ["--eval-slices", "1", *data, "--train-slices", "2", "--val-slices", "1", "--epochs", "1", "--base-width", "2",
            "--workers", "0", "--depth", "2", "--patch-size", "92", "--tile-size", "188", "--out", str(tmp_path / "run")]
    result, printed = run_main("isbi2012", argv, tmp_path, capsys)
    assert (result["train_slices"], result["val_slices"], result["eval_slices"]) == ("0-1", "20-20", "25-25")
    metrics = ("pixel_error", "membrane_iou", "rand_error", "pixel_error_best_threshold", "rand_error_best_threshold")
    for metric in metrics:
        assert 0.0 <= result[metric] <= 1.0
    assert "0.0611" in printed and "0.0382" in printed  # the paper's figures beside ours
    again, printed = run_main("isbi2012", [*argv[:4], "--checkpoint", str(tmp_path / "run" / "best.pt")], tmp_path, capsys)
    assert again["train_seconds"] is None and "training: none" in printed
    assert {m: again[m] for m in metrics} == {m: result[m] for m in metrics}  # the same checkpoint, the same scores


@needs_sample("isbi2012")
def test_precision_accuracy_benchmark(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["--data", str(SAMPLE_DATA), "--datasets", "isbi2012", "--epochs", "1", "--image-size", "32",
            "--base-width", "2", "--workers", "0"]
    result, printed = run_main("precision_accuracy", argv, tmp_path, capsys)
    (row,) = result["rows"]
    assert 0.0 <= row["dice_auto"] <= 1.0 and 0.0 <= row["dice_32"] <= 1.0 and -1.0 <= row["difference"] <= 1.0
    (line,) = [line for line in printed.splitlines() if line.startswith("isbi2012")]
    after_choice = line.split(row["auto_chose"], 1)[1].split()  # the choice and its reason hold spaces
    assert after_choice[:4] == [f"{row[key]:.4f}" for key in ("dice_auto", "dice_32", "difference")] + [
        str(row["within_target"])]


@needs_sample("carvana")
def test_pipeline_benchmark(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["--data", str(SAMPLE_DATA / "carvana"), "--patch-size", "64", "--batch-size", "2", "--base-width", "2",
            "--steps", "1", "--workers", "0", "1"]
    result, printed = run_main("pipeline", argv, tmp_path, capsys)
    assert [row["workers"] for row in result["rows"]] == [0, 1]
    for row in result["rows"]:
        assert row["pipeline_img_s"] > 0 and row["model_img_s"] > 0 and row["data_wait_s"] >= 0 and row["ratio"] > 0
        shown = [f"{row[key]:.4f}" for key in ("pipeline_img_s", "model_img_s", "ratio", "data_wait_s")]
        assert printed_row(printed, str(row["workers"])) == shown  # the table shows the figures the JSON keeps


@pytest.mark.slow
def test_postprocess_benchmark(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["--train-images", "10", "--held-out-images", "4", "--size", "64", "--epochs", "1"]
    result, printed = run_main("postprocess", argv, tmp_path, capsys)
    assert [row["post-processing"] for row in result["rows"]] == ["chosen on validation", "none (defaults)"]
    assert all(0.0 <= row[key] <= 1.0 for row in result["rows"] for key in ("dice", "iou", "dsb_score", "seg"))
    assert result["held_out_images"] == 4 and f"chosen: {result['tuning']['chosen']}" in printed


def printed_row(printed: str, first_cell: str) -> list[str]:
    """The cells after the first of the table row that starts with ``first_cell``."""
    (line,) = [line.split() for line in printed.splitlines() if line.split()[:1] == [first_cell]]
    return line[1:]


@pytest.mark.slow
@needs_sample("isbi2012")
def test_budget_benchmark(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["--datasets", "isbi2012", "--time", "25s", "--out", str(tmp_path / "runs")]
    result, printed = run_main("budget", argv, tmp_path, capsys)
    assert [row["arm"] for row in result["rows"]] == ["planned", "defaults"]
    for row in result["rows"]:
        assert 0.0 <= row["dice"] <= 1.0 and row["test_images"] == 5 and row["steps"] > 0
    assert sum(line.startswith("isbi2012") for line in printed.splitlines()) == 2  # a table row per arm
    assert (tmp_path / "runs" / "isbi2012-planned" / "plan.yaml").exists()
