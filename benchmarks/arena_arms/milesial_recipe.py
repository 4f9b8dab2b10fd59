"""The seeds' recipe: a milesial-style U-Net (benchmarks/reference_unets.py) trained as
milesial/Pytorch-UNet's README and train.py do: images scaled by 0.5, batch 1 of whole images,
RMSprop(lr 1e-5, weight_decay 1e-8, momentum 0.999), BCE + Dice, gradients clipped to norm 1
(its defaults; no mixed precision, off by default there); prediction at scale 0.5, the
probabilities resized back to the image and thresholded at 0.5 (its predict.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from arena_arms.common import Arm, fit, load_samples, main, save_weights, trained, write_mask
from reference_unets import MilesialStyleUNet, milesial_optimizer

SCALE, CLIP_NORM = 0.5, 1.0


def check() -> None:
    pass  # plain PyTorch


def scaled(image: np.ndarray, mode: str) -> torch.Tensor:
    return F.interpolate(torch.from_numpy(image)[None], scale_factor=SCALE, mode=mode)


def dice_loss(probabilities: torch.Tensor, masks: torch.Tensor, epsilon: float = 1e-6) -> torch.Tensor:
    """1 - the Dice coefficient of the batch (milesial's utils/dice_score.py, binary case)."""
    intersection = 2 * (probabilities * masks).sum(dim=(-1, -2))
    union = probabilities.sum(dim=(-1, -2)) + masks.sum(dim=(-1, -2))
    return 1 - ((intersection + epsilon) / (union + epsilon)).mean()


def train(train_dir: Path, work: Path, deadline: float) -> dict:
    pairs = [(scaled(s.image, "bicubic"), scaled(s.mask, "nearest")) for s in load_samples(train_dir)]
    rng = np.random.default_rng(0)
    model = MilesialStyleUNet(in_channels=3, classes=1)
    bce = torch.nn.BCEWithLogitsLoss()

    def loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return bce(logits, masks) + dice_loss(torch.sigmoid(logits), masks)

    steps = fit(model, milesial_optimizer(model), loss, lambda: pairs[rng.integers(len(pairs))], deadline, CLIP_NORM)
    save_weights(model, work)
    return {"steps": steps, "epochs": steps / len(pairs), "batch": 1, "scale": SCALE}


@torch.no_grad()
def predict(test_dir: Path, work: Path, out: Path) -> None:
    model = trained(MilesialStyleUNet(in_channels=3, classes=1), work)
    for sample in load_samples(test_dir, masks=False):
        logits = F.interpolate(model(scaled(sample.image, "bicubic")), size=sample.image.shape[1:], mode="bilinear")
        write_mask(out, sample.name, (torch.sigmoid(logits)[0, 0] > 0.5).numpy())


if __name__ == "__main__":
    raise SystemExit(main(Arm(check, train, predict)))
