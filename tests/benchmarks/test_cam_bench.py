"""Smoke test of benchmarks/cam_bench.py at the tiny size (timings are not checked: not a timed test)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from benchmarks import cam_bench  # noqa: E402


def test_cam_benchmark_runs_at_tiny_size() -> None:
    result = cam_bench.gradient_cams("tiny", 1)
    assert result["levels_layers"] == 13 and result["maps"] == 65
    assert result["bare_forward_backward_s"] > 0 and result["all_gradient_cams_s"] > 0
