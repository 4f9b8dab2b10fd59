"""What the peer arms share: their command line, reading the arena's plain folders, the
wall-clock training loop and writing masks as the parent scores them.

    python -m arena_arms.<arm> train --train DIR --work DIR --seconds S
    python -m arena_arms.<arm> predict --test DIR --work DIR --out DIR

``train`` stops at S seconds after the process started (imports and data loading count) and
writes WORK/summary.json (steps, epochs); ``predict`` writes OUT/NAME_mask.png (foreground 255).
Either exits with NOT_INSTALLED, the reason on stderr, where the arm's packages do not import.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

WEIGHTS = "model.pt"  # what an arm's train leaves for its predict

STARTED = time.monotonic()  # the budget counts from the process's start, imports included
NOT_INSTALLED = 3


@dataclass
class Sample:
    name: str
    image: np.ndarray  # (3, H, W) float32 in 0..1
    mask: np.ndarray | None  # (1, H, W) float32 0/1


@dataclass
class Arm:
    """One tool: ``check`` imports its packages (raising where it cannot); ``train(train_dir, work,
    deadline)`` returns the summary (steps, epochs...); ``predict(test_dir, work, out)`` writes the masks."""

    check: Callable[[], None]
    train: Callable[[Path, Path, float], dict]
    predict: Callable[[Path, Path, Path], None]


def main(arm: Arm, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train")
    train.add_argument("--train", type=Path, required=True)
    train.add_argument("--work", type=Path, required=True)
    train.add_argument("--seconds", type=float, required=True)
    predict = commands.add_parser("predict")
    predict.add_argument("--test", type=Path, required=True)
    predict.add_argument("--work", type=Path, required=True)
    predict.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        arm.check()
    except Exception as error:  # a broken install raises more than ImportError (torchvision: RuntimeError)
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return NOT_INSTALLED
    if args.command == "train":
        args.work.mkdir(parents=True, exist_ok=True)
        summary = arm.train(args.train, args.work, STARTED + args.seconds)
        (args.work / "summary.json").write_text(json.dumps(summary))
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        arm.predict(args.test, args.work, args.out)
    return 0


def load_samples(folder: Path, masks: bool = True) -> list[Sample]:
    """The images of a plain folder as RGB in 0..1 (what these tools' users feed), with their masks."""
    samples = []
    for path in sorted((folder / "images").glob("*.png")):
        image = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255
        mask = (np.asarray(Image.open(folder / "masks" / path.name)) > 0)[None].astype(np.float32) if masks else None
        samples.append(Sample(path.stem, image, mask))
    return samples


def train_until(deadline: float, step: Callable[[], None]) -> int:
    """Call ``step`` until ``deadline`` (time.monotonic()), at least once; returns the steps taken."""
    steps = 0
    while steps == 0 or time.monotonic() < deadline:
        step()
        steps += 1
    return steps


def random_crop(sample: Sample, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A ``size`` x ``size`` crop of image and mask, zero-padded where the image is smaller."""
    pad = [(0, 0), (0, max(0, size - sample.image.shape[1])), (0, max(0, size - sample.image.shape[2]))]
    image, mask = np.pad(sample.image, pad), np.pad(sample.mask, pad)
    top = rng.integers(0, image.shape[1] - size + 1)
    left = rng.integers(0, image.shape[2] - size + 1)
    return image[:, top : top + size, left : left + size], mask[:, top : top + size, left : left + size]


def write_mask(out: Path, name: str, foreground: np.ndarray) -> None:
    Image.fromarray(np.where(foreground, 255, 0).astype(np.uint8)).save(out / f"{name}_mask.png")


def fit(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: Callable, batch: Callable,
        deadline: float, clip_norm: float | None = None) -> int:
    """Optimizer steps on ``loss(model(x), y)`` for ``(x, y) = batch()`` until ``deadline``, the
    gradients clipped to ``clip_norm`` where given; the model is then in eval mode. Returns the steps taken."""
    model.train()

    def step() -> None:
        images, masks = batch()
        optimizer.zero_grad()
        loss(model(images), masks).backward()
        if clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()

    steps = train_until(deadline, step)
    model.eval()
    return steps


def save_weights(model: torch.nn.Module, work: Path) -> None:
    """The trained weights, for the arm's predict command (a process of its own)."""
    torch.save(model.state_dict(), work / WEIGHTS)


def trained(model: torch.nn.Module, work: Path) -> torch.nn.Module:
    """``model`` (freshly built) with the weights ``save_weights`` left in ``work``, for inference."""
    model.load_state_dict(torch.load(work / WEIGHTS, weights_only=True))
    return model.eval()
