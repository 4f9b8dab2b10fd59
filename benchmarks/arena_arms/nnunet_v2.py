"""nnU-Net v2 as its documentation runs it on 2D natural images: the plain folder converted to
nnUNet_raw/Dataset500_Arena (imagesTr/NAME_0000.png, grey or RGB in one file, labelsTr/NAME.png
0/1, dataset.json with file_ending .png), ``nnUNetv2_plan_and_preprocess -c 2d`` (as many
processes as cores), fold 0 of ``2d`` trained by nnUNetTrainerDeadline (nnunet_deadline.py: the
default trainer stopped at the deadline; planning and preprocessing count toward it) and
``nnUNetv2_predict`` with checkpoint_final.pth (test-time mirroring on, nnU-Net's default).
nnUNet_raw, nnUNet_preprocessed and nnUNet_results lie in WORK; without CUDA, ``-device cpu``.

The trainer runs in this process (what ``nnUNetv2_train`` does after finding the trainer class):
nnU-Net finds a trainer by name by importing every trainer module, and its Primus trainers
import timm, which needs torchvision, which has no build for a CPU-only torch on every machine.
For the same reason the checkpoint names the default trainer, whose network and inference it
shares: ``nnUNetv2_predict`` finds that one before any module that imports timm."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from arena_arms.common import Arm, main, write_mask
from PIL import Image

if TYPE_CHECKING:
    from arena_arms.nnunet_deadline import nnUNetTrainerDeadline

DATASET_ID, DATASET = "500", "Dataset500_Arena"
TRAINER = "nnUNetTrainerDeadline"


def check() -> None:
    import nnunetv2  # noqa: F401


def environment(work: Path) -> dict[str, str]:
    return {name: str(work / name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run(command: list[str], env: dict[str, str]) -> None:
    """One of nnU-Net's commands, from the bin folder of this interpreter (its virtual environment)."""
    executable = Path(sys.executable).parent / command[0]
    subprocess.run([str(executable), *command[1:]], env=env, check=True)


def convert(images: Path, out: Path, masks: Path | None = None) -> int:
    """nnU-Net's raw names: NAME_0000.png for the (one-file) image, NAME.png 0/1 for the label.
    Returns the number of channels."""
    out.mkdir(parents=True)
    channels = 1
    for image in sorted(images.glob("*.png")):
        shutil.copy(image, out / f"{image.stem}_0000.png")
        channels = len(Image.open(image).getbands())
        if masks is not None:
            labels = out.parent / "labelsTr"
            labels.mkdir(exist_ok=True)
            label = (np.asarray(Image.open(masks / image.name)) > 0).astype(np.uint8)
            Image.fromarray(label).save(labels / image.name)
    return channels


def train(train_dir: Path, work: Path, deadline: float) -> dict:
    raw = work / "nnUNet_raw" / DATASET
    channels = convert(train_dir / "images", raw / "imagesTr", train_dir / "masks")
    names = {"0": "grey"} if channels == 1 else dict(zip("012", "RGB"))
    dataset = {"channel_names": names, "labels": {"background": 0, "foreground": 1},
               "numTraining": len(list((raw / "labelsTr").iterdir())), "file_ending": ".png"}  # fmt: skip
    (raw / "dataset.json").write_text(json.dumps(dataset, indent=2))
    os.environ.update(environment(work))  # before nnunetv2 is imported: it reads its folders then
    processes = str(os.cpu_count() or 1)
    run(["nnUNetv2_plan_and_preprocess", "-d", DATASET_ID, "-c", "2d", "--verify_dataset_integrity",
         "-np", processes, "-npfp", processes], os.environ)  # fmt: skip
    trainer = deadline_trainer(work)
    trainer.deadline = deadline
    trainer.run_training()
    final = Path(trainer.output_folder) / "checkpoint_final.pth"
    name_default_trainer(final)
    return {"steps": trainer.steps, "epochs": trainer.current_epoch, "batch": trainer.batch_size}


def deadline_trainer(work: Path) -> nnUNetTrainerDeadline:
    """The trainer of fold 0 of ``2d``, as ``nnUNetv2_train``'s get_trainer_from_args builds it."""
    import torch
    from arena_arms.nnunet_deadline import nnUNetTrainerDeadline

    preprocessed = work / "nnUNet_preprocessed" / DATASET
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text()) | {"continue_training": False}
    dataset = json.loads((preprocessed / "dataset.json").read_text())
    return nnUNetTrainerDeadline(plans=plans, configuration="2d", fold=0, dataset_json=dataset,
                                 device=torch.device(device()))  # fmt: skip


def name_default_trainer(checkpoint: Path) -> None:
    import torch

    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    torch.save(saved | {"trainer_name": "nnUNetTrainer"}, checkpoint)


def predict(test_dir: Path, work: Path, out: Path) -> None:
    images, labels = work / "imagesTs", work / "predicted"
    convert(test_dir / "images", images)
    run(["nnUNetv2_predict", "-i", str(images), "-o", str(labels), "-d", DATASET_ID, "-c", "2d", "-f", "0",
         "-tr", TRAINER, "-chk", "checkpoint_final.pth", "-device", device()],
        {**os.environ, **environment(work)})  # fmt: skip
    for label in sorted(labels.glob("*.png")):
        write_mask(out, label.stem, np.asarray(Image.open(label)) > 0)


if __name__ == "__main__":
    raise SystemExit(main(Arm(check, train, predict)))
