"""--deterministic: CPU runs with the same seed write byte-identical metrics.csv (and weights),
whatever the number of loader workers; another seed trains differently."""

from __future__ import annotations

from pathlib import Path

import torch

from unetkit.checkpoint import load_checkpoint
from unetkit.cli import main
from training_helpers import TINY, read_metrics


def deterministic_run(data: Path, out: Path, workers: int, seed: int = 0) -> Path:
    argv = ["train", "--data", str(data), "--out", str(out), "--epochs", "2", "--workers", str(workers),
            "--seed", str(seed), "--deterministic", *TINY]
    assert main(argv) == 0
    return out


def test_same_seed_same_metrics_with_0_or_2_workers(tiny_data, tmp_path):
    first, again, with_workers = (
        deterministic_run(tiny_data, tmp_path / name, workers) for name, workers in (("a", 0), ("b", 0), ("c", 2))
    )
    metrics = (first / "metrics.csv").read_bytes()
    assert (again / "metrics.csv").read_bytes() == metrics
    assert (with_workers / "metrics.csv").read_bytes() == metrics
    assert all(row["seconds"] == "" for row in read_metrics(first)), "wall time would differ between runs"
    weights = load_checkpoint(first / "last.pt")["model"]
    for run in (again, with_workers):
        other = load_checkpoint(run / "last.pt")["model"]
        assert all(torch.equal(weights[key], other[key]) for key in weights)


def test_another_seed_trains_differently(tiny_data, tmp_path):
    losses = [
        [row["train_loss"] for row in read_metrics(deterministic_run(tiny_data, tmp_path / str(seed), 0, seed))]
        for seed in (0, 1)
    ]
    assert losses[0] != losses[1]
