"""Quality measures for learned convolution kernels (numpy only)."""

from __future__ import annotations

import numpy as np

from ..errors import ConvscopeError

__all__ = ["kernel_structure_score", "random_kernel_structure_expectation", "mean_dice"]


def kernel_structure_score(weights: np.ndarray) -> float:
    """Spatial structure of a bank of 2D kernels: pooled lag-1 spatial autocorrelation (Moran's I).

    Every 2D slice ``weights[..., :, :]`` (one input channel of one filter) has its own mean
    removed (so a slice that only weighs a colour or intensity uniformly contributes nothing), and
    then

    ``score = (N / P) * sum_slices sum_{(i, j) adjacent} z_i z_j  /  sum_slices sum_i z_i**2``

    where ``z`` are the mean-removed values, adjacency is the 4-neighbourhood (horizontal and
    vertical pixel pairs), ``N = kh * kw`` and ``P = kh * (kw - 1) + (kh - 1) * kw`` pairs per
    slice. For one slice this is Moran's I; pooling numerator and denominator over slices weights
    each slice by its energy, so the slices a network actually uses dominate and near-zero
    (unused, decayed) slices cannot add noise.

    Why this measure: a freshly initialised layer (torch's default ``kaiming_uniform_``: i.i.d.
    entries) has no spatial correlation, so its expected score is ``-1 / (N - 1)`` (about -0.04
    for 5x5) with a small spread across seeds. The filters a CNN learns on natural-looking images
    are smooth: blobs, colour-opponent spots, oriented edges and bars, gradients -- neighbouring
    taps have similar values, giving clearly positive scores (a linear ramp scores 0.75, a Gaussian blob
    about 0.6, a step edge about 0.8; high-frequency checkerboards, which learned first layers almost never contain,
    score -1). The measure is scale-invariant (weight decay or BatchNorm rescaling does not change
    it) and needs only the weights.

    Args:
        weights: ``(..., kh, kw)`` float array, e.g. canonical ``(out, in_per_group, kh, kw)``
            kernels; at least 2 dims, with ``kh * kw >= 3`` and ``kh, kw`` not both 1.

    Returns:
        Score in about ``[-1, 1]``; 0.0 when every slice is constant.

    Raises:
        ConvscopeError: fewer than 2 dims, or kernels too small to have spatial neighbours
            (e.g. 1x1 convolutions).
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim < 2:
        raise ConvscopeError(f"weights must be a (..., kh, kw) array of 2D kernels, got shape {w.shape}")
    kh, kw = w.shape[-2:]
    pairs = kh * (kw - 1) + (kh - 1) * kw
    if pairs == 0 or kh * kw < 3:
        raise ConvscopeError(
            f"kernels of spatial size {kh}x{kw} have no spatial structure to measure; pass a layer with kernels of 2x2 or larger"
        )
    z = w.reshape(-1, kh, kw)
    z = z - z.mean(axis=(1, 2), keepdims=True)
    num = float((z[:, :, 1:] * z[:, :, :-1]).sum() + (z[:, 1:, :] * z[:, :-1, :]).sum())
    den = float((z * z).sum())
    if den <= 0.0:
        return 0.0
    return (kh * kw / pairs) * num / den


def random_kernel_structure_expectation(kh: int, kw: int) -> float:
    """Expected :func:`kernel_structure_score` of i.i.d. random ``kh x kw`` kernels: ``-1 / (kh*kw - 1)``."""
    return -1.0 / (kh * kw - 1)


def mean_dice(pred: np.ndarray, target: np.ndarray, *, eps: float = 1e-6) -> float:
    """Mean over images of the Dice coefficient of two binary masks.

    Args:
        pred: ``(N, ...)`` predicted mask, bool or {0, 1} numbers (threshold logits first,
            e.g. ``logits > 0``).
        target: ``(N, ...)`` ground-truth mask of the same shape, bool or {0, 1} numbers.
        eps: added to numerator and denominator; two empty masks score 1.0.

    Returns:
        Mean of ``(2 |P & T| + eps) / (|P| + |T| + eps)`` over the ``N`` images.

    Raises:
        ConvscopeError: shapes differ or there are no images.
    """
    p = np.asarray(pred).astype(bool)
    t = np.asarray(target).astype(bool)
    if p.shape != t.shape or p.ndim < 1 or p.shape[0] == 0:
        raise ConvscopeError(f"pred and target must be (N, ...) masks of one shape with N >= 1, got {p.shape} and {t.shape}")
    p = p.reshape(p.shape[0], -1)
    t = t.reshape(t.shape[0], -1)
    inter = (p & t).sum(axis=1)
    dice = (2.0 * inter + eps) / (p.sum(axis=1) + t.sum(axis=1) + eps)
    return float(dice.mean())
