"""MONAI's 2D segmentation tutorial pipeline (unet_training_dict.py): UNet(channels 16-256,
strides 2, 2 residual units), RandCropByPosNegLabeld 96 px x 4 samples per image, batches of 2
images, Adam 1e-3, here DiceCELoss(sigmoid=True); sliding_window_inference (96 px, 4 windows per
batch) at prediction, foreground where the sigmoid exceeds 0.5."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from arena_arms.common import Arm, fit, load_samples, main, save_weights, trained, write_mask

ROI, SAMPLES, BATCH = 96, 4, 2


def check() -> None:
    import monai  # noqa: F401


def build() -> torch.nn.Module:
    from monai.networks.nets import UNet

    return UNet(spatial_dims=2, in_channels=3, out_channels=1, channels=(16, 32, 64, 128, 256),
                strides=(2, 2, 2, 2), num_res_units=2)  # fmt: skip


def train(train_dir: Path, work: Path, deadline: float) -> dict:
    from monai.losses import DiceCELoss
    from monai.transforms import RandCropByPosNegLabeld, SpatialPadd

    samples = load_samples(train_dir)
    pad = SpatialPadd(keys=["image", "label"], spatial_size=(ROI, ROI))  # images smaller than the crop
    crop = RandCropByPosNegLabeld(keys=["image", "label"], label_key="label", spatial_size=(ROI, ROI), pos=1, neg=1,
                                  num_samples=SAMPLES)  # fmt: skip
    crop.set_random_state(0)
    rng = np.random.default_rng(0)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        patches = []
        for index in rng.integers(0, len(samples), BATCH):
            patches += crop(pad({"image": samples[index].image, "label": samples[index].mask}))
        return tuple(torch.stack([torch.as_tensor(p[key]) for p in patches]) for key in ("image", "label"))

    model = build()
    steps = fit(model, torch.optim.Adam(model.parameters(), 1e-3), DiceCELoss(sigmoid=True), batch, deadline)
    save_weights(model, work)
    return {"steps": steps, "epochs": steps * BATCH / len(samples), "batch": f"{BATCH} images x {SAMPLES} crops"}


@torch.no_grad()
def predict(test_dir: Path, work: Path, out: Path) -> None:
    from monai.inferers import sliding_window_inference

    model = trained(build(), work)
    for sample in load_samples(test_dir, masks=False):
        logits = sliding_window_inference(torch.from_numpy(sample.image)[None], (ROI, ROI), 4, model)
        write_mask(out, sample.name, (torch.sigmoid(torch.as_tensor(logits))[0, 0] > 0.5).numpy())


if __name__ == "__main__":
    raise SystemExit(main(Arm(check, train, predict)))
