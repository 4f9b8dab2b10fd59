"""benchmarks/throughput.py and benchmarks/layout.py run end to end on a tiny network and write their JSON rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from unetkit.device.precision import has_bf16_instructions

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "throughput.py"
ROW_KEYS = {"model", "train_img_s", "infer_img_s", "peak_mem_mb", "gflops_per_img", "peak_fraction"}


def run_throughput(tmp_path: Path, *extra: str) -> tuple[list[dict], subprocess.CompletedProcess]:
    """The script on a tiny network: its JSON rows (checked for the issue's keys) and the process."""
    out = tmp_path / "throughput.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    args = ["--size", "32", "--batch", "1", "--rounds", "1", "--base-width", "4", "--matmul-size", "128", *extra]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--json", str(out)], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    written = json.loads(out.read_text())
    assert written["command"].startswith("python benchmarks/throughput.py --size 32") and written["date"]
    rows = written["rows"]
    for row in rows:
        assert ROW_KEYS <= row.keys()
        assert row["train_img_s"] > 0 and row["infer_img_s"] > 0 and row["gflops_per_img"] > 0
        assert row["peak_fraction"] >= 0  # rounded to 4 decimals: 0.0 on a busy machine
    return rows, result


def test_throughput_benchmark_writes_rows(tmp_path: Path) -> None:
    rows, result = run_throughput(tmp_path)
    models = [row["model"] for row in rows]
    bfloat16 = ["unetkit bfloat16"] if has_bf16_instructions() else []  # the script's own question
    assert models[: 2 + len(bfloat16)] == ["unetkit", "unetkit float32", *bfloat16]
    assert {"milesial-style", "milesial-style, channels-last"} <= set(models)  # each reference in both layouts
    assert rows[0]["params"] == rows[models.index("milesial-style")]["params"]  # the same network, built two ways
    assert "precision auto = " in result.stdout  # what auto chose, and why
    assert "memory layout auto: training " in result.stdout and rows[0]["layout_infer"]  # apart for inference
    milesial = [row for row in rows if row["reference_setting"] == "milesial-style"]
    assert [row["memory_format"] for row in milesial] == ["contiguous", "channels_last"]
    assert sum(row["faster_layout_train"] for row in milesial) == sum(row["faster_layout_infer"] for row in milesial) == 1
    assert "unetkit vs milesial-style at its faster layout: train " in result.stdout


@pytest.mark.slow
def test_throughput_benchmark_measures_compiled_training(tmp_path: Path) -> None:
    rows, result = run_throughput(tmp_path, "--compile")
    models = [row["model"] for row in rows]
    bfloat16 = ["unetkit bfloat16"] if has_bf16_instructions() else []
    assert models[: 3 + len(bfloat16)] == ["unetkit", "unetkit float32", *bfloat16, "unetkit+compile"]
    assert rows[0]["params"] == rows[models.index("unetkit+compile")]["params"]
    assert "running eagerly" not in result.stderr  # the compiler works here: the row measures compiled code


def test_layout_benchmark_measures_each_norm_kernel_in_both_layouts(tmp_path: Path) -> None:
    out = tmp_path / "layout.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    args = ["--widths", "2", "--patch", "32", "--batch", "1", "--rounds", "1", "--json", str(out)]
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "layout.py"), *args], env=env, capture_output=True,
                            text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["rows"]
    assert {(row["norm"], row["layout"]) for row in rows} == {
        (norm, layout) for norm in ("instance (InstanceNorm2d)", "instance (GroupNorm C/C)", "batch")
        for layout in ("channels-last", "contiguous")
    }  # fmt: skip
    assert all(row["steps_per_s"] > 0 and row["cpu_class"] == "native" for row in rows)
    (chosen,) = [row for row in rows if row["plan_choice"]]
    assert chosen["norm"] == "instance (GroupNorm C/C)" and "<-" in result.stdout


def test_step_profile_benchmark_shares_add_up_and_convolutions_lead(tmp_path: Path) -> None:
    out = tmp_path / "profile.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    args = ["--base-width", "8", "--size", "64", "--batch", "2", "--steps", "1", "--json", str(out)]
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "step_profile.py"), *args], env=env,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    shares = json.loads(out.read_text())["shares"]
    assert abs(sum(shares.values()) - 1) < 1e-3 and set(shares) >= {"convolution", "normalisation", "other"}
    assert max(shares, key=shares.get) == "convolution"
