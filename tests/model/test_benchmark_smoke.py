"""benchmarks/throughput.py and benchmarks/layout.py run end to end on a tiny network and write their JSON rows.

Which rows throughput.py writes depends on the CPU: where bfloat16 is emulated (no AVX-512, or
``ONEDNN_MAX_CPU_ISA=AVX2``) it leaves the explicit bfloat16 row out. The end-to-end tests ask the
script's own decision (``bf16_row`` in its JSON); both branches are forced in-process with a fake
probe result, so every CPU checks both."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from unetkit.device import precision as precisions

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "throughput.py"
ROW_KEYS = {"model", "train_img_s", "infer_img_s", "peak_mem_mb", "gflops_per_img", "peak_fraction"}
MEASURED = "measured"  # throughput.py's ``bf16_row`` where it measures the explicit bfloat16 row


def throughput_module() -> ModuleType:
    """benchmarks/throughput.py as a module (the benchmarks import each other by bare name)."""
    if str(REPO / "benchmarks") not in sys.path:
        sys.path.insert(0, str(REPO / "benchmarks"))
    return importlib.import_module("throughput")


def unetkit_rows(bf16_row: str, *compiled: str) -> list[str]:
    """The unetkit rows that lead the table: the bfloat16 one exactly where the script says it measured it."""
    return ["unetkit", "unetkit float32", *(["unetkit bfloat16"] if bf16_row == MEASURED else []), *compiled]


def check_bf16_decision(rows: list[dict], stdout: str) -> str:
    """The script's decision on this CPU, the same in every row, printed, and the one its rule takes
    from the probe's measurement; returns it."""
    decision = rows[0]["bf16_row"]
    assert {row["bf16_row"] for row in rows} == {decision}
    emulated = throughput_module().bf16_emulated(precisions.choice_for_speedup(rows[0]["probe_bf16_speedup"]))
    if emulated:
        assert decision.startswith("left out"), decision
    else:
        assert decision == MEASURED, decision
    assert f"unetkit bfloat16 row {decision}" in stdout
    return decision


def run_throughput(tmp_path: Path, *extra: str) -> tuple[list[dict], subprocess.CompletedProcess]:
    """The script on a tiny network: its JSON rows (checked for the issue's keys) and the process."""
    out = tmp_path / "throughput.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    args = ["--size", "32", "--batch", "1", "--rounds", "1", "--base-width", "4", "--matmul-size", "128", *extra]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--json", str(out)], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())
    for row in rows:
        assert ROW_KEYS <= row.keys()
        assert row["train_img_s"] > 0 and row["infer_img_s"] > 0 and row["gflops_per_img"] > 0
        # Four decimals: a 32 px network's share of a busy or slow machine's matmul peak can round to 0.
        assert 0 <= row["peak_fraction"] and row["matmul_peak_gflops"] > 0
    return rows, result


def test_throughput_benchmark_writes_rows(tmp_path: Path) -> None:
    rows, result = run_throughput(tmp_path)
    models = [row["model"] for row in rows]
    expected = unetkit_rows(check_bf16_decision(rows, result.stdout))  # this CPU's branch; both: below
    assert models[: len(expected)] == expected and models[len(expected)] == "milesial-style"
    assert {"milesial-style", "milesial-style, unetkit's dtype+layout"} <= set(models)
    assert rows[0]["params"] == rows[models.index("milesial-style")]["params"]  # the same network, built two ways
    assert "precision auto = " in result.stdout  # what auto chose, and why


@pytest.mark.parametrize(
    ("bf16_speedup", "measured"),
    [(1.6, True), (0.5, True), (0.05, False)],  # AMX; AVX-512 without bfloat16 (slower, not emulated); AVX2
    ids=["amx", "avx512", "avx2"],
)
def test_the_bfloat16_row_is_left_out_exactly_where_the_probe_finds_bfloat16_emulated(
    monkeypatch: pytest.MonkeyPatch, bf16_speedup: float, measured: bool
) -> None:
    """Each CPU class's branch on any CPU: ``auto`` as a probe measuring ``bf16_speedup`` decides it."""
    throughput = throughput_module()
    auto = precisions.choice_for_speedup(bf16_speedup)
    resolve = throughput.resolve_precision

    def fake_resolve(device, requested, *args, **kwargs):  # noqa: ANN001, ANN202 - resolve_precision's own
        return auto if requested == "auto" else resolve(device, requested, *args, **kwargs)

    monkeypatch.setattr(throughput, "resolve_precision", fake_resolve)
    args = throughput.parse_args(["--base-width", "2"])
    names = [contender.name for contender in throughput.build_contenders(args, torch.device("cpu"), auto)]
    assert throughput.bf16_emulated(auto) is not measured
    assert names[: 3 if measured else 2] == unetkit_rows(MEASURED if measured else "left out")
    assert ("unetkit bfloat16" in names) is measured and names.count("unetkit") == 1


@pytest.mark.slow
def test_throughput_benchmark_measures_compiled_training(tmp_path: Path) -> None:
    rows, result = run_throughput(tmp_path, "--compile")
    models = [row["model"] for row in rows]
    expected = unetkit_rows(check_bf16_decision(rows, result.stdout), "unetkit+compile")
    assert models[: len(expected)] == expected
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
