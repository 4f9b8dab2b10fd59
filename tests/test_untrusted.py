"""Hostile input through the command line: decompression bombs are refused naming the limit and the
flag that raises it, and output names derived from odd input names stay inside --out. (A pickle
checkpoint that runs code: tests/test_checkpoint.py.)"""

from __future__ import annotations

import csv
import shutil
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from unetkit.checkpoint import save_checkpoint
from unetkit.cli import main
from unetkit.config import Config, PredictConfig, UNetConfig
from unetkit.config import DEFAULT_MAX_PIXELS
from unetkit.data.reading import read_image
from unetkit.data.synthetic import generate_dataset
from unetkit.errors import DataError
from unetkit.model.unet import UNet

BOMB_SIDE = 20_000  # 400 million pixels claimed by a header of a few bytes
TINY_TRAIN = ["--base-width", "4", "--depth", "2", "--batch-size", "2", "--image-size", "32", "--epochs", "1",
              "--samples", "0", "--device", "cpu"]


def png_bomb(path: Path, side: int = BOMB_SIDE) -> Path:
    """A PNG whose header claims side x side grey pixels; the little data behind it is never decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(side + 1)))
                     + chunk(b"IEND", b""))
    return path


def tiff_bomb(path: Path, side: int = BOMB_SIDE, width: int | None = None) -> Path:
    """A valid 8x8 TIFF (one strip per row) whose size tags are then rewritten to claim
    ``width or side`` x ``side`` pixels."""
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8), rowsperstrip=1, compression="zlib")
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(width or side)
        tif.pages[0].tags["ImageLength"].overwrite(side)
    return path


BOMBS = {".png": png_bomb, ".tif": tiff_bomb}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("data") / "blobs", n_images=6, size=32, seed=3)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    config = Config(model=UNetConfig(in_channels=1, classes=1, depth=2, base_width=4), predict=PredictConfig(tile_size=32))
    path = tmp_path_factory.mktemp("model") / "model.pt"
    torch.manual_seed(0)
    save_checkpoint(path, config, UNet(config.model).state_dict())
    return path


def last_error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("unetkit: error: ")]
    assert lines, "no error message"
    return lines[-1]


def assert_refused_bomb(message: str, path: Path, limit: int) -> None:
    assert message.startswith("unetkit: error: ") and path.name in message, message
    assert f"limit of {limit}" in message and "--max-pixels" in message, message


# ------------------------------------------------------------------------------ decompression bombs


@pytest.mark.parametrize("suffix", sorted(BOMBS))
def test_predict_refuses_a_bomb_naming_limit_and_flag(tmp_path, checkpoint, capsys, suffix):
    bomb = BOMBS[suffix](tmp_path / f"bomb{suffix}")
    assert main(["predict", "--checkpoint", str(checkpoint), str(bomb), "--out", str(tmp_path / "out")]) == 1  # skipped
    assert_refused_bomb(last_error_line(capsys), bomb, DEFAULT_MAX_PIXELS)
    assert not any((tmp_path / "out").glob("*"))


def test_a_tiff_claiming_more_strips_than_it_holds_is_refused_at_once(tmp_path):
    """Under the pixel limit (16 million rows of 1 pixel), but the decoder would walk 16 million
    missing strips, for half a minute (found by benchmarks/fuzz.py)."""
    damaged = tiff_bomb(tmp_path / "damaged.tif", side=16_000_000, width=1)
    started = time.perf_counter()
    with pytest.raises(DataError, match="damaged.tif.*strips or tiles"):
        read_image(damaged)
    assert time.perf_counter() - started < 5


def test_predict_max_pixels_flag_sets_the_limit(tmp_path, checkpoint, data_dir, capsys):
    image = sorted((data_dir / "images").iterdir())[0]  # 32 x 32 = 1024 pixels
    argv = ["predict", "--checkpoint", str(checkpoint), str(image), "--out", str(tmp_path / "out")]
    assert main([*argv, "--max-pixels", "1000", "--fail-fast"]) == 2
    assert_refused_bomb(last_error_line(capsys), image, 1000)
    assert main([*argv, "--max-pixels", "1024"]) == 0
    assert (tmp_path / "out" / f"{image.stem}_mask.png").exists()


@pytest.mark.parametrize(("folder", "workers"), [("images", 0), ("masks", 0), ("images", 2)])
def test_train_refuses_a_bomb_in_the_data(tmp_path, data_dir, capsys, folder, workers):
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    victim = sorted((data / folder).iterdir())[-1]
    png_bomb(victim)
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--val-fraction", "0",
            "--workers", str(workers), *TINY_TRAIN]
    assert main(argv) == 2
    assert_refused_bomb(last_error_line(capsys), victim, DEFAULT_MAX_PIXELS)


# ----------------------------------------------------------------------------- output file names

ODD_NAMES = ["a b?.png", "..x.png", "-rf.png", "ünïcödé.png", "back\\slash.png", "semi;colon $(x).png",
             "tab\there.png", "quote'\".png", "new\nline.png", "%2e%2e%2fup.png", "C:evil.png"]


def test_odd_input_names_write_only_inside_out(tmp_path, checkpoint, capsys):
    inputs, out = tmp_path / "inputs", tmp_path / "work" / "out"
    inputs.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8)
    images = [inputs / name for name in ODD_NAMES]
    for path in images:
        Image.fromarray(pixels).save(path, format="PNG")
    before = set(tmp_path.rglob("*"))  # files and folders
    argv = ["predict", "--checkpoint", str(checkpoint), *map(str, images), "--out", str(out),
            "--format", "png", "prob", "rle", "--overlay", "--instances"]
    assert main(argv) == 0, capsys.readouterr().err
    written = {path for path in set(tmp_path.rglob("*")) - before if path.is_file()}
    assert all(path.resolve().is_relative_to(out.resolve()) for path in written), sorted(map(str, written))
    masks = [path for path in written if path.name.endswith("_mask.png")]
    assert len(masks) == len(ODD_NAMES), "every input gets its own mask"
    assert all(path.name.isascii() and not path.name.startswith(".") for path in written)
    with open(out / "rle.csv", newline="") as handle:
        assert sorted(row[0] for row in list(csv.reader(handle))[1:]) == sorted(ODD_NAMES)


def test_inputs_whose_outputs_would_collide_are_refused(tmp_path, checkpoint, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in ("cell 1.png", "cell_1.png", "cell_1.tif"):
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(inputs / name)
    assert main(["predict", "--checkpoint", str(checkpoint), str(inputs), "--out", str(tmp_path / "out")]) == 2
    message = last_error_line(capsys)
    assert "cell 1.png" in message and "cell_1.png" in message and "cell_1_mask.png" in message, message
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


# --------------------------------------------------------------------------------- damaged checkpoints


def damaged_checkpoints(good: Path) -> dict[str, dict]:
    """Checkpoint payloads as a flipped byte in the pickled keys or values can leave them."""
    payload = torch.load(good, weights_only=True)
    impossible = {**payload["config"], "model": {**payload["config"]["model"], "depth": 200}}
    return {
        "no config": {key: value for key, value in payload.items() if key != "config"},
        "weights not a mapping": {**payload, "model": [1, 2]},
        "impossible model": {**payload, "config": impossible},
    }


@pytest.mark.parametrize("damage", ["no config", "weights not a mapping", "impossible model"])
def test_damaged_checkpoints_are_refused_naming_the_file(tmp_path, checkpoint, data_dir, capsys, damage):
    damaged = tmp_path / "damaged.pt"
    torch.save(damaged_checkpoints(checkpoint)[damage], damaged)
    image = sorted((data_dir / "images").iterdir())[0]
    assert main(["predict", "--checkpoint", str(damaged), str(image), "--out", str(tmp_path / "out")]) == 2
    message = last_error_line(capsys)
    assert message.startswith("unetkit: error: ") and str(damaged) in message, message
