"""Weight and activation health numbers (numpy only, vectorised, NaN/Inf-aware).

Definitions (also in ``docs/report-and-serve.md``):

* **Filter L2 norm**: ``sqrt(sum(w**2))`` over the finite weights of one output filter
  (``weights[o]``, all its input channels and taps).
* **Dead filter**: a filter whose L2 norm is exactly 0, or below ``dead_rel_tol`` (default
  ``1e-3``) times the *median* filter norm of its layer. Relative to the median, so the rule does
  not depend on the layer's scale; a layer whose median norm is 0 reports its all-zero filters.
* **Zero fraction**: fraction of activation values that are exactly ``0.0`` (after a ReLU, the
  units that are off for this input).
* **Dead channel**: a channel that is exactly 0 at every position for this input.
* **Saturation**, one rule per layer, chosen from the layer's type and reported with the numbers:

  - ``"bounds"``: bounded activations (:data:`BOUNDED_ACTIVATIONS`: Sigmoid, Tanh, Hardtanh,
    Hardsigmoid, Softsign, ReLU6 ...): fraction of values within ``1e-3 * (high - low)`` of a bound
    where the gradient vanishes: both bounds for squashing functions, the upper bound (6) only for
    ReLU6 (its zeros are the zero fraction).
  - ``"6sigma"``: every other layer: fraction of finite values farther than ``6`` standard
    deviations from the layer's mean for this input (an outlier/explosion indicator; about 2e-9 for
    Gaussian values).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "BOUNDED_ACTIVATIONS",
    "DEAD_FILTER_REL_TOL",
    "SATURATION_SIGMAS",
    "BOUND_TOL",
    "WeightHealth",
    "ActivationHealth",
    "weight_health",
    "activation_health",
    "activation_bounds",
    "channel_stats",
    "filter_norms",
    "dead_filters",
]

DEAD_FILTER_REL_TOL = 1e-3
"""A filter is dead when its L2 norm is < this times the median filter norm of its layer (or 0)."""

SATURATION_SIGMAS = 6.0
"""Unbounded layers: values beyond mean +- this many standard deviations count as saturated."""

BOUND_TOL = 1e-3
"""Bounded activations: values within this fraction of the output range of a bound are saturated."""

BOUNDED_ACTIVATIONS: dict[str, tuple[float, float, bool]] = {
    # type name (lower-cased) -> (low, high, check the low bound too)
    "sigmoid": (0.0, 1.0, True),
    "tanh": (-1.0, 1.0, True),
    "hardtanh": (-1.0, 1.0, True),
    "hardsigmoid": (0.0, 1.0, True),
    "hard_sigmoid": (0.0, 1.0, True),
    "softsign": (-1.0, 1.0, True),
    "relu6": (0.0, 6.0, False),
}
"""Output ranges of bounded activation types (torch class names and Keras/ONNX op names, lower-cased)."""


def activation_bounds(type_name: str | None) -> tuple[float, float, bool] | None:
    """``(low, high, check_low)`` for a bounded activation type name (``"Sigmoid"``, ``"ReLU6"``...), else None."""
    if not type_name:
        return None
    return BOUNDED_ACTIVATIONS.get(type_name.strip().lower())


def _finite_float64(values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``values`` as float64 and its finite mask (None when everything is finite)."""
    arr = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(arr)
    return arr, None if bool(finite.all()) else finite


def filter_norms(weights: np.ndarray) -> np.ndarray:
    """L2 norm of each output filter.

    Args:
        weights: ``(out, in/groups, *k)`` real array (canonical kernel layout).

    Returns:
        ``(out,)`` float64; non-finite weights are left out of the sum.
    """
    w = np.asarray(weights)
    if w.ndim < 2 or w.shape[0] == 0:
        raise ValueError(f"weights must be (out, in/groups, *k) with out >= 1, got shape {w.shape}")
    flat, finite = _finite_float64(w.reshape(w.shape[0], -1))
    if finite is not None:
        flat = np.where(finite, flat, 0.0)
    return np.sqrt(np.einsum("ij,ij->i", flat, flat))


def dead_filters(norms: np.ndarray, rel_tol: float = DEAD_FILTER_REL_TOL) -> tuple[np.ndarray, float]:
    """Indices of dead filters and the threshold used (see the module docstring).

    Args:
        norms: ``(out,)`` filter L2 norms.
        rel_tol: fraction of the median norm below which a filter counts as dead.

    Returns:
        ``(indices int64, threshold)``: filters with ``norm == 0`` or ``norm < rel_tol * median``.
    """
    if rel_tol < 0:
        raise ValueError(f"dead_rel_tol must be >= 0, got {rel_tol}")
    norms = np.asarray(norms, dtype=np.float64)
    threshold = float(rel_tol * np.median(norms)) if norms.size else 0.0
    dead = (norms == 0.0) | (norms < threshold)
    return np.flatnonzero(dead).astype(np.int64), threshold


def _histogram(flat: np.ndarray, finite: np.ndarray | None, bins: int) -> tuple[np.ndarray, np.ndarray]:
    values = flat if finite is None else flat[finite]
    if values.size == 0:
        return np.zeros(bins, dtype=np.int64), np.linspace(0.0, 1.0, bins + 1)
    low, high = float(values.min()), float(values.max())
    if low == high:
        low, high = low - 0.5, high + 0.5
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    return counts.astype(np.int64), edges


@dataclass(frozen=True, eq=False)
class WeightHealth:
    """Health numbers of one convolution layer's weights.

    Attributes:
        layer: qualified layer name.
        shape: weight shape ``(out, in/groups, *k)``.
        count: number of weights.
        mean / std / min / max: over the finite weights (None if there are none).
        nan / inf: counts of non-finite weights.
        filter_l2: ``(out,)`` float64 L2 norm per output filter.
        dead: ``(n_dead,)`` int64 indices of dead filters; ``dead_threshold`` the norm limit used.
        hist_counts / hist_edges: ``(bins,)`` int64 counts and ``(bins + 1,)`` float64 edges of the
            finite weights.
    """

    layer: str
    shape: tuple[int, ...]
    count: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    nan: int
    inf: int
    filter_l2: np.ndarray = field(repr=False)
    dead: np.ndarray
    dead_threshold: float
    dead_rel_tol: float
    hist_counts: np.ndarray = field(repr=False)
    hist_edges: np.ndarray = field(repr=False)

    @property
    def dead_count(self) -> int:
        return int(self.dead.size)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists of floats/ints, no NaN)."""
        return {
            "layer": self.layer,
            "shape": list(self.shape),
            "count": self.count,
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
            "nan": self.nan,
            "inf": self.inf,
            "filter_l2": [float(v) for v in self.filter_l2],
            "dead_filters": [int(i) for i in self.dead],
            "dead_count": self.dead_count,
            "dead_threshold": self.dead_threshold,
            "dead_rel_tol": self.dead_rel_tol,
            "histogram": {"counts": [int(c) for c in self.hist_counts], "edges": [float(e) for e in self.hist_edges]},
        }


def weight_health(
    weights: np.ndarray, *, layer: str = "", bins: int = 32, dead_rel_tol: float = DEAD_FILTER_REL_TOL
) -> WeightHealth:
    """Histogram, per-filter L2 norms, dead filters, mean and std of one layer's weights.

    Args:
        weights: ``(out, in/groups, *k)`` real array (``KernelBank.weights``).
        layer: name recorded in the result.
        bins: histogram bins over ``[min, max]`` of the finite weights.
        dead_rel_tol: see :func:`dead_filters`.
    """
    if bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins}")
    w = np.asarray(weights)
    norms = filter_norms(w)
    flat, finite = _finite_float64(w.reshape(-1))
    values = flat if finite is None else flat[finite]
    nan = int(np.isnan(flat).sum()) if finite is not None else 0
    inf = int(np.isinf(flat).sum()) if finite is not None else 0
    dead, threshold = dead_filters(norms, dead_rel_tol)
    counts, edges = _histogram(flat, finite, bins)
    has = values.size > 0
    return WeightHealth(
        layer=layer,
        shape=tuple(int(s) for s in w.shape),
        count=int(w.size),
        mean=float(values.mean()) if has else None,
        std=float(values.std()) if has else None,
        min=float(values.min()) if has else None,
        max=float(values.max()) if has else None,
        nan=nan,
        inf=inf,
        filter_l2=norms,
        dead=dead,
        dead_threshold=threshold,
        dead_rel_tol=float(dead_rel_tol),
        hist_counts=counts,
        hist_edges=edges,
    )


@dataclass(frozen=True, eq=False)
class ActivationHealth:
    """Health numbers of one layer's activation for one input sample.

    Attributes:
        layer: qualified layer name.
        shape: ``(C, *spatial)`` of the sample.
        zero_fraction: fraction of values exactly 0.
        dead_channels: ``(n,)`` int64 indices of channels that are exactly 0 everywhere.
        saturation: fraction of saturated values under ``saturation_rule`` (``"bounds"`` or ``"6sigma"``).
        bounds: ``(low, high)`` used by the ``"bounds"`` rule, else None.
        mean / std / min / max: over finite values (None if none); nan / inf: counts.
    """

    layer: str
    shape: tuple[int, ...]
    zero_fraction: float
    dead_channels: np.ndarray
    saturation: float
    saturation_rule: str
    bounds: tuple[float, float] | None
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    nan: int
    inf: int

    @property
    def channels(self) -> int:
        return int(self.shape[0])

    @property
    def dead_count(self) -> int:
        return int(self.dead_channels.size)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "shape": list(self.shape),
            "zero_fraction": self.zero_fraction,
            "dead_channels": [int(i) for i in self.dead_channels],
            "dead_count": self.dead_count,
            "saturation": self.saturation,
            "saturation_rule": self.saturation_rule,
            "bounds": list(self.bounds) if self.bounds is not None else None,
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
            "nan": self.nan,
            "inf": self.inf,
        }


def activation_health(
    maps: np.ndarray,
    *,
    layer: str = "",
    type_name: str | None = None,
    bounds: tuple[float, float, bool] | None = None,
    sigmas: float = SATURATION_SIGMAS,
) -> ActivationHealth:
    """Zero fraction, dead channels and saturation of one sample's activation.

    Args:
        maps: ``(C, *spatial)`` real array (one sample of an ``(N, C, *spatial)`` activation).
        layer: name recorded in the result.
        type_name: the layer's framework type (``"ReLU6"``, ``"Sigmoid"``); picks the ``"bounds"``
            saturation rule for bounded activations (:func:`activation_bounds`).
        bounds: explicit ``(low, high, check_low)`` instead of looking ``type_name`` up.
        sigmas: threshold of the ``"6sigma"`` rule.
    """
    arr = np.asarray(maps)
    if arr.ndim < 1 or arr.shape[0] == 0:
        raise ValueError(f"maps must be (C, *spatial) with C >= 1, got shape {arr.shape}")
    channels = arr.shape[0]
    flat = arr.reshape(channels, -1)
    total = flat.size
    zero = flat == 0
    zero_fraction = float(zero.sum() / total) if total else 0.0
    dead = np.flatnonzero(zero.all(axis=1)).astype(np.int64) if flat.shape[1] else np.zeros(0, dtype=np.int64)

    values, finite = _finite_float64(flat.reshape(-1))
    nan = int(np.isnan(values).sum()) if finite is not None else 0
    inf = int(np.isinf(values).sum()) if finite is not None else 0
    good = values if finite is None else values[finite]
    has = good.size > 0
    mean = float(good.mean()) if has else None
    std = float(good.std()) if has else None

    rule_bounds = bounds if bounds is not None else activation_bounds(type_name)
    if rule_bounds is not None:
        low, high, check_low = (float(rule_bounds[0]), float(rule_bounds[1]), bool(rule_bounds[2]))
        tol = BOUND_TOL * (high - low)
        hit = good >= high - tol
        if check_low:
            hit |= good <= low + tol
        saturation = float(hit.sum() / total) if total else 0.0
        rule = "bounds"
        used_bounds: tuple[float, float] | None = (low, high)
    else:
        rule = "6sigma"
        used_bounds = None
        if has and std is not None and std > 0:
            saturation = float((np.abs(good - mean) > sigmas * std).sum() / total)
        else:
            saturation = 0.0
    return ActivationHealth(
        layer=layer,
        shape=tuple(int(s) for s in arr.shape),
        zero_fraction=zero_fraction,
        dead_channels=dead,
        saturation=saturation,
        saturation_rule=rule,
        bounds=used_bounds,
        mean=mean,
        std=std,
        min=float(good.min()) if has else None,
        max=float(good.max()) if has else None,
        nan=nan,
        inf=inf,
    )


def channel_stats(maps: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel summary of ``(C, *spatial)`` maps, over finite values.

    Returns:
        ``{"min", "max", "mean", "std", "zero_fraction"}`` -> ``(C,)`` float64 arrays (NaN where a
        channel has no finite value).
    """
    arr = np.asarray(maps)
    if arr.ndim < 1 or arr.shape[0] == 0:
        raise ValueError(f"maps must be (C, *spatial) with C >= 1, got shape {arr.shape}")
    flat, finite = _finite_float64(arr.reshape(arr.shape[0], -1))
    size = flat.shape[1]
    zero_fraction = (flat == 0).sum(axis=1) / max(size, 1)
    if finite is None and size:
        return {
            "min": flat.min(axis=1),
            "max": flat.max(axis=1),
            "mean": flat.mean(axis=1),
            "std": flat.std(axis=1),
            "zero_fraction": zero_fraction.astype(np.float64),
        }
    mask = finite if finite is not None else np.zeros_like(flat, dtype=bool)
    count = mask.sum(axis=1)
    safe = np.where(mask, flat, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = safe.sum(axis=1) / count
        var = (np.where(mask, flat - mean[:, None], 0.0) ** 2).sum(axis=1) / count
        lo = np.where(mask, flat, np.inf).min(axis=1) if size else np.full(arr.shape[0], np.inf)
        hi = np.where(mask, flat, -np.inf).max(axis=1) if size else np.full(arr.shape[0], -np.inf)
    empty = count == 0
    lo = np.where(empty, np.nan, lo)
    hi = np.where(empty, np.nan, hi)
    return {"min": lo, "max": hi, "mean": mean, "std": np.sqrt(var), "zero_fraction": zero_fraction.astype(np.float64)}
