"""Reference U-Nets the throughput benchmark measures unetkit against.

``MilesialStyleUNet`` follows the design of milesial/Pytorch-UNet (the most used PyTorch U-Net),
written here from its description: DoubleConv = (conv 3x3 without bias -> BatchNorm -> ReLU) x 2,
Down = max-pool + DoubleConv, Up = 2x2 transposed convolution halving the channels, F.pad of the
up-sampled map to the skip's size, concatenation [skip, up], DoubleConv; OutConv = 1x1 conv.

``monai_basic_unet`` builds MONAI's BasicUNet when MONAI is installed (``pip install monai``).
``REFERENCES`` pairs each model with the optimizer its project trains it with.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DoubleConv(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))


class Up(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
        self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = self.up(x)
        # Odd-sized inputs leave the up-sampled map a pixel short: pad it to the skip's size.
        dy = skip.shape[2] - x.shape[2]
        dx = skip.shape[3] - x.shape[3]
        x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([skip, x], dim=1))


class MilesialStyleUNet(nn.Module):
    """The classic 4-level U-Net with widths ``base_width * (1, 2, 4, 8, 16)``."""

    def __init__(self, in_channels: int = 3, classes: int = 1, base_width: int = 64) -> None:
        super().__init__()
        w = [base_width * 2**i for i in range(5)]
        self.inc = DoubleConv(in_channels, w[0])
        self.down1, self.down2, self.down3, self.down4 = (Down(w[i], w[i + 1]) for i in range(4))
        self.up1, self.up2, self.up3, self.up4 = (Up(w[i + 1], w[i]) for i in reversed(range(4)))
        self.outc = nn.Conv2d(w[0], classes, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.outc(x)


def monai_basic_unet(in_channels: int = 3, classes: int = 1, base_width: int = 64) -> nn.Module | None:
    """MONAI's BasicUNet with features (64, 128, 256, 512, 1024, 64) scaled to ``base_width``;
    None when MONAI is not installed."""
    try:
        from monai.networks.nets import BasicUNet
    except ImportError:
        return None
    features = tuple(base_width * f // 64 for f in (64, 128, 256, 512, 1024, 64))
    return BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=classes, features=features)


def milesial_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """milesial/Pytorch-UNet's train.py: RMSprop(lr=1e-5, weight_decay=1e-8, momentum=0.999, foreach=True)."""
    return torch.optim.RMSprop(model.parameters(), lr=1e-5, weight_decay=1e-8, momentum=0.999, foreach=True)


def monai_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """MONAI's tutorials train their U-Nets with Adam(lr=1e-4)."""
    return torch.optim.Adam(model.parameters(), lr=1e-4)


class Reference(NamedTuple):
    name: str
    build: Callable[[int, int, int], nn.Module | None]  # (in_channels, classes, base_width); None: not installed
    optimizer: Callable[[nn.Module], torch.optim.Optimizer]


REFERENCES = (
    Reference("milesial-style", MilesialStyleUNet, milesial_optimizer),
    Reference("monai-basicunet", monai_basic_unet, monai_optimizer),
)
