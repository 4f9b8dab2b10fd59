"""The image sides a `valid`-padding U-Net takes and gives.

Going down, each level takes 4 px (conv pair) then halves (pool, needs an even size); the
bottleneck takes 4 px; going up, each level doubles then takes 4 px. Writing ``b`` for the
bottleneck's output side, every size follows from it, so the valid inputs are exactly
input(b) for the b whose output is >= 1.
"""

from __future__ import annotations

import math

from unetkit.errors import ConfigError




def _input_for_bottleneck(bottleneck: int, depth: int) -> int:
    size = bottleneck + 4
    for _ in range(depth):
        size = 2 * size + 4
    return size


def _output_for_bottleneck(bottleneck: int, depth: int) -> int:
    size = bottleneck
    for _ in range(depth):
        size = 2 * size - 4  # once a size drops to <= 0 it stays there, so the last one tells all
    return size


def _smallest_bottleneck(depth: int, output_size: int = 1) -> int:
    """The smallest bottleneck side whose output is >= ``output_size``."""
    # output = 2**depth * b - 4 * (2**depth - 1), so solve for b and round up.
    scale = 2**depth
    return max(1, math.ceil((output_size + 4 * (scale - 1)) / scale))


def valid_output_size(input_size: int, depth: int) -> int:
    """The output side of a `valid` U-Net for ``input_size``: 572 -> 388 at depth 4.

    Raises ConfigError naming the nearest valid input sizes when ``input_size`` is not one.
    """
    scale = 2**depth
    bottleneck_input, remainder = divmod(input_size - 4 * (scale - 1), scale)
    bottleneck = bottleneck_input - 4
    if remainder or bottleneck < _smallest_bottleneck(depth):
        below, above = nearest_valid_input_sizes(input_size, depth)
        nearest = f"{below} or {above}" if below != above else f"{above}"
        raise ConfigError(
            f"input size {input_size} does not fit a depth-{depth} U-Net with `valid` padding "
            f"(each pooling needs an even size); use {nearest}, or padding: same"
        )
    return _output_for_bottleneck(bottleneck, depth)


def valid_input_size(output_size: int, depth: int) -> int:
    """The smallest valid input side whose `valid` output is >= ``output_size``: 388 -> 572 at depth 4."""
    return _input_for_bottleneck(_smallest_bottleneck(depth, output_size), depth)


def nearest_valid_input_sizes(size: int, depth: int) -> tuple[int, int]:
    """(largest valid input side <= size, smallest valid input side >= size) for `valid` padding.

    Both are the smallest valid side when ``size`` is below it.
    """
    # input(b) = 2**depth * b + input(0): invert, round down, and clamp to the smallest valid b.
    bottleneck = max(_smallest_bottleneck(depth), (size - _input_for_bottleneck(0, depth)) // 2**depth)
    below = _input_for_bottleneck(bottleneck, depth)
    if below >= size:
        return below, below
    return below, _input_for_bottleneck(bottleneck + 1, depth)
