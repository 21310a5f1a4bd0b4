"""render_overlay(): a bilinearly upsampled heat map blended over an image."""

from __future__ import annotations

import numpy as np
import pytest

from convscope.render import render_overlay


def _image(h: int = 32, w: int = 48) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _amap(h: int = 4, w: int = 6) -> np.ndarray:
    return np.random.default_rng(1).random((h, w)).astype(np.float32)


def test_overlay_has_the_image_size() -> None:
    picture = render_overlay(_image(), _amap())
    assert picture.pixels.shape == (32, 48, 3)


def test_alpha_zero_returns_the_image_exactly() -> None:
    image = _image()
    np.testing.assert_array_equal(render_overlay(image, _amap(), alpha=0.0).pixels, image)


def test_alpha_one_returns_the_heat_map() -> None:
    image = _image()
    heat_a = render_overlay(image, _amap(), alpha=1.0).pixels
    heat_b = render_overlay(np.zeros_like(image), _amap(), alpha=1.0).pixels
    np.testing.assert_array_equal(heat_a, heat_b)


def test_half_alpha_is_the_average() -> None:
    image = _image()
    heat = render_overlay(image, _amap(), alpha=1.0).pixels.astype(np.float32)
    half = render_overlay(image, _amap(), alpha=0.5).pixels.astype(np.float32)
    assert np.abs(half - (image.astype(np.float32) + heat) / 2).max() <= 1.0


def test_upsampling_is_smooth_not_blocky() -> None:
    amap = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    heat = render_overlay(np.zeros((64, 64, 3), np.uint8), amap, cmap="gray", alpha=1.0).pixels[:, :, 0]
    steps_x = np.abs(np.diff(heat.astype(np.int32), axis=1))
    steps_y = np.abs(np.diff(heat.astype(np.int32), axis=0))
    assert steps_x.max() <= 16 and steps_y.max() <= 16  # nearest upsampling would jump by 255
    assert heat.max() - heat.min() > 200


def test_gray_image_is_accepted() -> None:
    picture = render_overlay(np.full((10, 12), 77, dtype=np.uint8), _amap(), alpha=0.0)
    assert picture.pixels.shape == (10, 12, 3)
    assert np.all(picture.pixels == 77)


def test_nan_map_pixels_are_magenta_in_heat() -> None:
    amap = np.ones((4, 4), dtype=np.float32)
    amap[0, 0] = np.nan
    heat = render_overlay(np.zeros((40, 40, 3), np.uint8), amap, alpha=1.0).pixels
    assert tuple(heat[0, 0]) == (255, 0, 255)
    assert tuple(heat[39, 39]) != (255, 0, 255)


def test_alpha_outside_unit_interval_is_a_valueerror() -> None:
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        render_overlay(_image(), _amap(), alpha=1.5)


def test_meta_records_range_alpha_and_cmap() -> None:
    amap = np.array([[0.0, 2.0], [np.inf, 1.0]], dtype=np.float32)
    meta = render_overlay(_image(), amap, alpha=0.25, cmap="turbo").meta
    assert meta["value_range"] == [0.0, 2.0]
    assert meta["alpha"] == 0.25 and meta["cmap"] == "turbo"


def test_non_2d_map_is_a_valueerror() -> None:
    with pytest.raises(ValueError, match=r"2-D \(h, w\)"):
        render_overlay(_image(), np.zeros((2, 3, 3), np.float32))
