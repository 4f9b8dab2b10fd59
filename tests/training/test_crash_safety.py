"""Killed runs lose nothing: SIGKILL at random moments, then --resume, until the run is done; every
checkpoint that exists right after a kill loads, metrics.csv never repeats an epoch, and the
finished run equals one that was never interrupted. Ctrl-C and SIGTERM save last.pt and exit with
128 + the signal."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from unetkit.checkpoint import load_checkpoint
from unetkit.cli import main
from unetkit.training import trainer
from training_helpers import TINY, read_metrics, start, unetkit_command

EPOCHS = 3
TRAINING_SECONDS = 3.0  # about how long the tiny run trains once started; kills land within it


def train_args(data: Path, out: Path, epochs: int = EPOCHS, workers: int = 0) -> list[str]:
    """`unetkit train` arguments; --resume once the run has a last.pt."""
    resume = ["--resume"] if (out / "last.pt").exists() else []
    return ["train", "--data", str(data), "--out", str(out), "--epochs", str(epochs), "--workers", str(workers),
            "--deterministic", *TINY, *resume]


def wait_for_training(process: subprocess.Popen, out: Path, timeout: float = 60) -> bool:
    """Wait until the run has (re)written config.yaml, which fit() does right before training;
    False if the process ended first."""
    config = out / "config.yaml"
    before = config.stat().st_ino if config.exists() else None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if config.exists() and config.stat().st_ino != before:
            return True
        time.sleep(0.02)
    return False


def assert_run_folder_consistent(out: Path) -> None:
    """What a crash may leave: every checkpoint loads, metrics has epochs 1..n once each."""
    for name in ("best.pt", "last.pt"):
        if (out / name).exists():
            load_checkpoint(out / name)
    if (out / "metrics.csv").exists():
        epochs = [int(row["epoch"]) for row in read_metrics(out)]
        assert epochs == list(range(1, len(epochs) + 1)), epochs


def kill_at_random_moments(data: Path, out: Path, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(kills):
        process = start(unetkit_command(*train_args(data, out)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if wait_for_training(process, out):
            time.sleep(rng.uniform(0.0, TRAINING_SECONDS))
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        assert_run_folder_consistent(out)


@pytest.fixture(scope="module")
def uninterrupted(tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert main(train_args(tiny_data, out)) == 0
    return out


def check_killed_and_resumed(data: Path, out: Path, kills: int, seed: int, uninterrupted: Path) -> None:
    kill_at_random_moments(data, out, kills, seed)
    assert main(train_args(data, out)) == 0
    assert [int(row["epoch"]) for row in read_metrics(out)] == list(range(1, EPOCHS + 1))
    assert load_checkpoint(out / "last.pt")["epoch"] == EPOCHS
    assert not list(out.rglob("*.tmp")), "temporary files of killed writes are cleaned up on resume"
    assert (out / "metrics.csv").read_bytes() == (uninterrupted / "metrics.csv").read_bytes()


def test_sigkill_then_resume_completes_the_run(tiny_data, tmp_path, uninterrupted):
    check_killed_and_resumed(tiny_data, tmp_path / "run", kills=3, seed=0, uninterrupted=uninterrupted)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2, 8))
def test_sigkill_then_resume_many_times(tiny_data, tmp_path, uninterrupted, seed):
    check_killed_and_resumed(tiny_data, tmp_path / "run", kills=6, seed=seed, uninterrupted=uninterrupted)


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
    deadline = time.monotonic() + 60
    while not (out / "metrics.csv").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == exit_code, stderr[-2000:]
    assert f"{word}: saved" in stderr and "--resume" in stderr
    assert stderr.rstrip().endswith(f"unetkit: {word}")
    epoch = load_checkpoint(out / "last.pt")["epoch"]
    assert epoch >= 1 and [int(row["epoch"]) for row in read_metrics(out)] == list(range(1, epoch + 1))
    assert main(train_args(tiny_data, out, epochs=epoch + 1)) == 0
    assert len(read_metrics(out)) == epoch + 1


@pytest.mark.parametrize("moment", ["_log_epoch", "plot_curves", "save"])
def test_ctrl_c_at_the_end_of_an_epoch_keeps_checkpoints_and_metrics_in_step(tiny_data, tmp_path, monkeypatch, moment):
    """Ctrl-C before the metrics row, after it, or while best.pt is written: last.pt's epoch and
    the rows agree, and the resumed run ends with a best.pt."""
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
    epoch = load_checkpoint(out / "last.pt")["epoch"]
    rows = read_metrics(out) if (out / "metrics.csv").exists() else []
    assert [int(row["epoch"]) for row in rows] == list(range(1, epoch + 1))
    assert main(train_args(tiny_data, out, epochs=2)) == 0
    assert [int(row["epoch"]) for row in read_metrics(out)] == [1, 2] and (out / "best.pt").exists()
