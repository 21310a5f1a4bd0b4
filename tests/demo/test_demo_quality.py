"""Kernel structure score and Dice: behaviour on known inputs."""

from __future__ import annotations

import numpy as np
import pytest

from convscope.demo.quality import kernel_structure_score, mean_dice, random_kernel_structure_expectation


def test_iid_kernels_score_near_the_random_expectation() -> None:
    w = np.random.default_rng(0).uniform(-1, 1, (64, 3, 5, 5))
    assert kernel_structure_score(w) == pytest.approx(random_kernel_structure_expectation(5, 5), abs=0.03)


def test_linear_ramp_scores_three_quarters() -> None:
    ramp = np.tile(np.arange(5.0), (5, 1))
    assert kernel_structure_score(ramp) == pytest.approx(0.75)


def test_checkerboard_scores_minus_one() -> None:
    yy, xx = np.mgrid[0:5, 0:5]
    assert kernel_structure_score((-1.0) ** (xx + yy)) == pytest.approx(-1.0)


def test_score_is_scale_invariant() -> None:
    w = np.random.default_rng(1).normal(size=(4, 2, 3, 3))
    assert kernel_structure_score(w * 1e-3) == pytest.approx(kernel_structure_score(w))


def test_constant_kernels_score_zero() -> None:
    assert kernel_structure_score(np.ones((2, 3, 5, 5))) == 0.0


def test_one_by_one_kernels_are_rejected() -> None:
    with pytest.raises(ValueError, match="2x2 or larger"):
        kernel_structure_score(np.ones((8, 4, 1, 1)))


def test_mean_dice_perfect_half_and_empty() -> None:
    t = np.zeros((2, 1, 4, 4), bool)
    t[:, :, :2] = True
    p = t.copy()
    p[1] = False
    p[1, :, 0] = True  # half of image 1's target, nothing else -> Dice 2*4/(4+8)
    assert mean_dice(p, t) == pytest.approx((1.0 + 8 / 12) / 2)
    assert mean_dice(np.zeros((1, 3)), np.zeros((1, 3))) == pytest.approx(1.0)


def test_mean_dice_shape_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError, match="one shape"):
        mean_dice(np.zeros((2, 4)), np.zeros((2, 5)))
