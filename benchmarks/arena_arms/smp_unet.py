"""segmentation_models_pytorch: Unet('resnet34', encoder_weights=None), Dice + BCE (smp's losses),
Adam 1e-4, batches of 8 random 256 px crops (smp's examples train on crops); whole images padded
to a multiple of 32 (the encoder's stride) at prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from arena_arms.common import Arm, fit, load_samples, main, random_crop, save_weights, trained, write_mask

CROP, BATCH, STRIDE = 256, 8, 32


def check() -> None:
    import torch

    try:
        import torchvision  # noqa: F401  (timm's, which smp imports; a build for another torch breaks here)
    except (ImportError, RuntimeError) as error:
        raise ImportError(f"not installable here: smp needs timm, which needs a torchvision built for torch "
                          f"{torch.__version__}: {type(error).__name__}: {error}") from None  # fmt: skip
    import segmentation_models_pytorch  # noqa: F401


def build() -> torch.nn.Module:
    import segmentation_models_pytorch as smp

    return smp.Unet("resnet34", encoder_weights=None, in_channels=3, classes=1)


def train(train_dir: Path, work: Path, deadline: float) -> dict:
    from segmentation_models_pytorch.losses import DiceLoss

    samples = load_samples(train_dir)
    rng = np.random.default_rng(0)
    model = build()
    dice, bce = DiceLoss(mode="binary"), torch.nn.BCEWithLogitsLoss()

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        crops = [random_crop(samples[i], CROP, rng) for i in rng.integers(0, len(samples), BATCH)]
        return tuple(torch.from_numpy(np.stack(part)) for part in zip(*crops))

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    steps = fit(model, optimizer, lambda logits, masks: dice(logits, masks) + bce(logits, masks), batch, deadline)
    save_weights(model, work)
    return {"steps": steps, "epochs": steps * BATCH / len(samples), "batch": BATCH, "crop": CROP}


@torch.no_grad()
def predict(test_dir: Path, work: Path, out: Path) -> None:
    model = trained(build(), work)
    for sample in load_samples(test_dir, masks=False):
        height, width = sample.image.shape[1:]
        image = F.pad(torch.from_numpy(sample.image)[None], (0, -width % STRIDE, 0, -height % STRIDE))
        write_mask(out, sample.name, (model(image)[0, 0, :height, :width] > 0).numpy())


if __name__ == "__main__":
    raise SystemExit(main(Arm(check, train, predict)))
