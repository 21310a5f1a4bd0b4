"""Weight and activation health numbers (convscope.core.health)."""

from __future__ import annotations

import numpy as np
import pytest

from convscope.core.health import (
    activation_bounds,
    activation_health,
    channel_stats,
    dead_filters,
    filter_norms,
    weight_health,
)


def test_filter_norms_are_l2_over_each_filter() -> None:
    w = np.zeros((3, 2, 2, 2), dtype=np.float32)
    w[0, 0, 0, 0] = 3.0
    w[0, 1, 1, 1] = 4.0
    w[2] = 1.0
    np.testing.assert_allclose(filter_norms(w), [5.0, 0.0, np.sqrt(8.0)])


def test_filter_norms_skip_non_finite_weights() -> None:
    w = np.array([[[np.nan, 3.0, 4.0]], [[np.inf, 0.0, 1.0]]], dtype=np.float32)
    np.testing.assert_allclose(filter_norms(w), [5.0, 1.0])


def test_dead_filters_relative_to_median() -> None:
    norms = np.array([1.0, 2.0, 1e-4, 0.0, 1.5])
    dead, threshold = dead_filters(norms, rel_tol=1e-3)
    assert threshold == pytest.approx(1e-3)  # median of the five norms is 1.0
    assert dead.tolist() == [2, 3]


def test_dead_filters_with_zero_median_reports_zero_filters() -> None:
    dead, threshold = dead_filters(np.array([0.0, 0.0, 0.0, 2.0]))
    assert threshold == 0.0
    assert dead.tolist() == [0, 1, 2]


def test_weight_health_numbers() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(0.0, 0.1, (6, 3, 3, 3)).astype(np.float32)
    w[4] = 0.0
    health = weight_health(w, layer="conv", bins=10)
    assert health.dead.tolist() == [4]
    assert health.mean == pytest.approx(float(w.astype(np.float64).mean()))
    assert health.std == pytest.approx(float(w.astype(np.float64).std()))
    assert int(health.hist_counts.sum()) == w.size
    assert health.hist_edges.shape == (11,)
    d = health.to_dict()
    assert d["dead_count"] == 1 and d["shape"] == [6, 3, 3, 3] and len(d["filter_l2"]) == 6


def test_weight_health_of_constant_weights_has_a_histogram() -> None:
    health = weight_health(np.full((2, 1, 3, 3), 0.5, dtype=np.float32), bins=4)
    assert int(health.hist_counts.sum()) == 18
    assert health.std == 0.0


def test_activation_health_zero_fraction_and_dead_channels() -> None:
    maps = np.ones((3, 4, 4), dtype=np.float32)
    maps[1] = 0.0
    maps[2, :2] = 0.0
    health = activation_health(maps, layer="relu", type_name="ReLU")
    assert health.zero_fraction == pytest.approx((16 + 8) / 48)
    assert health.dead_channels.tolist() == [1]
    assert health.saturation_rule == "6sigma"


def test_activation_saturation_for_bounded_activations_counts_both_bounds() -> None:
    values = np.array([[0.0, 0.0001, 0.5, 0.9999, 1.0, 0.3, 0.7, 0.2]], dtype=np.float32)
    health = activation_health(values, type_name="Sigmoid")
    assert health.saturation_rule == "bounds"
    assert health.bounds == (0.0, 1.0)
    assert health.saturation == pytest.approx(4 / 8)


def test_relu6_saturation_counts_only_the_upper_bound() -> None:
    values = np.array([[0.0, 0.0, 6.0, 3.0]], dtype=np.float32)
    health = activation_health(values, type_name="ReLU6")
    assert health.saturation == pytest.approx(1 / 4)
    assert health.zero_fraction == pytest.approx(2 / 4)


def test_unbounded_saturation_is_the_six_sigma_tail() -> None:
    values = np.zeros((1, 10_000), dtype=np.float32)
    values[0, :5] = 1000.0
    health = activation_health(values, type_name="Conv2d")
    assert health.saturation == pytest.approx(5 / 10_000)


def test_activation_health_ignores_nan_in_statistics() -> None:
    maps = np.array([[[1.0, np.nan], [3.0, np.inf]]], dtype=np.float32)
    health = activation_health(maps)
    assert health.mean == pytest.approx(2.0)
    assert (health.nan, health.inf) == (1, 1)


def test_activation_bounds_lookup_is_case_insensitive() -> None:
    assert activation_bounds("Tanh") == (-1.0, 1.0, True)
    assert activation_bounds("relu") is None
    assert activation_bounds(None) is None


def test_channel_stats_per_channel() -> None:
    maps = np.array([[[0.0, 2.0]], [[np.nan, 4.0]]], dtype=np.float32)
    stats = channel_stats(maps)
    np.testing.assert_allclose(stats["mean"], [1.0, 4.0])
    np.testing.assert_allclose(stats["min"], [0.0, 4.0])
    np.testing.assert_allclose(stats["zero_fraction"], [0.5, 0.0])


def test_health_rejects_empty_input() -> None:
    with pytest.raises(ValueError, match="C >= 1"):
        activation_health(np.zeros((0, 3)))
