"""render_activation_grid(): feature maps of 1, 2 or 3 spatial axes as one image."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from convscope.render import Picture, get_colormap, render_activation_grid


def _cell(picture: Picture, index: int, pad: int = 1) -> np.ndarray:
    """Pixels of cell ``index`` (row-major) using the geometry recorded in meta."""
    h, w = picture.meta["cell_size"]
    row, col = divmod(index, picture.meta["cols"])
    y, x = pad + row * (h + pad), pad + col * (w + pad)
    return picture.pixels[y : y + h, x : x + w]


def test_2d_grid_geometry_and_meta() -> None:
    maps = np.random.default_rng(0).random((10, 56, 56)).astype(np.float32)
    picture = render_activation_grid(maps)
    assert picture.meta["cols"] == 4 and picture.meta["rows"] == 3
    assert picture.meta["cell_size"] == [56, 56] and picture.meta["scale_factor"] == 1
    assert picture.pixels.shape == (3 * 57 + 1, 4 * 57 + 1, 3)


def test_small_maps_are_upscaled_to_min_cell() -> None:
    picture = render_activation_grid(np.zeros((4, 7, 7), dtype=np.float32), min_cell=48)
    assert picture.meta["scale_factor"] == 7
    assert picture.meta["cell_size"] == [49, 49]


def test_upscale_is_reduced_to_fit_max_side() -> None:
    picture = render_activation_grid(np.zeros((64, 7, 7), dtype=np.float32), max_side=200)
    assert max(picture.pixels.shape[:2]) <= 200
    assert picture.meta["scale_factor"] == 3  # 8 cells of 7*3+1 px + 1 = 177


def test_upscaling_is_nearest_neighbour() -> None:
    maps = np.array([[[0.0, 1.0], [1.0, 0.0]]], dtype=np.float32)
    cell = _cell(render_activation_grid(maps, cmap="gray", min_cell=4), 0)
    assert cell.shape == (4, 4, 3)
    np.testing.assert_array_equal(cell[:, :, 0], [[0, 0, 255, 255], [0, 0, 255, 255], [255, 255, 0, 0], [255, 255, 0, 0]])


def test_channels_are_drawn_in_the_given_order() -> None:
    maps = np.stack([np.full((4, 4), float(c)) for c in range(3)]).astype(np.float32)
    picture = render_activation_grid(maps, channels=[2, 0], scale="minmax", shared=True, cmap="gray", min_cell=4)
    assert picture.meta["cols"] * picture.meta["rows"] >= 2
    assert tuple(_cell(picture, 0)[0, 0]) == (255, 255, 255)  # channel 2 = max
    assert tuple(_cell(picture, 1)[0, 0]) == (0, 0, 0)  # channel 0 = min


def test_out_of_range_channel_is_a_valueerror() -> None:
    with pytest.raises(ValueError, match="channel 5 is out of range"):
        render_activation_grid(np.zeros((3, 4, 4), dtype=np.float32), channels=[5])


def test_nan_pixels_show_magenta() -> None:
    maps = np.random.default_rng(1).random((1, 4, 4)).astype(np.float32)
    maps[0, 0, 0] = np.nan
    picture = render_activation_grid(maps, min_cell=4)
    assert tuple(_cell(picture, 0)[0, 0]) == (255, 0, 255)
    assert picture.meta["nan_count"] == 1


def test_all_nan_map_is_all_magenta_and_value_range_none() -> None:
    picture = render_activation_grid(np.full((1, 4, 4), np.nan, dtype=np.float32), min_cell=4)
    assert np.all(_cell(picture, 0) == (255, 0, 255))
    assert picture.meta["value_range"] is None


def test_constant_map_renders_bottom_colour() -> None:
    picture = render_activation_grid(np.full((1, 4, 4), 7.0, dtype=np.float32), min_cell=4)
    assert np.all(_cell(picture, 0) == get_colormap("viridis")[0])


def test_infinities_are_counted_and_excluded_from_value_range() -> None:
    maps = np.array([[[1.0, 2.0], [np.inf, -np.inf]]], dtype=np.float32)
    picture = render_activation_grid(maps)
    assert picture.meta["inf_count"] == 2
    assert picture.meta["value_range"] == [1.0, 2.0]


def test_symmetric_scale_draws_zero_in_the_middle_colour() -> None:
    maps = np.array([[[-2.0, 0.0], [1.0, 2.0]]], dtype=np.float32)
    picture = render_activation_grid(maps, scale="symmetric", cmap="RdBu_r", min_cell=2)
    np.testing.assert_array_equal(_cell(picture, 0)[0, 1], get_colormap("RdBu_r")[128])


def test_shared_scale_differs_from_per_channel() -> None:
    maps = np.stack([np.linspace(0, 1, 16).reshape(4, 4), np.linspace(0, 10, 16).reshape(4, 4)]).astype(np.float32)
    per_channel = render_activation_grid(maps, cmap="gray", min_cell=4)
    shared = render_activation_grid(maps, cmap="gray", shared=True, min_cell=4)
    np.testing.assert_array_equal(_cell(per_channel, 0), _cell(per_channel, 1))
    assert _cell(shared, 0).max() < 30 and _cell(shared, 1).max() == 255


def test_1d_maps_are_stacked_strips() -> None:
    maps = np.random.default_rng(2).random((5, 200)).astype(np.float32)
    picture = render_activation_grid(maps)
    assert picture.meta["cols"] == 1 and picture.meta["rows"] == 5
    assert picture.meta["cell_size"] == [25, 200]  # height max(8, 200 // 8), width >= 4 * min_cell
    assert picture.pixels.shape == (5 * 26 + 1, 202, 3)


def test_1d_short_maps_are_widened_by_an_integer_factor() -> None:
    picture = render_activation_grid(np.zeros((2, 10), dtype=np.float32), min_cell=48)
    assert picture.meta["scale_factor"] == 20
    assert picture.meta["cell_size"] == [8, 200]


def test_3d_slices_cell_shows_three_views_with_gaps() -> None:
    maps = np.random.default_rng(3).random((2, 6, 8, 10)).astype(np.float32)  # D, H, W
    picture = render_activation_grid(maps, min_cell=8)
    factor = picture.meta["scale_factor"]
    assert factor == 1
    # views: (H, W) = (8, 10), (D, W) = (6, 10), (D, H) = (6, 8) -> height 8, width 28 + 2 gaps
    assert picture.meta["cell_size"] == [8, 30]


def test_3d_mip_differs_from_slices() -> None:
    maps = np.zeros((1, 5, 5, 5), dtype=np.float32)
    maps[0, 0, 0, 0] = 1.0  # far from every middle slice: only a projection shows it
    maps[0, 2, 2, 2] = 0.5
    slices = render_activation_grid(maps, volume="slices", min_cell=5, cmap="gray")
    mip = render_activation_grid(maps, volume="mip", min_cell=5, cmap="gray")
    assert slices.pixels.shape == mip.pixels.shape
    assert _cell(slices, 0, pad=2)[0, 0, 0] == 0
    assert _cell(mip, 0, pad=2)[0, 0, 0] == 255


def test_3d_mip_of_all_nan_ray_is_nan_without_warning() -> None:
    maps = np.zeros((1, 3, 3, 3), dtype=np.float32)
    maps[0, :, 0, 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        picture = render_activation_grid(maps, volume="mip")
    assert picture.meta["nan_count"] == 1  # the D-projection pixel (0, 0)


def test_unknown_volume_mode_is_a_valueerror() -> None:
    with pytest.raises(ValueError, match="'slices' or 'mip'"):
        render_activation_grid(np.zeros((1, 2, 2, 2), dtype=np.float32), volume="middle")


def test_labels_change_pixels_in_the_cell_corner_only() -> None:
    maps = np.random.default_rng(4).random((4, 16, 16)).astype(np.float32)
    plain = render_activation_grid(maps).pixels
    labelled = render_activation_grid(maps, labels=True).pixels
    changed = np.any(plain != labelled, axis=2)
    h, w = 48, 48
    assert changed[1 : 1 + h // 2, 1 : 1 + w // 2].any()
    assert not changed[1 + h // 2 : 1 + h, :].any()  # bottom half of the first cell row untouched


def test_labels_are_white_text_on_dark_box() -> None:
    maps = np.full((1, 16, 16), 0.5, dtype=np.float32)
    corner = render_activation_grid(maps, labels=True, cmap="gray").pixels[1:13, 1:10]
    assert corner.max() >= 200 and corner.min() <= 40


def test_bad_maps_shape_is_a_valueerror() -> None:
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        render_activation_grid(np.zeros((1, 2, 2, 2, 2), dtype=np.float32))
