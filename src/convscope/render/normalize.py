"""Scale many maps to ``[0, 1]`` at once (per map or shared), robust to NaN, Inf and constants."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConvscopeError

__all__ = ["SCALES", "Normalized", "normalize"]

SCALES: tuple[str, ...] = ("minmax", "symmetric", "percentile")


@dataclass(frozen=True, eq=False)
class Normalized:
    """Maps scaled to ``[0, 1]``.

    Attributes:
        unit: float32, same shape as the input ``(N, ...)``; values in ``[0, 1]``, NaN kept as NaN,
            ``+Inf`` -> 1 and ``-Inf`` -> 0.
        low: ``(N,)`` float64, the value mapped to 0 for each map (NaN when a map has no finite value).
        high: ``(N,)`` float64, the value mapped to 1 for each map.
        constant: ``(N,)`` bool, True where the (finite values of the) normalisation group do not
            vary, or it has no finite value at all.
    """

    unit: np.ndarray
    low: np.ndarray
    high: np.ndarray
    constant: np.ndarray


@dataclass(frozen=True, eq=False)
class _Stats:
    """What the renderers also need from a normalisation pass (no second pass over the data)."""

    data_min: float | None  # finite min of all maps, None if nothing is finite
    data_max: float | None
    nan_count: int
    inf_count: int


def normalize(
    values: np.ndarray,
    *,
    scale: str = "minmax",
    shared: bool = False,
    percentiles: Sequence[float] = (1.0, 99.0),
) -> Normalized:
    """Scale ``N`` maps to ``[0, 1]``, each on its own range unless ``shared``.

    Ranges come from finite values only; NaN stays NaN, ``+Inf`` -> 1 and ``-Inf`` -> 0.

    Scales:
        ``"minmax"``: ``low, high = min, max``.
        ``"symmetric"``: ``limit = max |x|``, ``low, high = -limit, +limit`` so 0 -> 0.5.
        ``"percentile"``: robust to outliers. If the (finite) data has negative values the range is
            symmetric about 0: ``limit = max(|p_lo|, |p_hi|)`` (so 0 -> 0.5); otherwise
            ``low, high = p_lo, p_hi``. Values outside are clipped. If the percentiles coincide (e.g.
            a mostly-zero map) the full finite min/max (or ``max |x|``) is used instead.

    A map whose range is empty never divides by zero: it maps to 0.5 for ``"symmetric"`` (and for
    ``"percentile"`` with negatives) and to 0.0 otherwise, and is flagged ``constant``. A non-zero
    constant map under ``"symmetric"`` keeps its sign (``+c`` -> 1, ``-c`` -> 0, limit ``|c|``); it
    is still flagged ``constant``. An all-NaN map stays NaN.

    Args:
        values: ``(N, ...)`` real array (any float or int dtype): ``N`` maps of any shape.
        scale: ``"minmax"``, ``"symmetric"`` or ``"percentile"``.
        shared: one range for all ``N`` maps instead of one per map.
        percentiles: ``(lo, hi)`` percentiles for ``scale="percentile"``, ``0 <= lo < hi <= 100``.

    Returns:
        :class:`Normalized` with ``unit`` float32 of ``values.shape``.

    Raises:
        ConvscopeError: (a ``ValueError``) for an unknown ``scale``, bad ``percentiles`` or a 0-d input.
    """
    arr = np.asarray(values)
    if arr.ndim == 0:
        raise ConvscopeError("normalize needs an (N, ...) array of N maps, got a scalar; wrap it as np.array([x])")
    work = np.array(arr, dtype=np.float32, copy=True, order="C")
    result, _ = _normalize_owned(work, scale=scale, shared=shared, percentiles=percentiles)
    return result


def _check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise ConvscopeError(f"unknown scale {scale!r}; use one of {', '.join(repr(s) for s in SCALES)}")


def _check_percentiles(percentiles: Sequence[float]) -> tuple[float, float]:
    try:
        lo, hi = (float(p) for p in percentiles)
    except (TypeError, ValueError):
        raise ConvscopeError(f"percentiles must be two numbers (lo, hi) such as (1.0, 99.0), got {percentiles!r}") from None
    if not 0.0 <= lo < hi <= 100.0:
        raise ConvscopeError(f"percentiles must satisfy 0 <= lo < hi <= 100 (e.g. (1.0, 99.0)), got {percentiles!r}")
    return lo, hi


def _row_percentiles(flat: np.ndarray, finite: np.ndarray | None, qs: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Per-row linear-interpolated percentiles of the finite values of ``flat`` ``(R, M)``; NaN for empty rows."""
    if finite is None:  # every value finite: numpy's partition-based path
        lo, hi = np.percentile(flat, qs, axis=1)
        return lo.astype(np.float64), hi.astype(np.float64)
    masked = np.where(finite, flat, np.float32(np.nan))
    masked.sort(axis=1)  # NaN sorts last
    count = finite.sum(axis=1)
    out = []
    rows = np.arange(flat.shape[0])
    for q in qs:  # two percentiles, vectorised over all rows
        pos = np.maximum(count - 1, 0) * (q / 100.0)
        below = np.floor(pos).astype(np.intp)
        above = np.minimum(below + 1, np.maximum(count - 1, 0))
        frac = pos - below
        v0 = masked[rows, below].astype(np.float64)
        v1 = masked[rows, above].astype(np.float64)
        value = v0 + (v1 - v0) * frac
        value[count == 0] = np.nan
        out.append(value)
    return out[0], out[1]


def _normalize_owned(
    work: np.ndarray,
    *,
    scale: str,
    shared: bool,
    percentiles: Sequence[float] = (1.0, 99.0),
) -> tuple[Normalized, _Stats]:
    """Normalise ``work`` (an owned C-contiguous float32 ``(N, ...)`` array) in place."""
    _check_scale(scale)
    qs = _check_percentiles(percentiles) if scale == "percentile" else (1.0, 99.0)
    count = work.shape[0]
    if work.size == 0:
        nothing = np.full(count, np.nan)
        return (
            Normalized(unit=work, low=nothing, high=nothing.copy(), constant=np.ones(count, dtype=bool)),
            _Stats(data_min=None, data_max=None, nan_count=0, inf_count=0),
        )
    groups = 1 if shared else count
    flat = work.reshape(groups, -1)

    finite = np.isfinite(flat)
    all_finite = bool(finite.all())
    if all_finite:
        nan_count = inf_count = 0
        gmin = flat.min(axis=1).astype(np.float64)
        gmax = flat.max(axis=1).astype(np.float64)
        finite_mask = None
    else:
        nan_mask = np.isnan(flat)
        nan_count = int(nan_mask.sum())
        inf_count = int(finite.size - finite.sum()) - nan_count
        gmin = np.where(finite, flat, np.float32(np.inf)).min(axis=1).astype(np.float64)
        gmax = np.where(finite, flat, np.float32(-np.inf)).max(axis=1).astype(np.float64)
        empty = ~finite.any(axis=1)
        gmin[empty] = np.nan
        gmax[empty] = np.nan
        finite_mask = finite

    has_values = ~np.isnan(gmin)
    constant = ~has_values | (gmin == gmax)
    with np.errstate(invalid="ignore"):
        limit = np.maximum(np.abs(gmin), np.abs(gmax))
    centered = np.zeros(groups, dtype=bool)  # groups mapped symmetrically about 0 (0 -> 0.5)

    if scale == "minmax":
        low, high = gmin.copy(), gmax.copy()
    elif scale == "symmetric":
        low, high = -limit, limit.copy()
        centered[:] = True
    else:
        p_lo, p_hi = _row_percentiles(flat, finite_mask, qs)
        centered = has_values & (gmin < 0)
        with np.errstate(invalid="ignore"):
            plimit = np.maximum(np.abs(p_lo), np.abs(p_hi))
            plimit = np.where(plimit > 0, plimit, limit)  # percentiles collapsed to 0: use max |x|
            degenerate = ~(p_hi > p_lo)
        p_lo = np.where(degenerate, gmin, p_lo)
        p_hi = np.where(degenerate, gmax, p_hi)
        low = np.where(centered, -plimit, p_lo)
        high = np.where(centered, plimit, p_hi)

    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        span = high - low
        inv = 1.0 / np.where(span > 0, span, 1.0)
        ok = has_values & (span > 0) & np.isfinite(span) & (inv < np.finfo(np.float32).max)
        inv = np.where(ok, inv, 0.0)
        # centred groups: x * inv + 0.5 (0 lands exactly on 0.5); others: (x - low) * inv (no
        # cancellation for narrow ranges far from 0). Groups with an empty range get 0.5 / 0.0.
        shift = np.where(ok & ~centered, low, 0.0)
        fill = np.where(centered, 0.5, 0.0)

    # vectorised over all groups, in place on float32
    restore_inf = not all_finite and not bool(ok.all())
    if restore_inf:  # x * 0 would turn +-Inf into NaN in groups with an empty range
        pos_inf = flat == np.inf
        neg_inf = flat == -np.inf
    with np.errstate(invalid="ignore", over="ignore"):
        flat -= shift.astype(np.float32)[:, None]
        flat *= inv.astype(np.float32)[:, None]
        if fill.any():
            flat += fill.astype(np.float32)[:, None]
    np.clip(flat, 0.0, 1.0, out=flat)
    if restore_inf:
        flat[pos_inf] = 1.0
        flat[neg_inf] = 0.0

    if shared:
        low = np.repeat(low, count)
        high = np.repeat(high, count)
        constant = np.repeat(constant, count)
    data_min = float(np.nanmin(gmin)) if has_values.any() else None
    data_max = float(np.nanmax(gmax)) if has_values.any() else None
    return (
        Normalized(unit=work, low=low.astype(np.float64), high=high.astype(np.float64), constant=constant),
        _Stats(data_min=data_min, data_max=data_max, nan_count=nan_count, inf_count=inf_count),
    )
