"""The schedule and the wall-clock budget: the learning rate as a function of the step; the budget's
measured total, stop and validation spacing on a fake clock; budgeted, planned and cross-validated
runs end to end."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from unetkit.checkpoint import load_checkpoint
from unetkit.cli import main
from unetkit.config import TrainConfig
from unetkit.training import schedule
from unetkit.training.schedule import Budget, learning_rate_factor
from training_helpers import TINY, read_metrics
from test_crash_safety import stop_at_step


def test_the_learning_rate_warms_up_then_decays_to_zero():
    train = TrainConfig(warmup=0.1)
    factors = [learning_rate_factor(step, 100, train) for step in range(100)]
    assert factors[:10] == pytest.approx([(step + 1) / 10 for step in range(10)])
    assert factors[10] == pytest.approx(1.0)
    assert factors[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert factors[-1] < 1e-3 and all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert learning_rate_factor(70, 100, TrainConfig(scheduler="none")) == 1.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(schedule.time, "perf_counter", fake)
    return fake


def test_the_total_follows_the_measured_speed_once_warm(clock):
    budget = Budget(seconds=1000)
    budget.start(step=0)
    for step in range(schedule.UNTIMED_STEPS):  # slow first steps are not measured
        assert budget.estimate_total(step) == 0
        clock.now += 10
    step = schedule.UNTIMED_STEPS
    while budget.estimate_total(step) == 0:  # measured over >= CALIBRATION_SHARE of the budget
        step += 1
        clock.now += 0.5  # 2 steps/s
    left = 1000 - budget.elapsed() - budget.reserve()
    assert budget.estimate_total(step) == step + int(2.0 * left * (1 - schedule.VALIDATION_SHARE))
    assert (step - schedule.UNTIMED_STEPS) * 0.5 >= schedule.CALIBRATION_SHARE * 1000


def test_validations_take_at_most_their_share_and_the_end_keeps_their_cost(clock):
    budget = Budget(seconds=1000)
    budget.start(step=0)
    clock.now += schedule.FIRST_VALIDATION_SHARE * 1000 - 1
    assert not budget.validation_due()
    clock.now += 1
    assert budget.validation_due()
    started = budget.elapsed()
    clock.now += 20  # a validation of 20 s
    budget.record_validation(started)
    tuning = schedule.TUNING_SHARE * 1000  # the post-processing search's share
    assert budget.reserve() == schedule.FINAL_RESERVE * 20 + tuning
    wait = 20 * (1 - schedule.VALIDATION_SHARE) / schedule.VALIDATION_SHARE
    clock.now += wait - 1
    assert not budget.validation_due()
    clock.now += 1.01
    assert budget.validation_due()
    clock.now = 1000 + 1000 - schedule.FINAL_RESERVE * 20 - tuning - 1
    assert not budget.out_of_time()
    clock.now += 1
    assert budget.out_of_time()


def test_a_resumed_budget_counts_the_time_already_spent(clock):
    budget = Budget(seconds=100, spent=60)
    assert budget.elapsed() == 60
    budget.start(step=40)
    clock.now += 5
    assert budget.elapsed() == 65 and budget.training_seconds() == 5


def test_a_budget_that_is_no_duration_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--time", "ten"])
    assert stopped.value.code == 2
    assert "argument --time: duration 'ten': write it like 600, 90s, 10m or 1h30m" in capsys.readouterr().err


def budget_args(data, out, seconds: float) -> list[str]:
    # --epochs 1000: a run that ignored its budget would not end within the test's time
    return ["train", "--data", str(data), "--out", str(out), "--time", f"{seconds}s", "--epochs", "1000",
            "--workers", "0", *TINY]


def test_a_budgeted_run_uses_its_time_and_stops_within_it(tiny_data, tmp_path):
    out = tmp_path / "run"
    assert main(budget_args(tiny_data, out, 6)) == 0
    last = load_checkpoint(out / "last.pt")
    assert last["finished"] and last["step"] == last["total_steps"] > 8
    assert 0.5 * 6 <= last["seconds"] <= 1.25 * 6, last["seconds"]
    assert int(read_metrics(out)[-1]["step"]) == last["step"] and (out / "best.pt").exists()


def test_an_interrupted_budgeted_run_resumes_with_the_time_it_has_left(tiny_data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        stop_at_step(patch, 12, lambda: os.kill(os.getpid(), signal.SIGINT))
        assert main(budget_args(tiny_data, out, 6)) == 130
    stopped = load_checkpoint(out / "last.pt")
    assert not stopped["finished"] and stopped["step"] == 12 and stopped["seconds"] > 0
    assert main([*budget_args(tiny_data, out, 6), "--resume"]) == 0
    last = load_checkpoint(out / "last.pt")
    assert last["finished"] and last["step"] > 12 and stopped["seconds"] < last["seconds"] <= 1.25 * 6


def test_the_default_path_plans_and_writes_the_plan(tiny_data, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--data", str(tiny_data), "--out", str(out), "--time", "8s", "--workers", "0",
                 "--device", "cpu"]) == 0
    plan = (out / "plan.yaml").read_text()
    config = load_checkpoint(out / "best.pt")["config"]
    assert "reason" in plan and "model.norm" in plan and config.model.norm == "instance"
    assert config.train.time <= 8 and load_checkpoint(out / "last.pt")["finished"]


def test_folds_train_each_fold_and_predict_averages_them(tiny_data, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--data", str(tiny_data), "--out", str(out), "--folds", "2", "--epochs", "1",
                 "--workers", "0", *TINY]) == 0
    splits = [json.loads((out / f"fold_{fold}" / "split.json").read_text()) for fold in range(2)]
    assert set(splits[0]["val"]).isdisjoint(splits[1]["val"])
    cv = json.loads((out / "cv.json").read_text())
    assert len(cv["folds"]) == 2 and cv["optimistic"] == "best"
    for point in ("end", "best"):
        assert cv[point]["mean"]["val_dice"] == pytest.approx(sum(f[point]["val_dice"] for f in cv["folds"]) / 2)
    masks = tmp_path / "masks"
    assert main(["predict", "--checkpoint", str(out), str(tiny_data / "images"), "--out", str(masks)]) == 0
    assert len(list(masks.glob("*_mask.png"))) == len(list((tiny_data / "images").iterdir()))


def _timed(command: list[str]) -> tuple[float, str]:
    """(wall seconds, the log) of a command run to its end."""
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return time.perf_counter() - started, finished.stderr


@pytest.mark.slow
@pytest.mark.parametrize("budget, extra", [(20, []), (30, ["--folds", "2"])], ids=["run", "folds"])
def test_the_budget_is_the_whole_commands_wall_clock(tiny_data, tmp_path, budget: int, extra: list[str]):
    """Planning, training, the last validation, tuning and the checkpoints all fit the budget, as a
    user timing the command sees it (Python's start-up, measured here too, aside)."""
    start_up, _ = _timed([sys.executable, "-c", "import torch, unetkit.cli, unetkit.training.trainer"])
    command = [sys.executable, "-m", "unetkit", "train", "--data", str(tiny_data), "--out", str(tmp_path / "run"),
               "--time", f"{budget}s", "--workers", "0", "--device", "cpu", *extra]  # fmt: skip
    wall, log = _timed(command)
    assert wall <= budget * 1.05 + start_up, f"{wall:.1f} s for a {budget} s budget (start-up {start_up:.1f} s)"
    assert wall >= 0.6 * budget  # the budget was used, not skipped
    assert "post-processing chosen on" in log  # tuning ran, inside the budget
