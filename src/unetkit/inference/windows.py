"""Sliding windows over N dimensions: the tiles of an image (2D) or the windows of a volume (3D),
each axis an ``AxisTiles`` (tiling.py), run through the network in batches and blended.

The window is the product of the axes' 1D profiles (Gaussian by default, nnU-Net's), so the summed
weights are separable too and the blend divides axis by axis. Memory is the output (K channels of
float32 per pixel or voxel) plus one batch of windows, never a padded copy of the input.
"""

from __future__ import annotations

import itertools
from typing import Callable, Iterator, Sequence

import torch

from unetkit.errors import DataError
from unetkit.inference.tiling import AxisTiles

# One window's input (C, *window) from the source indices of each axis.
WindowInput = Callable[[tuple[torch.Tensor, ...]], torch.Tensor]
Network = Callable[[torch.Tensor], torch.Tensor]


def window_weights(axes: Sequence[AxisTiles]) -> torch.Tensor:
    """The outer product of the axes' 1D blending profiles."""
    weights = axes[0].window
    for axis in axes[1:]:
        weights = weights[..., None] * axis.window
    return weights


def stitch(
    axes: Sequence[AxisTiles], channels: int, window_input: WindowInput, network: Network, batch_size: int
) -> torch.Tensor:
    """Probabilities (channels, *lengths) float32 on the CPU: every window of the grid of ``axes``
    through ``network``, ``batch_size`` at a time, blended by the window weights."""
    probabilities = torch.zeros(channels, *(axis.length for axis in axes))
    weights = window_weights(axes)
    for batch in _batches(itertools.product(*(axis.starts for axis in axes)), batch_size):
        inputs = torch.stack([window_input(tuple(a.input_indices(s) for a, s in zip(axes, starts))) for starts in batch])
        outputs = network(inputs).float().cpu()
        check_finite(outputs, inputs)
        for starts, output in zip(batch, outputs):
            window_part, source_part = zip(*(a.placement(s) for a, s in zip(axes, starts)))
            target = probabilities[(slice(None), *source_part)]
            target.addcmul_(output[(slice(None), *window_part)], weights[window_part])
    for index, axis in enumerate(axes):  # the summed weights are separable: divide axis by axis
        shape = [1] * len(axes)
        shape[index] = -1
        probabilities.div_(axis.weight_sum().view(shape))
    return probabilities


def check_finite(outputs: torch.Tensor, inputs: torch.Tensor) -> None:
    """NaN/inf pixels or extreme values overflow the network; say so instead of writing NaN masks."""
    if not bool(torch.isfinite(outputs).all()):
        raise DataError(
            f"the network's output is not finite for this image (normalised values {float(inputs.min()):.3g}.."
            f"{float(inputs.max()):.3g}): replace NaN/infinite or extreme pixel values, or check the model's weights"
        )


def _batches(items: Iterator[tuple[int, ...]], size: int) -> Iterator[tuple[tuple[int, ...], ...]]:
    iterator = iter(items)
    while batch := tuple(itertools.islice(iterator, size)):
        yield batch
