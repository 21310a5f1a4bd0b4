"""Optional compiled kernel for the scan's histogram (numba, ``pip install 'convscope[fast]'``).

:meth:`convscope.core.stats.LayerStats.from_batch` bins every activation value into a fixed-edge
histogram. In numpy that is seven passes over the values and a ``bincount`` (~1.6 ns per value on
the reference machine, with temporaries of 12 bytes per value); compiled with numba it is one pass
without temporaries (~0.75 ns per value) that releases the GIL, so the scan's concurrent batches
reduce on every core. The counts are integers computed with the same float32 arithmetic as the
numpy path (``v * inv`` rounded, ``+ shift`` rounded, clamped to ``[0, bins + 1]``, truncated), so
both give the same histogram bit for bit (tested); chunks holding NaN take the numpy path.

numba is imported on the first call of :func:`histogram_kernel`, never by ``import convscope``;
``CONVSCOPE_NUMBA=0`` in the environment turns the kernel off.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import numpy as np

__all__ = ["histogram_kernel", "HistogramKernel"]

HistogramKernel = Callable[[np.ndarray, np.float32, np.float32, np.float32, np.ndarray], None]
"""``kernel(x, inv, shift, top, hist)`` for a chunk ``x`` ``(N, C, S)`` float32 without NaN (rows
contiguous): writes ``hist`` ``(C, bins + 2)`` int64, the bin of ``v`` being
``int(min(max(v * inv + shift, 0), top))`` in float32 with ``top = bins + 1`` (overflow)."""

_lock = threading.Lock()
_compiled: list[HistogramKernel | None] = []


def histogram_kernel() -> HistogramKernel | None:
    """The compiled histogram kernel, or None (numba not installed, or ``CONVSCOPE_NUMBA=0``)."""
    if os.environ.get("CONVSCOPE_NUMBA", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if not _compiled:
        with _lock:
            if not _compiled:
                _compiled.append(_compile())
    return _compiled[0]


def _compile() -> HistogramKernel | None:
    try:
        from ._fused_numba import histogram_rows
    except ImportError:  # numba not installed (or a numba that does not load here)
        return None
    return histogram_rows
