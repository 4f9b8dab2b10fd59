"""Every preset and padding mode trains through the planned path (the real probe, tiny data and a
narrow network so that it takes seconds), and the planned model predicts; a patch size the
planned `valid` network cannot take is a one-line error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from unetkit.cli import main
from unetkit.planning.policy import PRESETS
from unetkit.data.synthetic import generate_dataset
from unetkit.model.sizes import valid_output_size

# A few steps of a narrow network; everything else as the preset or the plan chooses it.
QUICK = ["--steps", "2", "--base-width", "2", "--workers", "0", "--val-every", "2"]
SETTINGS = {
    **{f"preset {name}": ["--preset", name] for name in PRESETS},
    "padding same": ["--padding", "same"],
    "padding valid": ["--padding", "valid"],
}


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("blobs"), n_images=6, size=64, seed=0)


@pytest.mark.parametrize("setting", SETTINGS.values(), ids=SETTINGS.keys())
def test_the_plan_trains_and_predicts_every_preset_and_padding(setting: list[str], blobs: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "--data", str(blobs), "--out", str(run), *setting, *QUICK]) == 0
    planned = yaml.safe_load((run / "plan.yaml").read_text())["config"]
    model, patch = planned["model"], planned["data"]["patch_size"]
    if model["padding"] == "valid":  # the planned patch and tiles are sizes the valid network takes
        assert valid_output_size(patch, model["depth"]) > 0 and planned["predict"]["tile_size"] == patch
    image = next((blobs / "images").iterdir())
    assert main(["predict", "--checkpoint", str(run / "best.pt"), str(image), "--out", str(tmp_path / "out")]) == 0
    mask = np.asarray(Image.open(next((tmp_path / "out").iterdir())))
    assert mask.shape == np.asarray(Image.open(image)).shape[:2]


def test_a_patch_the_valid_network_cannot_take_is_a_one_line_error(blobs: Path, tmp_path: Path, capsys) -> None:
    argv = ["train", "--data", str(blobs), "--out", str(tmp_path / "run"), "--padding", "valid", "--patch-size", "62", *QUICK]
    assert main(argv) == 2
    printed = capsys.readouterr().err
    error = [line for line in printed.splitlines() if line.startswith("unetkit: error")]
    assert len(error) == 1 and "Traceback" not in printed
    assert "--patch-size 62" in error[0] and "use 60 or 64" in error[0]
