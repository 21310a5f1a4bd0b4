"""The numba-compiled histogram of :mod:`convscope.core.fused` (imported only when numba is installed)."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

LANES = 4


@numba.njit(nogil=True, boundscheck=False, cache=True)
def histogram_rows(x: Any, inv: Any, shift: Any, top: Any, hist: Any) -> None:  # pragma: no cover - compiled
    """See :data:`convscope.core.fused.HistogramKernel`."""
    n, c, s = x.shape
    bins = hist.shape[1]
    # consecutive values count into LANES copies of the channel's histogram in turn: runs of one bin
    # (a ReLU's zeros) then do not wait on one counter; the copies are summed after (exact)
    lanes = np.zeros((LANES, bins), np.int64)
    zero = np.float32(0.0)
    for j in range(c):
        lanes[:] = 0
        for i in range(n):
            row = x[i, j]
            k = 0
            while k + LANES <= s:
                for q in range(LANES):
                    t = min(max(row[k + q] * inv + shift, zero), top)
                    lanes[q, int(t)] += 1
                k += LANES
            while k < s:
                t = min(max(row[k] * inv + shift, zero), top)
                lanes[0, int(t)] += 1
                k += 1
        for b in range(bins):
            total = 0
            for q in range(LANES):
                total += lanes[q, b]
            hist[j, b] = total
