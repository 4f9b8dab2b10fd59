"""Stopped runs lose nothing and resume exactly.

SIGKILL lands while the run is provably unfinished (the process is frozen with SIGSTOP first and
its last.pt checked), and every checkpoint a kill leaves loads; Ctrl-C and SIGTERM in the middle of
an epoch (at a chosen optimizer step) save last.pt there, and the resumed run ends with the metrics
and weights of a run that was never stopped. A stop signal exits with 128 + the signal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from unetkit.checkpoint import load_checkpoint
from unetkit.cli import main
from unetkit.training import trainer
from training_helpers import TINY, read_metrics, start, unetkit_command

EPOCHS = 4
STEPS_PER_EPOCH = 4  # 8 training images of tiny_data, batch 2


def train_args(data: Path, out: Path, epochs: int = EPOCHS, workers: int = 0) -> list[str]:
    """`unetkit train` arguments; --resume once the run has a last.pt."""
    resume = ["--resume"] if (out / "last.pt").exists() else []
    return ["train", "--data", str(data), "--out", str(out), "--epochs", str(epochs), "--workers", str(workers),
            "--deterministic", *TINY, *resume]


def assert_run_folder_consistent(out: Path) -> None:
    """What a crash may leave: every checkpoint loads, metrics.csv has each step once, in order."""
    for name in ("best.pt", "last.pt"):
        if (out / name).exists():
            load_checkpoint(out / name)
    if (out / "metrics.csv").exists():
        steps = [int(row["step"]) for row in read_metrics(out)]
        assert steps == sorted(set(steps)), steps


def wait_for(condition, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "the run ended before the moment the test waits for"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def checkpointed_rows(out: Path) -> int:
    """Rows of metrics.csv that last.pt already holds (a row is written just before last.pt)."""
    if not (out / "last.pt").exists() or not (out / "metrics.csv").exists():
        return 0
    step = load_checkpoint(out / "last.pt")["step"]
    return sum(int(row["step"]) <= step for row in read_metrics(out))


def kill_mid_training(data: Path, out: Path, rows_before_kill: int) -> int:
    """Start (or resume) the run, freeze it once metrics.csv has ``rows_before_kill`` rows, check it
    is unfinished, SIGKILL it; returns the step of the last.pt it left."""
    process = start(unetkit_command(*train_args(data, out)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: checkpointed_rows(out) >= rows_before_kill, process)
    os.killpg(process.pid, signal.SIGSTOP)
    try:
        state = load_checkpoint(out / "last.pt")
        assert not state["finished"] and state["step"] < EPOCHS * STEPS_PER_EPOCH, "the kill must land mid-training"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert_run_folder_consistent(out)
    return state["step"]


@pytest.fixture(scope="module")
def uninterrupted(tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert main(train_args(tiny_data, out)) == 0
    return out


def assert_same_run(out: Path, reference: Path) -> None:
    """The resumed run's metrics and final weights equal the uninterrupted run's, bit for bit."""
    assert (out / "metrics.csv").read_bytes() == (reference / "metrics.csv").read_bytes()
    ours, theirs = load_checkpoint(out / "last.pt"), load_checkpoint(reference / "last.pt")
    assert ours["step"] == theirs["step"] == EPOCHS * STEPS_PER_EPOCH and ours["finished"]
    for key, value in theirs["model"].items():
        assert torch.equal(ours["model"][key], value), key


def test_sigkill_mid_training_then_resume_equals_an_uninterrupted_run(tiny_data, tmp_path, uninterrupted):
    out = tmp_path / "run"
    killed_at = [kill_mid_training(tiny_data, out, rows) for rows in (1, 2)]
    assert 0 < killed_at[0] <= killed_at[1] < EPOCHS * STEPS_PER_EPOCH
    assert main(train_args(tiny_data, out)) == 0
    assert not list(out.rglob("*.tmp")), "temporary files of killed writes are cleaned up on resume"
    assert_same_run(out, uninterrupted)


def stop_at_step(monkeypatch, step: int, stop) -> None:
    """``stop()`` inside optimizer step ``step`` (1-based) of this process, after its update."""
    original, calls = trainer.train_step, []

    def counting_step(*args, **kwargs):
        loss = original(*args, **kwargs)
        calls.append(1)
        if len(calls) == step:
            stop()
        return loss

    monkeypatch.setattr(trainer, "train_step", counting_step)


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["ctrl-c", "sigterm"])
@pytest.mark.parametrize("step", [STEPS_PER_EPOCH + 1, 2 * STEPS_PER_EPOCH + 3])
def test_a_signal_mid_epoch_saves_that_step_and_resumes_exactly(tiny_data, tmp_path, monkeypatch, uninterrupted,
                                                                signum, exit_code, step):
    """The signal arrives inside optimizer step ``step``: the step completes, last.pt holds it."""
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        stop_at_step(patch, step, lambda: os.kill(os.getpid(), signum))
        assert main(train_args(tiny_data, out)) == exit_code
    saved = load_checkpoint(out / "last.pt")
    assert saved["step"] == step and step % STEPS_PER_EPOCH, "last.pt holds the step where the run stopped"
    assert [int(row["step"]) for row in read_metrics(out)] == list(range(STEPS_PER_EPOCH, step, STEPS_PER_EPOCH))
    assert main(train_args(tiny_data, out)) == 0
    assert_same_run(out, uninterrupted)


@pytest.mark.parametrize(
    ("signum", "exit_code", "word"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
    ids=["ctrl-c", "sigterm"],
)
def test_a_stop_signal_saves_last_pt_and_exits_128_plus_the_signal(tiny_data, tmp_path, signum, exit_code, word):
    out = tmp_path / "run"
    # Ctrl-C in a terminal and a cluster's pre-emption signal the whole process group: loader workers included.
    process = start(unetkit_command(*train_args(tiny_data, out, epochs=1000, workers=2)),
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: (out / "metrics.csv").exists(), process)
    os.killpg(process.pid, signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == exit_code, stderr[-2000:]
    assert f"{word}: saved" in stderr and "--resume" in stderr
    assert stderr.rstrip().endswith(f"unetkit: {word}")
    saved = load_checkpoint(out / "last.pt")
    assert not saved["finished"] and saved["step"] >= STEPS_PER_EPOCH


@pytest.mark.parametrize("moment", ["_log_row", "plot_curves", "save_checkpoints"])
def test_ctrl_c_at_a_validation_keeps_checkpoints_and_metrics_in_step(tiny_data, tmp_path, monkeypatch, moment):
    """Ctrl-C before the metrics row, after it, or while best.pt is written: the rows never run past
    last.pt, and the resumed run ends with every row once and a best.pt."""
    original, calls = getattr(trainer, moment), []

    def interrupt_first_call(*args, **kwargs):
        calls.append(moment)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(trainer, moment, interrupt_first_call)
        assert main(train_args(tiny_data, out, epochs=2)) == 130
    step = load_checkpoint(out / "last.pt")["step"]
    rows = read_metrics(out) if (out / "metrics.csv").exists() else []
    assert all(int(row["step"]) <= step for row in rows)
    assert main(train_args(tiny_data, out, epochs=2)) == 0
    assert [int(row["step"]) for row in read_metrics(out)] == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    assert (out / "best.pt").exists()
