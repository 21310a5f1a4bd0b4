"""tile(): cells into one padded grid."""

from __future__ import annotations

import numpy as np
import pytest

from convscope.render import tile


def _cells(count: int, h: int = 4, w: int = 5) -> np.ndarray:
    values = np.arange(count, dtype=np.uint8)[:, None, None, None]
    return np.broadcast_to(values, (count, h, w, 3)).copy()


def test_default_grid_is_near_square() -> None:
    grid = tile(_cells(10))  # cols = ceil(sqrt(10)) = 4, rows = 3
    assert grid.shape == (3 * (4 + 1) + 1, 4 * (5 + 1) + 1, 3)
    assert grid.dtype == np.uint8


def test_explicit_cols_and_pad() -> None:
    grid = tile(_cells(6), cols=2, pad=3)
    assert grid.shape == (3 * (4 + 3) + 3, 2 * (5 + 3) + 3, 3)


def test_cells_land_row_major_at_their_offsets() -> None:
    grid = tile(_cells(5), cols=3, pad=1)
    for index in range(5):
        row, col = divmod(index, 3)
        y, x = 1 + row * 5, 1 + col * 6
        assert np.all(grid[y : y + 4, x : x + 5] == index)


def test_padding_and_empty_cells_use_pad_value() -> None:
    grid = tile(_cells(5), cols=3, pad=1, pad_value=200)
    assert np.all(grid[0] == 200) and np.all(grid[:, 0] == 200)
    assert np.all(grid[6:10, 13:18] == 200)  # sixth cell of the grid is empty


def test_pad_zero_is_a_plain_mosaic() -> None:
    grid = tile(_cells(4, 2, 2), cols=2, pad=0)
    assert grid.shape == (4, 4, 3)
    np.testing.assert_array_equal(grid[:, :, 0], [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])


def test_cols_larger_than_count_is_clamped() -> None:
    assert tile(_cells(2), cols=10, pad=0).shape == (4, 10, 3)


def test_rgb_pad_value() -> None:
    grid = tile(_cells(1), pad=1, pad_value=(1, 2, 3))
    assert tuple(grid[0, 0]) == (1, 2, 3)


def test_zero_cols_is_a_valueerror() -> None:
    with pytest.raises(ValueError, match="cols must be a positive"):
        tile(_cells(2), cols=0)


def test_negative_pad_is_a_valueerror() -> None:
    with pytest.raises(ValueError, match="pad must be >= 0"):
        tile(_cells(2), pad=-1)


def test_float_cells_are_a_valueerror_naming_apply_colormap() -> None:
    with pytest.raises(ValueError, match="apply_colormap"):
        tile(np.zeros((2, 3, 3, 3), dtype=np.float32))
