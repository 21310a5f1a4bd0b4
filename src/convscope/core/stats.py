"""Mergeable per-channel statistics of layer activations over a dataset (numpy only).

A :class:`LayerStats` summarises every activation value a layer produced over a set of images,
per channel, in a state whose size depends on the channel count and ``k`` only (never on the
number of images):

* ``count``, ``mean`` and ``m2`` (sum of squared deviations) combined with the parallel update of
  Chan, Golub and LeVeque (1979): merging two states gives the statistics of the union to float64
  rounding;
* ``min``, ``max``, the number of exact zeros and of positive values (exact);
* a histogram with ``bins`` equal-width bins between edges fixed per layer from the first batch
  (stored in the state) plus one underflow and one overflow bin, so every value is counted and
  merged counts are exact;
* the top-``k`` and bottom-``k`` images by a per-image score (the channel's spatial maximum, or its
  spatial mean), each with the flat spatial index of the channel's arg-max in that image. Entries
  are totally ordered (score descending for the top, ascending for the bottom; then image id
  ascending, then position ascending), so the top-k of a union is the top-k of the shards' top-k:
  merging is exact and independent of order.

Merging states that share an image id raises :class:`DuplicateImagesError` (the same shard merged
twice would otherwise be double-counted).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import ConvscopeError
from .fused import histogram_kernel

__all__ = [
    "LayerStats",
    "ChannelStats",
    "Example",
    "DuplicateImagesError",
    "histogram_edges",
    "SCORES",
    "DEFAULT_BINS",
]

SCORES = ("max", "mean")
_CHUNK_VALUES = 1 << 18
"""float64 temporaries of :meth:`LayerStats.from_batch` hold at most about this many values."""
_HIST_LANES = 4
"""Copies of each chunk's histogram that consecutive values of a row count into in turn."""
DEFAULT_BINS = 64
ScoreKind = Literal["max", "mean"]


class DuplicateImagesError(ConvscopeError):
    """Two scan states that both contain some image were merged."""


def histogram_edges(values: np.ndarray, bins: int = DEFAULT_BINS) -> np.ndarray:
    """``bins + 1`` float64 edges spanning the finite range of ``values`` (a layer's first batch).

    The range is widened by 5% on each side (values of later batches that fall outside land in the
    underflow/overflow bins, which are counted too); a constant batch gets the range ``v +- 1``.
    """
    flat = np.asarray(values, dtype=np.float32).ravel()
    lo, hi = (float(flat.min()), float(flat.max())) if flat.size else (np.nan, np.nan)
    if not (np.isfinite(lo) and np.isfinite(hi)):  # NaN or +-inf present (or no values): the finite range
        finite = flat[np.isfinite(flat)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 1.0, hi + 1.0
    pad = 0.05 * (hi - lo)
    return np.linspace(lo - pad, hi + pad, int(bins) + 1, dtype=np.float64)


@dataclass(frozen=True)
class Example:
    """One dataset example of a channel.

    Attributes:
        image_id: ``relative/path.png@hash`` (see :mod:`convscope.io.dataset`).
        score: the channel's spatial max (or mean) on that image.
        position: spatial index ``(y, x)`` (``(z, y, x)`` for volumes) of the channel's arg-max,
            in the layer's output grid.
        crop_box: ``(y0, x0, y1, x1)`` (half-open, input pixels) of the receptive field of that
            position, once pass 2 computed it; else None.
    """

    image_id: str
    score: float
    position: tuple[int, ...]
    crop_box: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id,
            "score": float(self.score),
            "position": list(self.position),
            "crop_box": list(self.crop_box) if self.crop_box is not None else None,
        }


@dataclass(frozen=True)
class ChannelStats:
    """Summary of one channel over the dataset (a view of :class:`LayerStats`).

    Attributes:
        count: number of values (images x spatial positions).
        mean / std: population mean and standard deviation (float64 accumulation).
        min / max: extreme values.
        zero_fraction / positive_fraction: fraction of values exactly 0 / greater than 0.
        histogram: ``bins + 2`` counts: underflow, the bins, overflow.
        edges: ``bins + 1`` edges of the inner bins.
    """

    count: int
    mean: float
    std: float
    min: float
    max: float
    zero_fraction: float
    positive_fraction: float
    histogram: np.ndarray
    edges: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
            "zero_fraction": self.zero_fraction,
            "positive_fraction": self.positive_fraction,
        }


_ARRAY_FIELDS = (
    "count", "mean", "m2", "min", "max", "zeros", "positive", "hist", "edges",
    "top_score", "top_id", "top_pos", "bottom_score", "bottom_id", "bottom_pos",
)


class LayerStats:
    """Per-channel statistics of one layer (see the module docstring).

    Build one from a batch with :meth:`from_batch`, combine with :meth:`merge` (in place, exact),
    serialise with :meth:`to_arrays` / :meth:`from_arrays`.

    Attributes (all numpy, ``C`` channels, ``k`` examples kept):
        count: ``(C,)`` int64 values seen; mean, m2: ``(C,)`` float64; min, max: ``(C,)`` float64.
        zeros, positive: ``(C,)`` int64.
        hist: ``(C, bins + 2)`` int64; edges: ``(bins + 1,)`` float64.
        top_score / bottom_score: ``(C, W)`` float64 (``-inf`` / ``+inf`` in unused slots);
        top_id / bottom_id: ``(C, W)`` UTF-8 bytes (``b""`` unused; byte order = code point order); top_pos / bottom_pos: ``(C, W)`` int64
        flat spatial index of the arg-max. ``W = min(k, images seen)``: no more slots than examples.
        spatial: the layer's spatial output shape; score: ``"max"`` or ``"mean"``; k.
    """

    def __init__(self, arrays: dict[str, np.ndarray], *, spatial: tuple[int, ...], score: ScoreKind, k: int) -> None:
        for name in _ARRAY_FIELDS:
            setattr(self, name, arrays[name])
        self.spatial = tuple(int(s) for s in spatial)
        self.score = score
        self.k = int(k)

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    min: np.ndarray
    max: np.ndarray
    zeros: np.ndarray
    positive: np.ndarray
    hist: np.ndarray
    edges: np.ndarray
    top_score: np.ndarray
    top_id: np.ndarray
    top_pos: np.ndarray
    bottom_score: np.ndarray
    bottom_id: np.ndarray
    bottom_pos: np.ndarray

    @property
    def channels(self) -> int:
        return int(self.count.shape[0])

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_batch(
        cls,
        activation: np.ndarray,
        image_ids: Sequence[str],
        *,
        k: int = 16,
        score: ScoreKind = "max",
        edges: np.ndarray | None = None,
        bins: int = DEFAULT_BINS,
    ) -> LayerStats:
        """Statistics of one batch.

        Args:
            activation: ``(N, C, *spatial)`` float activation of ``N`` images (one per id).
            image_ids: ``N`` distinct image ids, in batch order.
            k: examples kept per channel at each end.
            score: ``"max"`` (the channel's spatial max) or ``"mean"``.
            edges: histogram edges to use (those of the scan's first batch); None: computed from
                this batch by :func:`histogram_edges`.
            bins: inner bin count when ``edges`` is None.
        """
        if score not in SCORES:
            raise ConvscopeError(f"score must be one of {', '.join(SCORES)}, got {score!r}")
        if k < 1:
            raise ConvscopeError(f"top-k must be at least 1, got {k}")
        act = np.asarray(activation)
        if act.ndim < 2 or act.shape[0] != len(image_ids):
            raise ConvscopeError(f"activation of shape {act.shape} does not match {len(image_ids)} image ids")
        n, c = int(act.shape[0]), int(act.shape[1])
        spatial = tuple(int(s) for s in act.shape[2:])
        flat = np.ascontiguousarray(act, dtype=np.float32).reshape(n, c, -1)  # (N, C, S)
        size = flat.shape[2]
        if edges is None:
            edges = histogram_edges(flat, bins)
        edges = np.asarray(edges, dtype=np.float64)
        nbins = edges.shape[0] - 1

        total = n * size
        count = np.full(c, total, dtype=np.int64)
        position = np.empty((n, c), dtype=np.int64)  # flat arg-max per image and channel (first occurrence)
        row_max = np.empty((n, c), dtype=np.float32)
        row_sum = np.empty((n, c), dtype=np.float32)  # each row summed on its own (float32 pairwise): batch-independent
        vmin = np.full(c, np.inf)
        m2 = np.zeros(c, dtype=np.float64)
        zeros = np.zeros(c, dtype=np.int64)
        positive = np.zeros(c, dtype=np.int64)
        hist = np.zeros((c, nbins + 2), dtype=np.int64)
        lo, hi = float(edges[0]), float(edges[-1])
        inv = np.float32(nbins / (hi - lo))
        shift = np.float32(1.0 - lo * float(inv))
        top_bin = np.float32(nbins + 1)
        # one pass over the activation, in channel chunks that stay in cache: every statistic of a chunk is
        # computed while it is there, into temporaries allocated once (no page faults per chunk)
        # (channel offsets + bins stay below 2**24: exact in float32)
        lanes = _HIST_LANES
        step = max(1, min(_CHUNK_VALUES // max(1, total), (2**24 - 1) // (lanes * (nbins + 2))))
        width = min(step, c)
        buf = np.empty((n, width, size), dtype=np.float32)
        flags = np.empty((n, width, size), dtype=np.bool_)
        flag_bytes = flags.view(np.uint8)
        # per-row counts of 0/1 bytes: uint16 is exact while a row has fewer than 2**16 values
        flag_sum = np.uint16 if size < 2**16 else np.int64
        compiled = histogram_kernel()  # numba's one-pass histogram when installed (the same counts)
        binning = _NumpyBinning(n, width, size, nbins, lanes)
        for c0 in range(0, c, step):
            c1 = min(c, c0 + step)
            w = c1 - c0
            x = flat[:, c0:c1, :]
            t, flag, fb = buf[:, :w], flags[:, :w], flag_bytes[:, :w]
            pos = np.argmax(x, axis=2)
            position[:, c0:c1] = pos
            row_max[:, c0:c1] = np.take_along_axis(x, pos[:, :, None], axis=2)[:, :, 0]
            if size:
                vmin[c0:c1] = x.min(axis=(0, 2))
            # fixed-edge histogram, bins half-open [e_i, e_i+1); 0 = underflow (< e_0), nbins + 1 = overflow
            # (>= e_last, and NaN): the bin index is float32 arithmetic on the value
            has_nan = bool(np.isnan(vmin[c0:c1]).any())
            if compiled is not None and not has_nan:
                compiled(x, inv, shift, top_bin, hist[c0:c1])
            else:
                hist[c0:c1] = binning.counts(x, t, inv, shift, top_bin, has_nan)
            np.sum(x, axis=2, out=row_sum[:, c0:c1])
            np.equal(x, 0, out=flag)
            zeros[c0:c1] = fb.sum(axis=2, dtype=flag_sum).sum(axis=0, dtype=np.int64)
            np.greater(x, 0, out=flag)
            positive[c0:c1] = fb.sum(axis=2, dtype=flag_sum).sum(axis=0, dtype=np.int64)
            # squared deviations about the float32 mean of the chunk's channels, corrected to the float64 mean
            mean_c = row_sum[:, c0:c1].astype(np.float64).sum(axis=0) / max(total, 1)
            mean32 = mean_c.astype(np.float32)
            np.subtract(x, mean32[None, :, None], out=t)
            np.square(t, out=t)
            sq = t.sum(axis=2).astype(np.float64).sum(axis=0)
            resid = (mean_c - mean32.astype(np.float64)) * total  # sum(x - mean32), from the row sums
            m2[c0:c1] = np.maximum(sq - resid * resid / max(total, 1), 0.0)
        del buf, flags, binning
        mean = row_sum.astype(np.float64).sum(axis=0) / max(total, 1)
        vmax = row_max.max(axis=0).astype(np.float64) if size else np.full(c, -np.inf)

        if score == "max":
            scores = row_max.astype(np.float64)
        else:
            scores = row_sum.astype(np.float64) / max(size, 1)
        scores = np.where(np.isnan(scores), -np.inf, scores)
        ids = np.asarray([str(i).encode("utf-8") for i in image_ids], dtype=bytes)  # 1 byte per char, sorts as str
        ids_cn = np.broadcast_to(ids[None, :], (c, n))
        kk = int(k)
        top = _select(scores.T, ids_cn, position.T, kk, descending=True)
        bottom = _select(scores.T, ids_cn, position.T, kk, descending=False)
        arrays = {
            "count": count, "mean": mean, "m2": m2, "min": vmin, "max": vmax, "zeros": zeros,
            "positive": positive, "hist": hist, "edges": edges,
            "top_score": top[0], "top_id": top[1], "top_pos": top[2],
            "bottom_score": bottom[0], "bottom_id": bottom[1], "bottom_pos": bottom[2],
        }
        return cls(arrays, spatial=spatial, score=score, k=kk)

    # -- merging ------------------------------------------------------------------------------
    def merge(self, other: LayerStats) -> LayerStats:
        """Fold ``other`` (statistics of disjoint images) into this state, in place; returns self.

        Raises:
            ConvscopeError: different channel counts, spatial shapes, scores, ``k`` or histogram edges.
        """
        if other.channels != self.channels or other.spatial != self.spatial:
            raise ConvscopeError(
                f"cannot merge statistics of {other.channels} channels {other.spatial} into {self.channels} channels "
                f"{self.spatial}: different layers or input sizes"
            )
        if other.score != self.score or other.k != self.k:
            raise ConvscopeError(
                f"cannot merge scans with different scores or top-k ({other.score}/{other.k} vs {self.score}/{self.k})"
            )
        if other.edges.shape != self.edges.shape or not np.array_equal(other.edges, self.edges):
            raise ConvscopeError(
                "cannot merge scans whose histogram edges differ; scan every shard with the edges of the first "
                "(--edges-from DIR / scan(..., edges_from=first_scan))"
            )
        n_a = self.count.astype(np.float64)
        n_b = other.count.astype(np.float64)
        n = n_a + n_b
        safe = np.where(n > 0, n, 1.0)
        delta = other.mean - self.mean
        self.mean = np.where(n > 0, self.mean + delta * (n_b / safe), 0.0)
        self.m2 = self.m2 + other.m2 + np.square(delta) * (n_a * n_b / safe)
        self.count = self.count + other.count
        self.min = np.minimum(self.min, other.min)
        self.max = np.maximum(self.max, other.max)
        self.zeros = self.zeros + other.zeros
        self.positive = self.positive + other.positive
        self.hist = self.hist + other.hist
        for end, descending in (("top", True), ("bottom", False)):
            mine = [getattr(self, f"{end}_{f}") for f in ("score", "id", "pos")]
            theirs = [getattr(other, f"{end}_{f}") for f in ("score", "id", "pos")]
            if mine[0].shape[1] == self.k:
                # a full state: rows where other's best is strictly worse than this state's k-th cannot
                # change (empty slots score -inf/+inf, so rows with room always count); only the others
                # are re-sorted
                if descending:
                    rows = ~(theirs[0][:, 0] < mine[0][:, -1])
                else:
                    rows = ~(theirs[0][:, 0] > mine[0][:, -1])
                if not rows.any():
                    continue
            else:  # fewer than k examples so far: every row takes other's
                rows = np.ones(self.channels, dtype=bool)
            picked = _select(
                np.concatenate([mine[0][rows], theirs[0][rows]], axis=1),
                np.concatenate([mine[1][rows], theirs[1][rows]], axis=1),
                np.concatenate([mine[2][rows], theirs[2][rows]], axis=1),
                self.k,
                descending=descending,
            )
            if rows.all():
                out = picked
            else:
                width = max(mine[0].shape[1], picked[0].shape[1])
                out = _widen(mine[0], mine[1], mine[2], width, descending=descending)
                chars = max(out[1].dtype.itemsize, picked[1].dtype.itemsize)
                out = (out[0].copy(), out[1].astype(f"S{chars}"), out[2].copy())
                fresh = _widen(*picked, width, descending=descending)
                out[0][rows], out[1][rows], out[2][rows] = fresh
            setattr(self, f"{end}_score", out[0])
            setattr(self, f"{end}_id", out[1])
            setattr(self, f"{end}_pos", out[2])
        return self

    def copy(self) -> LayerStats:
        return LayerStats({k: v.copy() for k, v in self.to_arrays().items() if k in _ARRAY_FIELDS},
                          spatial=self.spatial, score=self.score, k=self.k)

    # -- reading ------------------------------------------------------------------------------
    def channel(self, c: int) -> ChannelStats:
        """:class:`ChannelStats` of channel ``c``."""
        if not 0 <= int(c) < self.channels:
            raise ConvscopeError(f"channel {c} is out of range: the layer has {self.channels} channels (0..{self.channels - 1})")
        c = int(c)
        count = int(self.count[c])
        denom = max(count, 1)
        return ChannelStats(
            count=count,
            mean=float(self.mean[c]),
            std=float(np.sqrt(max(self.m2[c], 0.0) / denom)),
            min=float(self.min[c]),
            max=float(self.max[c]),
            zero_fraction=float(self.zeros[c]) / denom,
            positive_fraction=float(self.positive[c]) / denom,
            histogram=self.hist[c].copy(),
            edges=self.edges.copy(),
        )

    def examples(self, c: int, *, bottom: bool = False) -> list[Example]:
        """The top-k (or bottom-k) examples of channel ``c``, best first."""
        end = "bottom" if bottom else "top"
        scores, ids, pos = (getattr(self, f"{end}_{f}")[int(c)] for f in ("score", "id", "pos"))
        out = []
        for s, i, p in zip(scores, ids, pos):
            if not i:
                continue
            coords = tuple(int(v) for v in np.unravel_index(int(p), self.spatial)) if self.spatial else ()
            out.append(Example(image_id=bytes(i).decode("utf-8"), score=float(s), position=coords))
        return out

    def dead_channels(self) -> list[int]:
        """Channels never positive over the dataset (a ReLU unit that never fires)."""
        return [int(c) for c in np.flatnonzero(self.positive == 0)]

    def always_on_channels(self) -> list[int]:
        """Channels positive at every position of every image."""
        return [int(c) for c in np.flatnonzero((self.positive == self.count) & (self.count > 0))]

    # -- serialisation ------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (for ``np.savez``; no pickling needed to read them back)."""
        arrays = {name: np.asarray(getattr(self, name)) for name in _ARRAY_FIELDS}
        arrays["spatial"] = np.asarray(self.spatial, dtype=np.int64)
        arrays["score"] = np.asarray(self.score)
        arrays["k"] = np.asarray(self.k, dtype=np.int64)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> LayerStats:
        missing = [name for name in (*_ARRAY_FIELDS, "spatial", "score", "k") if name not in arrays]
        if missing:
            raise ConvscopeError(f"scan state is incomplete (missing {', '.join(missing)}); the file is damaged")
        fields = {name: np.asarray(arrays[name]) for name in _ARRAY_FIELDS}
        for name in ("top_id", "bottom_id"):
            if fields[name].dtype.kind == "U":  # written by an early build: unicode ids
                fields[name] = np.char.encode(fields[name], "utf-8")
        return cls(
            fields,
            spatial=tuple(int(s) for s in np.asarray(arrays["spatial"]).tolist()),
            score=str(np.asarray(arrays["score"]).reshape(-1)[0]),  # type: ignore[arg-type]
            k=int(np.asarray(arrays["k"]).reshape(-1)[0]),
        )

    def equal(self, other: LayerStats, *, rtol: float = 0.0) -> bool:
        """True when every field matches (exactly, or mean/m2 within ``rtol``)."""
        for name in _ARRAY_FIELDS:
            a, b = getattr(self, name), getattr(other, name)
            if name in ("mean", "m2") and rtol:
                if not np.allclose(a, b, rtol=rtol, atol=0.0):
                    return False
            elif a.shape != b.shape or not np.array_equal(a, b):
                return False
        return self.spatial == other.spatial and self.score == other.score and self.k == other.k


class _NumpyBinning:
    """The histogram of a chunk in numpy (no numba, or a chunk with NaN): the bin index is arithmetic
    on the value, then one ``bincount`` over (lane, channel, bin) keys; the same counts as
    :mod:`convscope.core.fused`'s kernel. Its ``(N, width, S)`` int64 keys are allocated on first use."""

    def __init__(self, n: int, width: int, size: int, nbins: int, lanes: int) -> None:
        self.shape = (n, width, size)
        self.nbins = nbins
        self.lanes = lanes
        self.keys: np.ndarray | None = None
        self.offsets: np.ndarray | None = None

    def counts(
        self, x: np.ndarray, t: np.ndarray, inv: np.float32, shift: np.float32, top_bin: np.float32, has_nan: bool
    ) -> np.ndarray:
        """``(w, nbins + 2)`` int64 counts of the chunk ``x`` ``(N, w, S)``; ``t`` is float32 scratch like ``x``."""
        n, width, size = self.shape
        nbins, lanes = self.nbins, self.lanes
        w = x.shape[1]
        if self.keys is None or self.offsets is None:
            self.keys = np.empty(self.shape, dtype=np.int64)
            # each value's key also names one of ``lanes`` copies of the histogram, in turn along the row:
            # runs of one value (a ReLU's zeros) then hit different counters, which bincount does ~20% faster
            # than one counter over and over; the copies are summed after (exact)
            lane_of = (np.arange(size) % lanes).astype(np.float32) * np.float32(width * (nbins + 2))
            self.offsets = (np.arange(width, dtype=np.float32) * np.float32(nbins + 2))[None, :, None] + lane_of[None, None, :]
        key = self.keys[:, :w]
        np.multiply(x, inv, out=t)
        t += shift
        if has_nan:  # fmin/fmax (slower) send NaN to the overflow bin
            np.fmin(t, top_bin, out=t)
            np.fmax(t, np.float32(0.0), out=t)
        else:
            np.clip(t, np.float32(0.0), top_bin, out=t)
        # bin + channel offset: floor, then add the offset while still float32 (both are integers below
        # 2**24: exact), one conversion to int64
        np.floor(t, out=t)
        t += self.offsets[:, :w]
        np.copyto(key, t, casting="unsafe")
        counts = np.bincount(key.reshape(-1), minlength=lanes * width * (nbins + 2))
        return counts.reshape(lanes, width, nbins + 2).sum(axis=0)[:w]


def _select(
    scores: np.ndarray, ids: np.ndarray, pos: np.ndarray, k: int, *, descending: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row, the first ``k`` entries in the total order (score, id asc, position asc).

    Args:
        scores: ``(C, M)`` float64; ids: ``(C, M)`` bytes (``b""`` = empty slot); pos: ``(C, M)`` int64.
    Returns:
        ``(C, W)`` arrays, ``W = min(k, most entries of a row)`` (at least 1): a state holds no more
        slots than it has examples, so a top-k larger than the dataset costs nothing. Empty slots
        (rows with fewer entries) have score ``-inf`` (top) / ``+inf`` (bottom) and id ``b""``.
    """
    c, m = scores.shape
    empty = ids == b""
    key = np.where(empty, np.inf, -scores if descending else scores)
    # fast path: a stable sort on the score alone; rows where two entries of the first k + 1 tie (and
    # not both are empty slots) get the full order (score, empty last, id, position) by lexsort
    order = np.argsort(key, axis=1, kind="stable")
    lim = min(k + 1, m)
    head = np.take_along_axis(key, order[:, :lim], axis=1)
    head_empty = np.take_along_axis(empty, order[:, :lim], axis=1)
    tied = ((head[:, 1:] == head[:, :-1]) & ~(head_empty[:, 1:] & head_empty[:, :-1])).any(axis=1)
    if tied.any():
        r = np.flatnonzero(tied)
        # lexsort: the last key is primary
        order[r] = np.lexsort((pos[r], ids[r], empty[r], key[r]), axis=-1)
    filled = int((~empty).sum(axis=1).max()) if c and m else 0
    order = order[:, : max(1, min(k, filled))]
    rows = np.arange(c)[:, None]
    s = scores[rows, order]
    i = ids[rows, order]
    p = pos[rows, order]
    emptied = i == b""
    s = np.where(emptied, -np.inf if descending else np.inf, s)
    p = np.where(emptied, 0, p)
    return np.ascontiguousarray(s, dtype=np.float64), np.ascontiguousarray(i), np.ascontiguousarray(p, dtype=np.int64)


def _widen(
    scores: np.ndarray, ids: np.ndarray, pos: np.ndarray, width: int, *, descending: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(C, W)`` top/bottom arrays padded with empty slots to ``(C, width)`` (``width >= W``)."""
    pad = width - scores.shape[1]
    if pad <= 0:
        return scores, ids, pos
    c = scores.shape[0]
    return (np.concatenate([scores, np.full((c, pad), -np.inf if descending else np.inf)], axis=1),
            np.concatenate([ids, np.full((c, pad), b"", dtype=ids.dtype)], axis=1),
            np.concatenate([pos, np.zeros((c, pad), dtype=np.int64)], axis=1))


def check_disjoint(a: Iterable[str], b: Iterable[str]) -> None:
    """Raise :class:`DuplicateImagesError` if the two id collections share an image."""
    common = sorted(set(a) & set(b))
    if common:
        shown = ", ".join(common[:3]) + (" ..." if len(common) > 3 else "")
        raise DuplicateImagesError(
            f"{len(common)} image(s) are in both scans ({shown}); merging would count them twice. "
            "Merge scans of disjoint data (each shard once)"
        )
