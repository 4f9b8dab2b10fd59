"""Tile geometry for predicting images of any size: where tiles start, how their outputs blend, and
how pixels beyond the image border are mirrored in.

Everything here works one axis at a time; a 2-D tile grid is the product of two ``AxisTiles``.
Mirroring is done by index arithmetic (``mirror_indices``), so a tile that reaches past the border
is gathered directly from the image and the whole image is never copied into a padded array.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

Blend = Literal["gaussian", "linear", "constant"]

# The smallest weight relative to the window's peak: blending divides by summed weights, and a
# pixel covered only by one tile's far corner must still get a finite, exact-enough value.
_WINDOW_FLOOR = 1e-3


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Starts of tiles of size ``tile`` every ``stride`` pixels, the last one flush with the end.

    The tiles cover ``[0, length)``; a tile longer than the image gives the single start 0.
    """
    if tile < 1 or stride < 1:
        raise ValueError(f"tile ({tile}) and stride ({stride}) must be positive")
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def blend_window_1d(size: int, blend: Blend) -> torch.Tensor:
    """A float32 weight profile of ``size`` values, peak 1, never zero.

    ``gaussian``: sigma = size / 8 around the centre (nnU-Net's choice); ``linear``: a triangle
    (pyramid in 2-D); ``constant``: all ones (plain averaging).
    """
    if blend == "constant":
        return torch.ones(size)
    position = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    if blend == "gaussian":
        sigma = size / 8
        window = torch.exp(-0.5 * (position / sigma) ** 2)
    elif blend == "linear":
        window = 1 - position.abs() / (size / 2)
    else:
        raise ValueError(f"unknown blend {blend!r}; use gaussian, linear or constant")
    window = window / window.max()
    return window.clamp_min(_WINDOW_FLOOR).float()


def mirror_indices(start: int, stop: int, length: int) -> torch.Tensor:
    """Source indices for positions ``start..stop-1`` of an axis of ``length`` pixels extended by
    mirroring about its first and last pixel (numpy's ``reflect``), repeated as often as needed.

    Positions inside ``[0, length)`` map to themselves; a pad wider than the image reflects again
    (``... 2 1 0 1 2 ... n-1 n-2 ...``), and a one-pixel axis repeats its pixel.
    """
    positions = torch.arange(start, stop)
    if length == 1:
        return torch.zeros_like(positions)
    period = 2 * (length - 1)
    folded = positions.remainder(period)
    return torch.where(folded < length, folded, period - folded)


@dataclass(frozen=True)
class AxisTiles:
    """The tiles along one image axis.

    Tile ``i`` feeds the network the pixels ``[starts[i] - margin, starts[i] - margin + input_size)``
    (mirrored beyond the image) and its first ``output_size`` output pixels land on
    ``[starts[i], starts[i] + output_size)``, weighted by ``window``; parts outside the image are
    dropped.
    """

    length: int
    input_size: int
    output_size: int
    margin: int
    starts: tuple[int, ...]
    window: torch.Tensor

    def input_indices(self, start: int) -> torch.Tensor:
        first = start - self.margin
        return mirror_indices(first, first + self.input_size, self.length)

    def placement(self, start: int) -> tuple[slice, slice]:
        """(slice of the tile's output, slice of the image) where this tile's output lands."""
        low, high = max(start, 0), min(start + self.output_size, self.length)
        return slice(low - start, high - start), slice(low, high)

    def weight_sum(self) -> torch.Tensor:
        """Summed window weight at each image pixel (length,): the blending denominator."""
        total = torch.zeros(self.length)
        for start in self.starts:
            tile_part, image_part = self.placement(start)
            total[image_part] += self.window[tile_part]
        return total


def whole_axis(length: int) -> AxisTiles:
    """One tile exactly the size of the image: the network sees the axis whole."""
    return AxisTiles(length, length, length, 0, (0,), torch.ones(length))


def sliding_axis(length: int, tile: int, overlap: float, blend: Blend, align: int = 1) -> AxisTiles:
    """Overlapping tiles for a ``same``-padding network, blended with ``blend``.

    Tiles start at multiples of ``align`` (2**depth; ``tile`` must be one too): max pooling is
    shift-equivariant only for such shifts, so aligned tiles see the pooling grid the whole image
    would. The axis is covered up to the next multiple of ``align``, mirrored beyond its end just
    as the network pads a whole image; an axis shorter than the tile gets one tile, mirrored.
    """
    covered, stride = _sliding_geometry(length, tile, overlap, align)
    starts = tile_starts(covered, tile, stride)
    return AxisTiles(length, tile, tile, 0, tuple(starts), blend_window_1d(tile, blend))


def sliding_count(length: int, tile: int, overlap: float, align: int = 1) -> int:
    """``len(sliding_axis(...).starts)`` without listing the starts (an axis may be millions of pixels)."""
    covered, stride = _sliding_geometry(length, tile, overlap, align)
    return 1 if covered <= tile else -(-(covered - tile) // stride) + 1


def _sliding_geometry(length: int, tile: int, overlap: float, align: int) -> tuple[int, int]:
    """(pixels the tiles cover, stride) of ``sliding_axis``."""
    return -(-length // align) * align, max(align, math.floor(tile * (1 - overlap)) // align * align)


def overlap_tile_axis(length: int, input_size: int, output_size: int, step: int) -> AxisTiles:
    """The U-Net paper's overlap-tile strategy for a ``valid``-padding network.

    Each input tile reaches ``(input_size - output_size) / 2`` pixels beyond its output on each
    side (mirrored at the image border). Tiles advance by ``step`` output pixels and each keeps the
    first ``step`` of its ``output_size`` outputs, so every output pixel comes from exactly one
    tile and no blending is needed; the output tiles cover the image padded to a multiple of
    ``step``.
    """
    margin = (input_size - output_size) // 2
    starts = tuple(range(0, length, step))
    return AxisTiles(length, input_size, step, margin, starts, torch.ones(step))


def overlap_tile_count(length: int, step: int) -> int:
    """``len(overlap_tile_axis(length, ..., step).starts)``."""
    return -(-length // step)
