from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from unetkit.inference.tiling import (
    blend_window_1d,
    mirror_indices,
    overlap_tile_axis,
    sliding_axis,
    tile_starts,
)


@given(length=st.integers(1, 3000), tile=st.integers(1, 600), overlap=st.floats(0, 0.9))
def test_tile_starts_cover_the_axis_with_the_last_tile_flush(length: int, tile: int, overlap: float) -> None:
    stride = max(1, int(tile * (1 - overlap)))
    starts = tile_starts(length, tile, stride)
    assert starts[0] == 0
    assert starts[-1] == max(0, length - tile)
    assert starts == sorted(set(starts))
    assert all(b - a <= stride for a, b in zip(starts, starts[1:]))
    covered = np.zeros(length, dtype=bool)
    for start in starts:
        covered[start : start + tile] = True
    assert covered.all()


def test_tile_starts_rejects_a_zero_stride() -> None:
    with pytest.raises(ValueError, match="stride"):
        tile_starts(100, 10, 0)


@pytest.mark.parametrize("blend", ["gaussian", "linear", "constant"])
@pytest.mark.parametrize("size", [1, 2, 31, 64])
def test_blend_windows_are_positive_symmetric_and_peak_at_one(blend: str, size: int) -> None:
    window = blend_window_1d(size, blend)
    assert window.shape == (size,) and window.dtype == torch.float32
    assert (window > 0).all()
    assert window.max() == pytest.approx(1.0)
    torch.testing.assert_close(window, window.flip(0))
    assert window[size // 2] >= window[0]


def test_unknown_blend_is_refused() -> None:
    with pytest.raises(ValueError, match="gaussian"):
        blend_window_1d(8, "cosine")


@pytest.mark.parametrize("length", [1, 2, 3, 7])
@pytest.mark.parametrize("pad", [0, 1, 2, 6, 20])
def test_mirror_indices_match_numpy_reflect_even_beyond_the_size(length: int, pad: int) -> None:
    expected = np.pad(np.arange(length), pad, mode="reflect")
    np.testing.assert_array_equal(mirror_indices(-pad, length + pad, length).numpy(), expected)


@given(length=st.integers(1, 400), tile_steps=st.integers(1, 16), overlap=st.floats(0, 0.75), align=st.sampled_from([1, 4, 8]))
def test_sliding_tiles_are_aligned_and_weigh_every_pixel(length: int, tile_steps: int, overlap: float, align: int) -> None:
    tile = tile_steps * align
    axis = sliding_axis(length, tile, overlap, "gaussian", align)
    assert all(start % align == 0 for start in axis.starts)
    assert (axis.weight_sum() > 0).all()
    for start in axis.starts:
        assert axis.input_indices(start).shape == (tile,)


def test_an_axis_shorter_than_the_tile_is_mirrored_past_its_end() -> None:
    axis = sliding_axis(10, 16, 0.25, "linear", align=4)
    assert axis.starts == (0,)
    assert axis.placement(0) == (slice(0, 10), slice(0, 10))
    np.testing.assert_array_equal(axis.input_indices(0).numpy(), np.pad(np.arange(10), (0, 6), mode="reflect"))


@given(length=st.integers(1, 300), step=st.integers(1, 64), margin=st.integers(0, 40))
def test_overlap_tiles_give_every_pixel_exactly_one_output(length: int, step: int, margin: int) -> None:
    axis = overlap_tile_axis(length, step + 2 * margin + 4, step + 4, step)
    assert axis.margin == margin
    torch.testing.assert_close(axis.weight_sum(), torch.ones(length))
    first = axis.input_indices(0)
    np.testing.assert_array_equal(first[:margin].numpy(), mirror_indices(-margin, 0, length).numpy())
