"""Running one arm of the arena: its commands, each a child process timed and measured from here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from unetkit.checkpoint import load_checkpoint

BENCHMARKS = Path(__file__).resolve().parent
PEER_MODULES = {"nnunet": "arena_arms.nnunet_v2", "monai": "arena_arms.monai_tutorial",
                "smp": "arena_arms.smp_unet", "seeds": "arena_arms.milesial_recipe"}  # fmt: skip
ARMS = ["unetkit", *PEER_MODULES]
POLL_SECONDS = 0.05  # how late the end of a child may be seen
NOT_INSTALLED = 3  # arena_arms.common's exit code where the arm's packages do not import
PACKAGES = {"unetkit": ["unetkit", "torch"], "nnunet": ["nnunetv2", "torch"], "monai": ["monai", "torch"],
            "smp": ["segmentation-models-pytorch", "timm", "torch"], "seeds": ["torch"]}  # fmt: skip


@dataclass
class Child:
    """What a finished child process cost, measured from outside it."""

    seconds: float
    peak_rss_mb: float  # the largest process of its tree (wait4's rusage)
    returncode: int
    log: Path


def run_child(command: list[str], log: Path, limit_seconds: float) -> Child:
    """``command`` with its output in ``log``, killed past ``limit_seconds``."""
    paths = [str(BENCHMARKS), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}  # the arms import arena_arms (and unetkit's src)
    with log.open("w") as output:
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
        # wait4 rather than Popen.wait: it reaps the child with its resource usage
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        while not pid:
            if time.perf_counter() - started > limit_seconds:
                child.kill()
            time.sleep(POLL_SECONDS)
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    scale = 2**20 if sys.platform == "darwin" else 2**10  # ru_maxrss: bytes on macOS, KiB on Linux
    return Child(seconds, usage.ru_maxrss / scale, child.returncode, log)


def arm_commands(arm: str, python: str, train: Path, test: Path, run: Path, seconds: float, instances: bool) -> dict:
    """The train and predict commands of ``arm`` (unetkit: its CLI, exactly as a user types it)."""
    predictions = run / "predictions"
    if arm == "unetkit":
        unetkit = [python, "-m", "unetkit"]
        return {"train": [*unetkit, "train", "--data", str(train), "--out", str(run), "--time", f"{seconds:g}s"],
                "predict": [*unetkit, "predict", "--checkpoint", str(run / "best.pt"), str(test / "images"),
                            "--out", str(predictions), *(["--instances"] if instances else [])]}  # fmt: skip
    module = [python, "-m", PEER_MODULES[arm]]
    return {"train": [*module, "train", "--train", str(train), "--work", str(run), "--seconds", str(seconds)],
            "predict": [*module, "predict", "--test", str(test), "--work", str(run),
                        "--out", str(predictions)]}  # fmt: skip


def training_summary(arm: str, run: Path) -> dict:
    """Steps and epochs the arm trained: unetkit's from its last checkpoint, a peer's from its summary."""
    if arm == "unetkit":
        last = load_checkpoint(run / "last.pt")
        return {"steps": last["step"], "epochs": last["step"] / last["steps_per_epoch"]}
    summary = run / "summary.json"
    return json.loads(summary.read_text()) if summary.exists() else {}


def versions(python: str, packages: list[str]) -> dict[str, str | None]:
    """The installed versions of ``packages`` as ``python`` sees them (None: not installed)."""
    script = ("import importlib.metadata as m, json, sys\n"
              "def version(name):\n    try:\n        return m.version(name)\n    except m.PackageNotFoundError:\n"
              "        return None\nprint(json.dumps({name: version(name) for name in sys.argv[1:]}))")  # fmt: skip
    found = subprocess.run([python, "-c", script, *packages], capture_output=True, text=True)
    return json.loads(found.stdout) if found.returncode == 0 else dict.fromkeys(packages)


def last_line(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""
