"""Fuzzing with hypothesis: corrupt and random image files, odd arrays, corrupt checkpoints and
random mask value sets. Every case must end in a result or in one of unetkit's own errors with a
message: never another exception, never a hang.

benchmarks/fuzz.py runs the same properties with many more examples (UNETKIT_FUZZ_EXAMPLES) and
prints the outcome counts that ``OUTCOMES`` collects.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import numpy as np
import pytest
import tifffile
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from fuzz_strategies import arrays, image_files
from unetkit.checkpoint import save_checkpoint
from unetkit.cli import main
from unetkit.config import Config, PredictConfig, UNetConfig
from unetkit.data.dataset import SegmentationDataset
from unetkit.data.reading import read_image, read_mask
from unetkit.data.writing import safe_stem
from unetkit.errors import CheckpointError, ConfigError, DataError, UnetkitError
from unetkit.inference.predictor import Predictor
from unetkit.losses import build_loss
from unetkit.model.unet import UNet
from unetkit.data.prepare import prepare_data

T = TypeVar("T")

pytestmark = pytest.mark.slow  # hundreds of generated cases per property: the slow suite

FUZZ = settings(
    max_examples=int(os.environ.get("UNETKIT_FUZZ_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
CASE_SECONDS = 30  # a case running longer counts as a hang
# A 45-byte GIF can honestly hold 5 million pixels, which take seconds to predict: a pixel limit
# below the default keeps every honest case short, so that only a hang runs out of time.
MAX_PIXELS = 1_000_000

# property -> outcome ("ok" or the unetkit error's type) -> count; benchmarks/fuzz.py prints it
OUTCOMES: defaultdict[str, Counter] = defaultdict(Counter)


class CaseTimeout(Exception):
    """A fuzz case ran past CASE_SECONDS."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(signum, frame):
        raise CaseTimeout(f"the case ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def settle(
    prop: str,
    action: Callable[[], T],
    label: Callable[[T], str] = lambda result: "ok",
    expected: type[UnetkitError] | tuple[type[UnetkitError], ...] = UnetkitError,
) -> T | None:
    """Run one case: its result, or None after an ``expected`` unetkit error with a message; counts
    the outcome (``label(result)``, or the error's type)."""
    with time_limit(CASE_SECONDS):
        try:
            result = action()
        except UnetkitError as error:
            assert isinstance(error, expected), f"{type(error).__name__} where {expected} was due: {error}"
            assert str(error).strip(), f"{type(error).__name__} without a message"
            OUTCOMES[prop][type(error).__name__] += 1
            return None
    OUTCOMES[prop][label(result)] += 1
    return result


# -------------------------------------------------------------------------------------- fixtures


def tiny_config(in_channels: int, classes: int) -> Config:
    model = UNetConfig(in_channels=in_channels, classes=classes, depth=2, base_width=4)
    return Config(model=model, predict=PredictConfig(tile_size=32, batch_size=2))


MODEL_KINDS = [(1, 1), (3, 3)]  # (in_channels, classes): binary grey and 3-class colour


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def checkpoints(workdir) -> dict[tuple[int, int], Path]:
    paths = {}
    for in_channels, classes in MODEL_KINDS:
        config = tiny_config(in_channels, classes)
        torch.manual_seed(0)
        paths[in_channels, classes] = workdir / f"model_{in_channels}_{classes}.pt"
        save_checkpoint(paths[in_channels, classes], config, UNet(config.model).state_dict())
    return paths


@pytest.fixture(scope="module")
def predictors(checkpoints) -> dict[tuple[int, int], Predictor]:
    return {kind: Predictor.from_checkpoint(path, device="cpu", precision="32") for kind, path in checkpoints.items()}


def fresh_folder(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


# -------------------------------------------------------------------------------------- properties


@FUZZ
@given(image_files())
def test_image_files_read_or_fail_with_a_data_error(workdir, case):
    suffix, data = case
    path = workdir / f"input{suffix}"
    path.write_bytes(data)
    image = settle("read_image", lambda: read_image(path, max_pixels=MAX_PIXELS), expected=DataError)
    if image is not None:
        assert image.ndim == 3 and image.shape[-1] in (1, 3, 4) and image.size > 0
        assert image.dtype in (np.uint8, np.uint16, np.float32)
    mask = settle("read_mask", lambda: read_mask(path, max_pixels=MAX_PIXELS), expected=DataError)
    if mask is not None:
        assert mask.ndim == 2 and mask.size > 0 and mask.dtype.kind in "iu"


@FUZZ
@given(image_files(), st.sampled_from(MODEL_KINDS))
def test_image_files_through_cli_predict(workdir, checkpoints, capsys, case, kind):
    suffix, data = case
    inputs, out = fresh_folder(workdir / "inputs"), fresh_folder(workdir / "predictions")
    path = inputs / f"odd image{suffix}"
    path.write_bytes(data)
    argv = ["predict", "--checkpoint", str(checkpoints[kind]), str(path), "--out", str(out),
            "--device", "cpu", "--format", "png", "prob", "--overlay", "--max-pixels", str(MAX_PIXELS)]
    code = settle("cli predict", lambda: main(argv), label=lambda code: f"exit {code}")
    error = capsys.readouterr().err
    assert code in (0, 1)  # 1: the image was reported and skipped
    if code == 1:
        assert "unetkit: error: " in error and "predicted 0 of 1; 1 failed" in error
    else:
        mask = np.asarray(Image.open(out / f"{safe_stem(path.stem)}_mask.png"))
        assert mask.shape == read_image(path).shape[:2]


@FUZZ
@given(arrays(), st.sampled_from(MODEL_KINDS))
def test_arrays_through_predict_image(predictors, array, kind):
    predictor = predictors[kind]
    probabilities = settle("predict_image", lambda: predictor.predict_image(array))
    if probabilities is not None:
        assert probabilities.shape == (kind[1], *array.shape[:2]) and probabilities.dtype == np.float32
        assert np.all((probabilities >= 0) & (probabilities <= 1)), "probabilities outside 0..1"
        labels = predictor.labels(probabilities)
        assert labels.shape == array.shape[:2] and labels.max(initial=0) < max(2, kind[1])


@FUZZ
@given(st.binary(min_size=1, max_size=64), st.integers(0, 2**31), st.sampled_from(["truncate", "overwrite"]))
def test_corrupt_checkpoints_predict_or_are_refused(workdir, checkpoints, noise, where, how):
    data = checkpoints[1, 1].read_bytes()
    start = where % len(data)
    damaged = data[:start] if how == "truncate" else data[:start] + noise + data[start + len(noise):]
    path = workdir / "damaged.pt"
    path.write_bytes(damaged)
    # Damaged tensor bytes can load; predicting with them then fails on the non-finite output.
    probabilities = settle(
        "corrupt checkpoint",
        lambda: Predictor.from_checkpoint(path, device="cpu", precision="32").predict_image(np.zeros((8, 8, 1), np.uint8)),
        expected=(CheckpointError, DataError),
    )
    if probabilities is not None:
        assert probabilities.shape == (1, 8, 8)


MASK_SUFFIXES = {".png": [np.uint8, np.uint16], ".tif": [np.uint8, np.uint16, np.int32, np.float32], ".jpg": [np.uint8]}


@st.composite
def mask_folders(draw: st.DrawFn) -> tuple[list[tuple[str, np.ndarray]], int | None]:
    """Masks (suffix, array) drawing their pixels from random value sets, and a --classes choice."""
    masks = []
    for _ in range(draw(st.integers(1, 3))):
        suffix = draw(st.sampled_from(sorted(MASK_SUFFIXES)))
        dtype = np.dtype(draw(st.sampled_from(MASK_SUFFIXES[suffix])))
        top = 2**24 if dtype.kind == "f" else np.iinfo(dtype).max
        values = draw(st.lists(st.integers(0, top), min_size=1, max_size=6, unique=True))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        masks.append((suffix, rng.choice(values, (12, 12)).astype(dtype)))
    return masks, draw(st.none() | st.integers(-1, 8))


def write_pair(folder: Path, index: int, suffix: str, mask: np.ndarray) -> None:
    Image.fromarray(np.full(mask.shape, 100, np.uint8)).save(folder / "images" / f"case_{index}.png")
    path = folder / "masks" / f"case_{index}{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(path, mask)
    else:
        Image.fromarray(mask).save(path)


THREE_CLASSES = ([(".png", np.arange(144, dtype=np.uint8).reshape(12, 12) % 3)], None)  # with the default loss


@FUZZ
@given(mask_folders())
@example(THREE_CLASSES)
def test_mask_value_sets_train_or_fail_with_a_data_error(workdir, case):
    masks, classes = case
    folder = fresh_folder(workdir / "masks_case")
    (folder / "images").mkdir()
    (folder / "masks").mkdir()
    for index, (suffix, mask) in enumerate(masks):
        write_pair(folder, index, suffix, mask)
    config = Config()
    config.data.path, config.data.val_fraction = str(folder), 0.0

    def one_training_step() -> float:
        prepared = prepare_data(config, classes, None)
        model = prepared.config.model
        dataset = SegmentationDataset(prepared.train, prepared.config.data, model.in_channels, train=True)
        loss_fn = build_loss(prepared.config.train.loss, model.classes, prepared.config.data.labels.ignore_index)
        for item in dataset:
            valid = (item["mask"] < max(2, model.classes)) | (item["mask"] == prepared.config.data.labels.ignore_index)
            assert bool(valid.all()), f"class ids {item['mask'].unique().tolist()} for {model.classes} classes"
            logits = torch.zeros(1, model.classes, *item["mask"].shape, requires_grad=True)
            loss = loss_fn(logits, item["mask"][None], None)
            assert torch.isfinite(loss), f"loss {loss} for class ids {item['mask'].unique().tolist()}"
        return float(loss.detach())

    # The masks decide classes and loss: a ConfigError is due only to an impossible --classes.
    settle("mask values", one_training_step, expected=DataError if classes is None or classes >= 1 else ConfigError)
