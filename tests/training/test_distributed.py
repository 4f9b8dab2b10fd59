"""DDP on 2 CPU processes with gloo, through torchrun and the real CLI (tests/training/ddp_worker.py):
identical weights on both ranks, validation numbers equal to a single-process evaluation of the
saved checkpoint, one set of run files, the sampler inside the training split, resume on another
number of processes, and sharded prediction writing every mask exactly once."""

from __future__ import annotations

import json
import math
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from unetkit.checkpoint import load_checkpoint
from unetkit.cli import main
from unetkit.data.layouts import discover
from unetkit.inference.evaluate import evaluate_records, summarize
from unetkit.inference.predictor import Predictor
from unetkit.losses import build_loss
from training_helpers import TINY, read_metrics, run, torchrun_command

pytestmark = pytest.mark.distributed

WORKER = Path(__file__).with_name("ddp_worker.py")
PROCESSES = 2
EPOCHS = 2
IMAGES = 10
TRAIN_IMAGES = 7  # --val-fraction 0.3: 3 validation images, an uneven share between the ranks


@dataclass
class DistributedRun:
    run: Path  # the training run folder
    record: Path  # what each rank did (see ddp_worker.py)
    predictions: Path


@pytest.fixture(scope="module")
def ddp(tiny_data, tmp_path_factory) -> DistributedRun:
    base = tmp_path_factory.mktemp("ddp")
    result = DistributedRun(base / "run", base / "record", base / "predictions")
    result.record.mkdir()
    train = ["train", "--data", str(tiny_data), "--out", str(result.run), "--epochs", str(EPOCHS), "--workers", "0",
             "--val-fraction", "0.3", *TINY]
    predict = ["predict", "--checkpoint", str(result.run / "last.pt"), str(tiny_data / "images"),
               "--out", str(result.predictions), "--device", "cpu", "--format", "png", "rle"]
    for argv in (train, predict):
        finished = run(torchrun_command(PROCESSES, str(WORKER), str(result.record), *argv), timeout=240)
        assert finished.returncode == 0, finished.stderr[-4000:]
    return result


def test_both_ranks_end_with_the_checkpointed_weights(ddp):
    saved = load_checkpoint(ddp.run / "last.pt")["model"]
    for rank in range(PROCESSES):
        state = torch.load(ddp.record / f"rank{rank}_model.pt")
        assert state.keys() == saved.keys()
        for key, value in state.items():  # batch-norm statistics included
            assert torch.equal(value, saved[key]), f"rank {rank}: {key}"


def test_logged_validation_equals_a_single_process_evaluation(ddp, tiny_data):
    payload = load_checkpoint(ddp.run / "last.pt")
    config = payload["config"]
    val_names = json.loads((ddp.run / "split.json").read_text())["val"]
    records = [r for r in discover(tiny_data).records if r.image.relative_to(tiny_data).as_posix() in val_names]
    assert len(records) == IMAGES - TRAIN_IMAGES
    predictor = Predictor.from_checkpoint(ddp.run / "last.pt", device="cpu", precision=config.train.precision)
    loss_fn = build_loss(config.train.loss, config.model.classes, config.data.labels.ignore_index)
    report = summarize(evaluate_records(predictor, records, config, loss_fn=loss_fn))
    logged = read_metrics(ddp.run)[-1]
    assert int(logged["epoch"]) == EPOCHS and int(logged["step"]) == payload["step"] and payload["finished"]
    for column, key in (("val_dice", "dice"), ("val_iou", "iou"), ("val_accuracy", "pixel_accuracy"), ("val_loss", "loss")):
        # The loss is summed over ranks in float32: its last digits depend on the order.
        assert float(logged[column]) == pytest.approx(report[key], abs=1e-5 if column == "val_loss" else 1e-6), column


def test_only_one_set_of_run_files(ddp):
    assert sorted(p.name for p in ddp.run.iterdir()) == sorted(
        ["best.pt", "config.yaml", "curves.png", "last.pt", "metrics.csv", "samples", "split.json"]
    )
    steps = [int(row["step"]) for row in read_metrics(ddp.run)]
    assert sorted(p.name for p in (ddp.run / "samples").iterdir()) == [f"step_{step:06d}.png" for step in steps]
    assert [int(row["epoch"]) for row in read_metrics(ddp.run)] == [1, 2]


def test_the_sampler_shares_out_the_training_split_only(ddp):
    train_stems = {Path(name).stem for name in json.loads((ddp.run / "split.json").read_text())["train"]}
    assert len(train_stems) == TRAIN_IMAGES
    per_rank = math.ceil(TRAIN_IMAGES / PROCESSES)  # the sampler pads with repeats to an even share
    loaded = [(ddp.record / f"rank{rank}_items.txt").read_text().split() for rank in range(PROCESSES)]
    for epoch in range(EPOCHS):
        shares = [items[epoch * per_rank : (epoch + 1) * per_rank] for items in loaded]
        assert all(len(share) == per_rank for share in shares)
        assert set().union(*shares) == train_stems, f"epoch {epoch + 1}"


def test_sharded_prediction_writes_every_mask_exactly_once(ddp, tiny_data):
    written = Counter(line for rank in range(PROCESSES) for line in (ddp.record / f"rank{rank}_masks.txt").read_text().split())
    expected = {f"{p.stem}_mask.png" for p in (tiny_data / "images").iterdir()}
    assert set(written) == expected and set(written.values()) == {1}
    assert {p.name for p in ddp.predictions.iterdir()} == expected | {"rle.csv"}
    rows = (ddp.predictions / "rle.csv").read_text().splitlines()
    assert rows[0] == "img,rle_mask" and len(rows) == IMAGES + 1 == len(set(rows))


def test_sharded_prediction_reports_failures_on_their_rank_and_rank_0_sums_them(ddp, tiny_data, tmp_path):
    inputs, out, record = tmp_path / "inputs", tmp_path / "out", tmp_path / "record"
    inputs.mkdir(), record.mkdir()
    for name, source in zip("abcde", sorted((tiny_data / "images").iterdir())):
        shutil.copy(source, inputs / f"{name}.png")
    for name in ("b.png", "c.png"):  # shards: a, c, e on rank 0; b, d on rank 1: one failure each
        (inputs / name).write_bytes(b"broken")
    predict = ["predict", "--checkpoint", str(ddp.run / "last.pt"), str(inputs), "--out", str(out), "--device", "cpu"]
    finished = run(torchrun_command(PROCESSES, str(WORKER), str(record), *predict), timeout=240)
    assert finished.returncode != 0  # every rank exits 1
    errors = re.findall(r"unetkit: error: .*\(skipped\)", finished.stderr)  # a progress bar may lead the line
    assert len(errors) == 2 and all(any(name in line for line in errors) for name in ("b.png", "c.png")), errors
    assert finished.stderr.count("predicted 3 of 5; 2 failed: b.png, c.png") == 1, finished.stderr[-3000:]
    assert sorted(path.name for path in out.iterdir()) == ["a_mask.png", "d_mask.png", "e_mask.png"]


def test_resume_on_one_process_continues_the_schedule(ddp, tiny_data, tmp_path):
    resumed = tmp_path / "resumed"
    shutil.copytree(ddp.run, resumed)
    epochs = 4
    assert main(["train", "--data", str(tiny_data), "--out", str(resumed), "--epochs", str(epochs), "--resume",
                 "--workers", "0", *TINY]) == 0
    rows = read_metrics(resumed)
    assert [int(row["epoch"]) for row in rows] == list(range(1, epochs + 1))
    # Cosine decay by the share of the run done, whatever the number of processes (so of steps per
    # epoch) before: a row's lr is that of its last step, 3 epochs of 3 steps less one.
    steps_per_epoch = TRAIN_IMAGES // 2  # one process, batch 2
    done = (3 * steps_per_epoch - 1) / (epochs * steps_per_epoch)
    base_lr = load_checkpoint(resumed / "last.pt")["config"].train.lr
    assert float(rows[2]["lr"]) == pytest.approx(base_lr * 0.5 * (1 + math.cos(math.pi * done)), rel=1e-6)


@pytest.mark.slow
def test_non_finite_steps_on_one_rank_stop_every_rank(tiny_data, tmp_path):
    """Rank 1 alone sees NaN images; the streak is all-reduced, so both ranks stop with the message
    (instead of rank 0 waiting in a collective until torchrun kills it)."""
    (tmp_path / "record").mkdir()
    argv = ["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--epochs", "1", "--workers", "0",
            "--val-fraction", "0.3", "--max-bad-steps", "2", "--log-every", "1", *TINY]
    finished = run(torchrun_command(PROCESSES, str(WORKER), str(tmp_path / "record"), *argv), timeout=240,
                   env={"NAN_RANK": "1"})
    assert finished.returncode != 0
    assert finished.stderr.count("unetkit: error: 2 consecutive training steps had a non-finite loss") == PROCESSES


@pytest.mark.slow
def test_every_rank_trains_rank_0s_plan(tiny_data, tmp_path):
    """Rank 1's probe measures 8x slower, so its own plan would train fewer steps (or a narrower
    network) than rank 0's and the ranks would fall out of step; both train rank 0's plan."""
    (tmp_path / "record").mkdir()
    argv = ["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--time", "40s", "--workers", "0",
            "--device", "cpu"]
    finished = run(torchrun_command(PROCESSES, str(WORKER), str(tmp_path / "record"), *argv), timeout=240,
                   env={"SLOW_PLAN_RANK": "1"})
    assert finished.returncode == 0, finished.stderr[-4000:]
    planned = yaml.safe_load((tmp_path / "run" / "plan.yaml").read_text())["config"]
    trained = load_checkpoint(tmp_path / "run" / "last.pt")["config"]
    assert trained.model.base_width == planned["model"]["base_width"]
    assert trained.train.steps == planned["train"]["steps"] and trained.train.batch_size == planned["train"]["batch_size"]
    models = [torch.load(tmp_path / "record" / f"rank{rank}_model.pt") for rank in range(PROCESSES)]
    for name, tensor in models[0].items():
        torch.testing.assert_close(models[1][name], tensor, rtol=0, atol=0)
