"""The naive way of the founding document: for every layer, a separate forward pass (a hook on that
layer only), then a matplotlib figure with one subplot per channel (``imshow``, which scales each
channel to its own min..max) and ``savefig``.

Kernels the same way: one subplot per 2-D kernel (filter x input channel), a single ``imshow`` of
the ``O x I`` matrix for 1x1 layers.

Cells are ~48 px (0.6 in at 80 dpi) like convscope's, kernels ~15 px. The naive way is slow:
``budget_s`` stops (after at least three layers) once the budget is spent and extrapolates the
rest from a least-squares fit ``time = a + b * subplots`` over the layers it did, the first one
(matplotlib's warm-up) left out; such results are reported as extrapolated.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

CELL_IN = 0.6
DPI = 80
KERNEL_IN = 0.25
KERNEL_DPI = 60


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def activation_figure(maps: np.ndarray, path: Path) -> int:
    """``(C, H, W)`` (or ``(C, D, H, W)``: the three middle slices side by side) -> one PNG; returns subplots."""
    plt = _pyplot()
    count = maps.shape[0]
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * CELL_IN, rows * CELL_IN), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < count:
            m = maps[i]
            if m.ndim == 3:  # a volume: its three middle slices side by side
                views = [m[m.shape[0] // 2], m[:, m.shape[1] // 2], m[:, :, m.shape[2] // 2]]
                top = max(v.shape[0] for v in views)
                m = np.hstack([np.pad(v, ((0, top - v.shape[0]), (0, 0)), mode="edge") for v in views])
            ax.imshow(m, cmap="viridis")
        ax.axis("off")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return count


def kernel_figure(weights: np.ndarray, path: Path) -> int:
    """``(O, I, kh, kw)`` -> one PNG with a subplot per kernel (1x1: one matrix); returns subplots."""
    plt = _pyplot()
    out_ch, in_ch, kh, kw = weights.shape
    if kh == kw == 1:
        fig, ax = plt.subplots(figsize=(max(2, in_ch * 2 / DPI * 1.5), max(2, out_ch * 2 / DPI * 1.5)))
        limit = np.abs(weights).max()
        ax.imshow(weights[:, :, 0, 0], cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.axis("off")
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        return 1
    fig, axes = plt.subplots(out_ch, in_ch, figsize=(in_ch * KERNEL_IN, out_ch * KERNEL_IN), squeeze=False)
    for o in range(out_ch):
        limit = float(np.abs(weights[o]).max()) or 1.0
        for i in range(in_ch):
            ax = axes[o, i]
            ax.imshow(weights[o, i], cmap="RdBu_r", vmin=-limit, vmax=limit)
            ax.axis("off")
    fig.savefig(path, dpi=KERNEL_DPI)
    plt.close(fig)
    return out_ch * in_ch


def run_layers(
    items: Sequence[tuple[str, int]],
    do_layer: Callable[[str], int],
    budget_s: float | None,
) -> dict:
    """Run ``do_layer(name)`` for each ``(name, subplots)`` until ``budget_s`` is spent; extrapolate the rest."""
    start = time.perf_counter()
    measured: list[tuple[int, float]] = []
    for name, subplots in items:
        if budget_s is not None and len(measured) >= 3:
            spent = time.perf_counter() - start
            predicted = _predict(measured, [subplots])
            if spent >= budget_s or spent + predicted > 2 * budget_s:
                break
        t0 = time.perf_counter()
        do_layer(name)
        measured.append((subplots, time.perf_counter() - t0))
    done = len(measured)
    elapsed = time.perf_counter() - start
    rest = [s for _, s in items[done:]]
    remaining = _predict(measured, rest) if rest else 0.0
    return {
        "layers_done": done,
        "layers_total": len(items),
        "subplots_done": int(sum(s for s, _ in measured)),
        "subplots_total": int(sum(s for _, s in items)),
        "measured_s": elapsed,
        "extrapolated_s": remaining,
        "extrapolated": bool(rest),
    }


def _predict(measured: list[tuple[int, float]], subplots: Sequence[int]) -> float:
    """Seconds for layers of ``subplots`` subplots, from ``time = a + b * subplots`` fitted to ``measured``."""
    if len(measured) >= 3:
        measured = measured[1:]  # the first layer also pays matplotlib's warm-up (fonts, backend)
    xs = np.array([m[0] for m in measured], dtype=float)
    ys = np.array([m[1] for m in measured], dtype=float)
    if len(set(xs.tolist())) >= 2:
        b, a = np.polyfit(xs, ys, 1)
        b = max(b, 0.0)
        a = max(a, 0.0)
    else:
        a, b = 0.0, float(ys.sum() / max(xs.sum(), 1.0))
    return float(sum(a + b * s for s in subplots))
