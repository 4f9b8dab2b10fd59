"""Fixtures of the report tests: a tiny checkpoint and dataset, and a run folder made of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from serve.web_helpers import tiny_checkpoint, tiny_dataset  # tests/ is on sys.path (rootdir conftest)

from unetkit.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_dataset(tmp_path_factory.mktemp("report") / "data", count=5)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("report") / "tiny.pt")


@pytest.fixture
def run(tmp_path: Path, dataset: Path, checkpoint: Path) -> Path:
    """A run folder as `unetkit train` leaves it: config, best.pt, metrics.csv, split.json."""
    run = tmp_path / "run"
    run.mkdir()
    payload = load_checkpoint(checkpoint)
    config = payload["config"]
    config.data.path = str(dataset)
    save_checkpoint(run / "best.pt", config, payload["model"])
    (run / "config.yaml").write_text(config.to_yaml())
    names = sorted(path.name for path in (dataset / "images").iterdir())
    (run / "split.json").write_text(json.dumps({"train": [f"images/{n}" for n in names[:3]], "val": [f"images/{n}" for n in names[3:]]}))
    rows = ["epoch,train_loss,val_loss,val_dice,val_iou,val_accuracy,lr,seconds"]
    rows += [f"{epoch},{1 / epoch},{1.2 / epoch},{0.5 + epoch / 10},{0.4 + epoch / 10},0.9,0.001,1.0" for epoch in (1, 2, 3)]
    (run / "metrics.csv").write_text("\n".join(rows) + "\n")
    return run
