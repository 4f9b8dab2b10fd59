"""Helpers of the training robustness tests: tiny-model arguments, `unetkit` run as a separate
process (for torchrun, SIGKILL and Ctrl-C), run-folder readers."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]

# A model and data small enough for a whole run to take a second or two on one CPU core; the
# configuration as given (no plan), so runs compare with each other flag for flag.
TINY = ["--base-width", "4", "--depth", "2", "--batch-size", "2", "--image-size", "32", "--samples", "1",
        "--device", "cpu", "--no-plan"]


def subprocess_env(**extra: str) -> dict[str, str]:
    """The test's environment for a child `unetkit`: this checkout's sources, one thread per process."""
    source = str(REPO / "src")
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{source}{os.pathsep}{path}" if path else source, "OMP_NUM_THREADS": "1",
            **extra}


def unetkit_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "unetkit", *args]


def torchrun_command(processes: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *args]


def start(command: list[str], env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    """A child in its own session, so that it and all its children can be signalled together;
    ``env`` adds variables to the environment."""
    return subprocess.Popen(command, env=subprocess_env(**(env or {})), start_new_session=True, text=True, **kwargs)


def run(command: list[str], timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run to completion; on timeout the child's whole process group (torchrun's workers too) is killed."""
    process = start(command, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))
