"""render_kernel_grid(): conv weights (O, I, *k) as cells, a matrix, or RGB filters."""

from __future__ import annotations

import numpy as np
import pytest

from convscope.render import get_colormap, render_kernel_grid


def _weights(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_3x3_cells_layout_geometry() -> None:
    picture = render_kernel_grid(_weights(4, 3, 3, 3))
    meta = picture.meta
    assert (meta["layout"], meta["rows"], meta["cols"]) == ("cells", 4, 3)
    assert meta["scale_factor"] == 8 and meta["cell_size"] == [24, 24]
    assert picture.pixels.shape == (4 * 25 + 1, 3 * 25 + 1, 3)


def test_kernel_cell_shows_its_weights_upscaled() -> None:
    weights = np.zeros((1, 2, 3, 3), dtype=np.float32)
    weights[0, 1, 0, 0] = 1.0  # top-left weight of input 1
    picture = render_kernel_grid(weights, cmap="gray", scale="minmax")
    cell = picture.pixels[1:25, 26:50]  # second cell of the only row
    assert np.all(cell[:8, :8] == 255) and np.all(cell[8:, :] == 0)


def test_symmetric_zero_weight_is_lut_middle_colour() -> None:
    weights = np.array([[[[-1.0, 0.0], [0.5, 1.0]]]], dtype=np.float32)
    picture = render_kernel_grid(weights)
    zero_pixel = picture.pixels[1, 1 + picture.meta["scale_factor"]]
    np.testing.assert_array_equal(zero_pixel, get_colormap("RdBu_r")[128])


def test_default_cmap_is_gray_for_minmax() -> None:
    assert render_kernel_grid(_weights(2, 2, 3, 3), scale="minmax").meta["cmap"] == "gray"
    assert render_kernel_grid(_weights(2, 2, 3, 3), scale="percentile").meta["cmap"] == "RdBu_r"


def test_per_filter_normalisation_vs_shared() -> None:
    weights = np.array([[[[-1.0, 1.0]]], [[[-4.0, 4.0]]], [[[-1.0, 4.0]]]], dtype=np.float32)  # (3, 1, 1, 2)
    per_filter = render_kernel_grid(weights, scale="symmetric", cmap="gray").pixels
    shared = render_kernel_grid(weights, scale="symmetric", cmap="gray", shared=True).pixels
    # filter 0 saturates on its own scale but is pale grey on the layer's scale (limit 4)
    per_value = per_filter[1, 1, 0]
    shared_value = shared[1, 1, 0]
    assert per_value == 0 and 90 <= shared_value <= 100  # -1/4 -> 0.375 -> ~96


def test_1x1_kernels_draw_one_matrix() -> None:
    picture = render_kernel_grid(_weights(8, 4, 1, 1))
    meta = picture.meta
    assert meta["layout"] == "matrix" and (meta["rows"], meta["cols"]) == (8, 4)
    factor = meta["scale_factor"]
    assert factor == 16  # ceil(128 / 8)
    assert picture.pixels.shape == (8 * factor, 4 * factor, 3)


def test_1x1_matrix_rows_are_filters() -> None:
    weights = np.zeros((2, 3, 1, 1), dtype=np.float32)
    weights[1, 2] = 5.0
    picture = render_kernel_grid(weights, scale="minmax", cmap="gray", shared=True)
    f = picture.meta["scale_factor"]
    assert tuple(picture.pixels[f + 1, 2 * f + 1]) == (255, 255, 255)
    assert tuple(picture.pixels[1, 2 * f + 1]) == (0, 0, 0)


def test_1d_kernels_are_strips() -> None:
    picture = render_kernel_grid(_weights(3, 2, 5))
    assert picture.meta["layout"] == "cells"
    assert picture.meta["cell_size"] == [5, 25]  # 1 x 5 at 5 px per weight (~24 px per kernel)
    assert picture.pixels.shape == (3 * 6 + 1, 2 * 26 + 1, 3)


def test_1d_pointwise_kernels_are_a_matrix() -> None:
    assert render_kernel_grid(_weights(4, 4, 1)).meta["layout"] == "matrix"


def test_3d_kernels_show_depth_slices_side_by_side() -> None:
    picture = render_kernel_grid(_weights(2, 2, 3, 3, 3))
    assert picture.meta["scale_factor"] == 8
    assert picture.meta["cell_size"] == [24, 3 * 24 + 2]  # three 24 px slices, two 1 px gaps
    assert picture.pixels.shape == (2 * (24 + 3) + 3, 2 * (74 + 3) + 3, 3)


def test_3d_pointwise_kernels_are_a_matrix() -> None:
    assert render_kernel_grid(_weights(4, 2, 1, 1, 1)).meta["layout"] == "matrix"


def test_rgb_layout_tiles_one_colour_image_per_filter() -> None:
    picture = render_kernel_grid(_weights(10, 3, 7, 7), rgb=True)
    meta = picture.meta
    assert meta["layout"] == "rgb" and (meta["rows"], meta["cols"]) == (3, 4)
    assert meta["cell_size"] == [42, 42]


def test_rgb_symmetric_zero_is_mid_grey() -> None:
    weights = np.zeros((1, 3, 2, 2), dtype=np.float32)
    weights[0, 0, 0, 0] = 1.0
    picture = render_kernel_grid(weights, rgb=True)
    assert tuple(picture.pixels[-3, -3]) == (128, 128, 128)  # bottom-right weight is 0 in R, G, B
    assert tuple(picture.pixels[1, 1]) == (255, 128, 128)


def test_rgb_needs_three_input_channels() -> None:
    with pytest.raises(ValueError, match="3 input channels"):
        render_kernel_grid(_weights(2, 4, 3, 3), rgb=True)


def test_max_side_caps_upscaling_but_never_below_the_readable_cell() -> None:
    # intended change (issue 9): max_side yields to the minimum kernel cell (8 px, 2 px per weight)
    picture = render_kernel_grid(_weights(64, 64, 3, 3), max_side=100)
    assert picture.meta["scale_factor"] == 3  # 3x3 kernels: 9 px cells, the smallest >= 8 px
    assert picture.pixels.shape == (64 * 10 + 1, 64 * 10 + 1, 3)


def test_max_side_reduces_factor_when_it_can() -> None:
    picture = render_kernel_grid(_weights(64, 64, 7, 7), max_side=1000)
    assert picture.meta["scale_factor"] == 2  # 64 * 15 + 1 = 961 <= 1000 < 64 * 22 + 1
    assert max(picture.pixels.shape[:2]) <= 1000


def test_depthwise_kernels_wrap_into_a_square_grid() -> None:
    picture = render_kernel_grid(_weights(16, 1, 3, 3), groups=16)
    assert (picture.meta["rows"], picture.meta["cols"]) == (4, 4)


def test_labels_add_index_margins() -> None:
    plain = render_kernel_grid(_weights(4, 3, 3, 3))
    labelled = render_kernel_grid(_weights(4, 3, 3, 3), labels=True)
    assert labelled.height > plain.height and labelled.width > plain.width
    top, left = labelled.height - plain.height, labelled.width - plain.width
    np.testing.assert_array_equal(labelled.pixels[top:, left:], plain.pixels)
    assert labelled.pixels[:top].max() >= 200  # white digits on the dark margin


def test_nan_weight_shows_magenta() -> None:
    weights = np.zeros((1, 1, 2, 2), dtype=np.float32)
    weights[0, 0, 1, 1] = np.nan
    picture = render_kernel_grid(weights)
    assert tuple(picture.pixels[-2, -2]) == (255, 0, 255)
    assert picture.meta["nan_count"] == 1


def test_groups_must_divide_out_channels() -> None:
    with pytest.raises(ValueError, match="groups=3"):
        render_kernel_grid(_weights(4, 1, 3, 3), groups=3)


def test_unknown_scale_is_a_valueerror() -> None:
    with pytest.raises(ValueError, match="unknown scale 'robust'"):
        render_kernel_grid(_weights(2, 2, 3, 3), scale="robust")
