"""Colormap lookup tables and their application."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from convscope.render import apply_colormap, get_colormap
from convscope.render.colormap import BUNDLED_COLORMAPS, NAN_COLOR, _LUT_FILE


def test_bundled_archive_holds_every_listed_colormap_as_256x3_uint8() -> None:
    with np.load(_LUT_FILE) as archive:
        assert sorted(archive.files) == sorted(BUNDLED_COLORMAPS)
        assert all(archive[name].shape == (256, 3) and archive[name].dtype == np.uint8 for name in archive.files)


def test_get_colormap_returns_cached_readonly_table() -> None:
    lut = get_colormap("viridis")
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert get_colormap("viridis") is lut
    with pytest.raises(ValueError):
        lut[0, 0] = 1


def test_viridis_ends_match_matplotlib_values() -> None:
    lut = get_colormap("viridis")
    assert tuple(lut[0]) == (68, 1, 84)
    assert tuple(lut[255]) == (253, 231, 37)


def test_reversed_name_reverses_table() -> None:
    np.testing.assert_array_equal(get_colormap("gray_r"), get_colormap("gray")[::-1])
    np.testing.assert_array_equal(get_colormap("RdBu"), get_colormap("RdBu_r")[::-1])


def test_unknown_colormap_message_lists_bundled_names() -> None:
    with pytest.raises(ValueError, match="unknown colormap 'not_a_cmap'.*viridis.*RdBu_r"):
        get_colormap("not_a_cmap")


def test_unbundled_name_falls_back_to_matplotlib() -> None:
    pytest.importorskip("matplotlib")
    lut = get_colormap("Blues")
    assert lut.shape == (256, 3)
    assert lut[0].sum() > lut[255].sum()  # Blues goes from near-white to dark blue


def test_unbundled_name_without_matplotlib_is_a_valueerror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(ValueError, match="install matplotlib"):
        get_colormap("Greens_not_cached_name_xyz")


def test_apply_colormap_maps_ends_and_clips() -> None:
    lut = get_colormap("magma")
    rgb = apply_colormap(np.array([0.0, 1.0, -3.0, 7.0, -np.inf, np.inf], dtype=np.float32), "magma")
    np.testing.assert_array_equal(rgb, lut[[0, 255, 0, 255, 0, 255]])


def test_apply_colormap_nan_gets_magenta() -> None:
    rgb = apply_colormap(np.array([[np.nan, 0.5]], dtype=np.float32), "viridis")
    assert rgb.shape == (1, 2, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == NAN_COLOR == (255, 0, 255)


def test_apply_colormap_custom_nan_color() -> None:
    rgb = apply_colormap(np.array([np.nan]), "gray", nan_color=(1, 2, 3))
    assert tuple(rgb[0]) == (1, 2, 3)


def test_magenta_is_in_no_bundled_colormap() -> None:
    for name in BUNDLED_COLORMAPS:
        assert not np.any(np.all(get_colormap(name) == NAN_COLOR, axis=1)), name


def test_half_maps_to_middle_entry() -> None:
    lut = get_colormap("RdBu_r")
    np.testing.assert_array_equal(apply_colormap(np.array([0.5]), "RdBu_r")[0], lut[128])


def test_apply_colormap_accepts_an_explicit_table() -> None:
    table = np.array([[0, 0, 0], [255, 255, 255]], dtype=np.uint8)
    rgb = apply_colormap(np.array([0.2, 0.8]), table)
    np.testing.assert_array_equal(rgb, [[0, 0, 0], [255, 255, 255]])


def test_bad_table_shape_is_a_valueerror() -> None:
    with pytest.raises(ValueError, match=r"\(K, 3\)"):
        apply_colormap(np.array([0.5]), np.zeros((4, 4), dtype=np.uint8))
