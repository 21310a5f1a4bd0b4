"""normalize(): per-map / shared scaling robust to NaN, Inf and constant maps."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from convscope.render import normalize


def test_minmax_scales_each_map_to_its_own_range() -> None:
    out = normalize(np.array([[0.0, 1.0, 2.0], [10.0, 15.0, 20.0]], dtype=np.float32))
    np.testing.assert_allclose(out.unit, [[0, 0.5, 1], [0, 0.5, 1]])
    np.testing.assert_array_equal(out.low, [0, 10])
    np.testing.assert_array_equal(out.high, [2, 20])
    assert out.unit.dtype == np.float32


def test_constant_map_minmax_is_zero_and_flagged() -> None:
    out = normalize(np.full((1, 4, 4), 3.0, dtype=np.float32))
    assert np.all(out.unit == 0.0)
    assert out.constant.tolist() == [True]


def test_constant_zero_map_symmetric_is_half() -> None:
    out = normalize(np.zeros((2, 3, 3), dtype=np.float32), scale="symmetric")
    assert np.all(out.unit == 0.5)
    assert out.constant.tolist() == [True, True]


def test_symmetric_maps_zero_to_half_and_limit_to_ends() -> None:
    out = normalize(np.array([[-1.0, 0.0, 4.0]], dtype=np.float32), scale="symmetric")
    np.testing.assert_allclose(out.unit, [[0.375, 0.5, 1.0]])
    np.testing.assert_array_equal(out.low, [-4])
    np.testing.assert_array_equal(out.high, [4])


def test_all_nan_map_stays_nan_without_warnings() -> None:
    values = np.array([[np.nan, np.nan], [1.0, 2.0]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = normalize(values, scale="percentile")
    assert np.all(np.isnan(out.unit[0]))
    assert out.constant.tolist() == [True, False]
    assert np.isnan(out.low[0]) and np.isnan(out.high[0])


def test_nan_pixels_stay_nan_and_do_not_affect_range() -> None:
    out = normalize(np.array([[np.nan, 0.0, 4.0]], dtype=np.float32))
    assert np.isnan(out.unit[0, 0])
    np.testing.assert_allclose(out.unit[0, 1:], [0.0, 1.0])


def test_infinities_map_to_ends_and_range_uses_finite_values() -> None:
    out = normalize(np.array([[np.inf, -np.inf, 1.0, 3.0]], dtype=np.float32))
    np.testing.assert_allclose(out.unit, [[1.0, 0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(out.low, [1.0])
    np.testing.assert_array_equal(out.high, [3.0])


def test_infinities_in_constant_map_still_map_to_ends() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = normalize(np.array([[np.inf, -np.inf, 2.0, 2.0]], dtype=np.float32))
    np.testing.assert_array_equal(out.unit, [[1.0, 0.0, 0.0, 0.0]])


def test_shared_uses_one_range_for_all_maps() -> None:
    values = np.array([[0.0, 1.0], [0.0, 4.0]], dtype=np.float32)
    per_map = normalize(values)
    shared = normalize(values, shared=True)
    np.testing.assert_allclose(per_map.unit, [[0, 1], [0, 1]])
    np.testing.assert_allclose(shared.unit, [[0, 0.25], [0, 1]])
    np.testing.assert_array_equal(shared.high, [4, 4])


def test_percentile_clips_outliers() -> None:
    values = np.concatenate([np.linspace(0, 1, 999), [1000.0]]).astype(np.float32)[None]
    out = normalize(values, scale="percentile", percentiles=(0.0, 99.0))
    assert out.high[0] < 2.0
    assert out.unit[0, -1] == 1.0
    assert out.unit[0, 500] > 0.4  # the bulk is not squashed to 0 by the outlier


def test_percentile_is_symmetric_about_zero_when_data_has_negatives() -> None:
    values = np.linspace(-1, 3, 401, dtype=np.float32)[None]
    out = normalize(values, scale="percentile", percentiles=(0.0, 100.0))
    assert out.low[0] == pytest.approx(-3.0) and out.high[0] == pytest.approx(3.0)
    assert out.unit[0, 100] == pytest.approx(0.5)  # value 0


def test_percentile_matches_numpy_with_nan_present() -> None:
    rng = np.random.default_rng(0)
    values = rng.random((3, 200)).astype(np.float32)
    values[1, :50] = np.nan
    out = normalize(values, scale="percentile", percentiles=(5.0, 95.0))
    expected = np.nanpercentile(values.astype(np.float64), [5.0, 95.0], axis=1)
    np.testing.assert_allclose(out.low, expected[0], rtol=1e-6)
    np.testing.assert_allclose(out.high, expected[1], rtol=1e-6)


def test_unknown_scale_names_the_options() -> None:
    with pytest.raises(ValueError, match="'minmax', 'symmetric', 'percentile'"):
        normalize(np.zeros((1, 2)), scale="zscore")


def test_bad_percentiles_are_rejected() -> None:
    with pytest.raises(ValueError, match="0 <= lo < hi <= 100"):
        normalize(np.zeros((1, 2)), scale="percentile", percentiles=(90, 10))


def test_input_is_not_modified() -> None:
    values = np.array([[1.0, 2.0, np.inf]], dtype=np.float32)
    before = values.copy()
    normalize(values)
    np.testing.assert_array_equal(values, before)


def test_symmetric_zero_is_exactly_half_for_any_limit() -> None:
    rng = np.random.default_rng(5)
    values = (rng.standard_normal((2000, 6)) * rng.random((2000, 1)) * 1e3).astype(np.float32)
    values[:, 0] = 0.0
    assert np.all(normalize(values, scale="symmetric").unit[:, 0] == 0.5)


def test_narrow_range_far_from_zero_keeps_precision() -> None:
    values = np.array([[1000.0, 1000.001, 1000.0005]], dtype=np.float32)
    np.testing.assert_allclose(normalize(values).unit, [[0.0, 1.0, 0.5]], atol=0.02)


def test_nonzero_constant_map_symmetric_keeps_its_sign() -> None:
    out = normalize(np.array([[2.0, 2.0], [-2.0, -2.0]], dtype=np.float32), scale="symmetric")
    np.testing.assert_array_equal(out.unit, [[1.0, 1.0], [0.0, 0.0]])
    assert out.constant.tolist() == [True, True]
