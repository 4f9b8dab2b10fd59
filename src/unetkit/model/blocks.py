"""The U-Net's building blocks: DoubleConv, Down, Up, and the helpers they share.

Every block takes one ``BlockSettings`` (layer types, norm, padding) instead of a list of loose
arguments, so a stage is described once and the same settings reach every convolution of the
network. The layer types are passed in (``Layers``, dynamic-network-architectures' way), so the
same blocks build the 2D network of images and the 3D network of volumes; kernels and pooling
strides are per axis, so a volume with coarse slices can pool in-plane only (nnU-Net).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from unetkit.config import Norm, Padding, Upsample


def largest_divisor_at_most(channels: int, limit: int) -> int:
    """The largest divisor of ``channels`` that is <= ``limit`` (GroupNorm needs groups | channels)."""
    return next(g for g in range(max(1, min(limit, channels)), 0, -1) if channels % g == 0)


@dataclass(frozen=True)
class Layers:
    """The layer types of one dimensionality."""

    dims: int
    conv: type[nn.Module]
    transpose: type[nn.Module]
    pool: type[nn.Module]
    batch_norm: type[nn.Module]
    interpolation: str  # nn.Upsample's mode for the `bilinear` up-sampling


LAYERS = {
    2: Layers(2, nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.BatchNorm2d, "bilinear"),
    3: Layers(3, nn.Conv3d, nn.ConvTranspose3d, nn.MaxPool3d, nn.BatchNorm3d, "trilinear"),
}
CONVOLUTIONS = tuple(layers.conv for layers in LAYERS.values())
BATCH_NORMS = tuple(layers.batch_norm for layers in LAYERS.values())


@dataclass(frozen=True)
class BlockSettings:
    """How every convolution of the network is built."""

    norm: Norm = "batch"
    groups: int = 8  # for norm == "group"; clamped per layer to a divisor of its channels
    padding: Padding = "same"
    layers: Layers = field(default_factory=lambda: LAYERS[2])

    def conv_padding(self, kernel: Sequence[int]) -> tuple[int, ...]:
        return tuple(size // 2 if self.padding == "same" else 0 for size in kernel)

    @property
    def conv_bias(self) -> bool:
        # A norm layer subtracts the mean right after the conv, so a conv bias would be dead weight.
        return self.norm == "none"

    def make_norm(self, channels: int) -> nn.Module:
        if self.norm == "batch":
            return self.layers.batch_norm(channels)
        if self.norm == "instance":
            # Instance norm as one group per channel: the same arithmetic and parameters (weight,
            # bias), but ATen's group-norm kernels, which read channels-last tensors in place where
            # instance_norm copies them (benchmarks/layout.py has the figures per CPU class).
            return nn.GroupNorm(channels, channels)
        if self.norm == "group":
            return nn.GroupNorm(largest_divisor_at_most(channels, self.groups), channels)
        return nn.Identity()


def per_axis(value: int | Sequence[int], dims: int) -> tuple[int, ...]:
    """``value`` for each of ``dims`` axes: an int repeated, a sequence as it is."""
    return (value,) * dims if isinstance(value, int) else tuple(value)


class DoubleConv(nn.Sequential):
    """(conv ``kernel`` (3x3) -> norm -> ReLU) twice; `valid` padding shrinks each side by 2 px."""

    def __init__(self, in_channels: int, out_channels: int, settings: BlockSettings, kernel: int | Sequence[int] = 3) -> None:
        kernel = per_axis(kernel, settings.layers.dims)
        layers: list[nn.Module] = []
        for channels_in in (in_channels, out_channels):
            layers += [
                settings.layers.conv(
                    channels_in,
                    out_channels,
                    kernel_size=kernel,
                    padding=settings.conv_padding(kernel),
                    bias=settings.conv_bias,
                ),
                settings.make_norm(out_channels),
                nn.ReLU(inplace=True),
            ]
        super().__init__(*layers)


class Down(nn.Sequential):
    """Max-pool by ``stride`` (2x2) then DoubleConv: one step down the contracting path."""

    def __init__(
        self, in_channels: int, out_channels: int, settings: BlockSettings,
        stride: int | Sequence[int] = 2, kernel: int | Sequence[int] = 3,
    ) -> None:
        super().__init__(settings.layers.pool(stride), DoubleConv(in_channels, out_channels, settings, kernel))


def center_crop(x: Tensor, height: int, width: int) -> Tensor:
    """The centred ``height`` x ``width`` window of ``x`` (..., H, W)."""
    top = (x.shape[-2] - height) // 2
    left = (x.shape[-1] - width) // 2
    return x[..., top : top + height, left : left + width]


class Up(nn.Module):
    """Up-sample 2x halving the channels, join the skip connection, DoubleConv.

    ``transpose``: a learned 2x2 transposed convolution (the paper's "up-convolution").
    ``bilinear``: fixed bilinear up-sampling then a 1x1 convolution, which avoids the
    checkerboard artefacts transposed convolutions can leave.
    """

    def __init__(
        self, in_channels: int, out_channels: int, settings: BlockSettings, mode: Upsample,
        stride: int | Sequence[int] = 2, kernel: int | Sequence[int] = 3,
    ) -> None:
        super().__init__()
        half = in_channels // 2
        layers = settings.layers
        if mode == "transpose":
            self.upsample: nn.Module = layers.transpose(in_channels, half, kernel_size=stride, stride=stride)
        else:
            scale = tuple(float(s) for s in stride) if not isinstance(stride, int) else float(stride)
            self.upsample = nn.Sequential(
                nn.Upsample(scale_factor=scale, mode=layers.interpolation, align_corners=False),
                layers.conv(in_channels, half, kernel_size=1),
            )
        self.conv = DoubleConv(half + out_channels, out_channels, settings, kernel)
        # `valid` convolutions leave the skip larger than the up-sampled map; `same` ones leave
        # them equal (the input is padded to a multiple of 2**depth), and skipping the crop keeps
        # dynamic-shape export free of size arithmetic.
        self.crop_skip = settings.padding == "valid"

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = self.upsample(x)
        if self.crop_skip:
            skip = center_crop(skip, x.shape[-2], x.shape[-1])
        return self.conv(torch.cat([skip, x], dim=1))


def pad_to_multiple(x: Tensor, multiples: list[int]) -> Tensor:
    """Mirror-pad the last ``len(multiples)`` axes of ``x`` at their ends so each becomes a
    multiple of its entry (H and W of an image, D, H and W of a volume)."""
    first = -len(multiples)
    for index, multiple in enumerate(multiples):
        axis = first + index
        # multiple * ceil(side / multiple): symbolically a multiple, so every halving divides exactly.
        x = mirror_resize(x, axis, (x.shape[axis] + multiple - 1) // multiple * multiple)
    return x


def mirror_resize(x: Tensor, dim: int, size: int) -> Tensor:
    """The first ``size`` entries of ``x`` along ``dim``, mirrored beyond its end if it is shorter.

    A gather rather than ``F.pad(mode="reflect")`` and slicing: both check the sizes against
    each other, checks that become shape guards (and failed exports) when the model is traced
    with dynamic H and W. Sides too short to mirror repeat their edge pixel.
    """
    length = x.shape[dim]
    index = torch.arange(size, device=x.device)
    index = torch.where(index < length, index, 2 * length - 2 - index).clamp(min=0)
    return x.index_select(dim, index)


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """For inference only: every batch norm that follows a convolution in a DoubleConv is folded into
    that convolution's weights and bias (``benchmarks/fold.py``: one memory pass less per layer).
    The model is changed in place and left in eval mode; train it no further."""
    model.eval()
    for block in model.modules():
        if isinstance(block, DoubleConv):
            for index in range(len(block) - 1):
                conv, norm = block[index], block[index + 1]
                if isinstance(conv, CONVOLUTIONS) and isinstance(norm, BATCH_NORMS):
                    block[index] = fuse_conv_bn_eval(conv, norm)
                    block[index + 1] = nn.Identity()
    return model
