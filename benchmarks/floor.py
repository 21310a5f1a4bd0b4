"""The floor: the least work that produces the same pictures, written the straightforward way.

numpy min-max (per channel / per filter), one LUT lookup, tiling with reshapes, PNG encoding with
Pillow at compress level 1; single-threaded, no convscope import. Cells are upscaled by the same
rule convscope uses (short side >= 48 px for activations, >= 15 px per kernel, image side <= 4096),
so both write images of (nearly) the same size; ``factor=1`` gives the 1-pixel-per-value variant.

The colormap tables are read from convscope's data file (plain ``.npz``), not through convscope.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

LUT_FILE = Path(__file__).resolve().parents[1] / "src" / "convscope" / "render" / "colormaps.npz"
MAX_SIDE = 4096
MIN_CELL = 48

_LUTS: dict[str, np.ndarray] = {}


def lut(name: str) -> np.ndarray:
    if name not in _LUTS:
        with np.load(LUT_FILE) as archive:
            _LUTS[name] = np.asarray(archive[name], dtype=np.uint8)
    return _LUTS[name]


def minmax_index(maps: np.ndarray) -> np.ndarray:
    """``(N, ...)`` float -> uint8 LUT indices, each map scaled to its own min..max."""
    flat = maps.reshape(maps.shape[0], -1)
    low = flat.min(axis=1, keepdims=True)
    span = flat.max(axis=1, keepdims=True) - low
    span[span == 0] = 1
    return ((flat - low) * (255.0 / span)).astype(np.uint8).reshape(maps.shape)


def symmetric_index(maps: np.ndarray) -> np.ndarray:
    """``(N, ...)`` float -> uint8 LUT indices, each map scaled to -max|x|..max|x| (0 -> middle)."""
    flat = maps.reshape(maps.shape[0], -1)
    limit = np.abs(flat).max(axis=1, keepdims=True)
    limit[limit == 0] = 1
    return ((flat / limit + 1.0) * 127.5).astype(np.uint8).reshape(maps.shape)


def fit_factor(want: int, extent) -> int:
    for f in range(max(1, want), 0, -1):
        if max(extent(f)) <= MAX_SIDE:
            return f
    return 1


def tile(cells: np.ndarray, cols: int, factor: int = 1, pad: int = 1, pad_value: int = 255) -> np.ndarray:
    """``(N, h, w, 3)`` uint8 -> one grid image, cells upscaled by ``factor`` (np.repeat)."""
    if factor > 1:
        cells = cells.repeat(factor, axis=1).repeat(factor, axis=2)
    count, h, w, c = cells.shape
    rows = math.ceil(count / cols)
    canvas = np.full((rows * cols, h + pad, w + pad, c), pad_value, dtype=np.uint8)
    canvas[:count, pad:, pad:] = cells
    grid = canvas.reshape(rows, cols, h + pad, w + pad, c).transpose(0, 2, 1, 3, 4)
    grid = grid.reshape(rows * (h + pad), cols * (w + pad), c)
    return np.pad(grid, ((0, pad), (0, pad), (0, 0)), constant_values=pad_value)


def save_png(pixels: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(pixels).save(path, format="PNG", compress_level=1)


def activation_grid(maps: np.ndarray, upscale: bool = True) -> np.ndarray:
    """``(C, H, W)`` or ``(C, D, H, W)`` (three middle slices side by side) -> RGB grid."""
    if maps.ndim == 4:
        return volume_grid(maps, upscale)
    count, h, w = maps.shape
    cols = max(1, min(count, math.ceil(math.sqrt(count * h / w))))
    rows = math.ceil(count / cols)
    want = max(1, math.ceil(MIN_CELL / min(h, w))) if upscale else 1
    factor = fit_factor(want, lambda f: (rows * (h * f + 1) + 1, cols * (w * f + 1) + 1))
    return tile(lut("viridis")[minmax_index(maps)], cols, factor)


def volume_grid(maps: np.ndarray, upscale: bool = True) -> np.ndarray:
    count, d, h, w = maps.shape
    views = [maps[:, d // 2], maps[:, :, h // 2], maps[:, :, :, w // 2]]  # (C,H,W) (C,D,W) (C,D,H)
    base_h = max(v.shape[1] for v in views)
    strip = np.zeros((count, base_h, sum(v.shape[2] for v in views) + 2), dtype=np.float32)
    x = 0
    for v in views:
        strip[:, : v.shape[1], x : x + v.shape[2]] = v
        x += v.shape[2] + 1
    cols = max(1, min(count, math.ceil(math.sqrt(count * base_h / strip.shape[2]))))
    rows = math.ceil(count / cols)
    want = max(1, math.ceil(MIN_CELL / min(strip.shape[1:]))) if upscale else 1
    factor = fit_factor(want, lambda f: (rows * (base_h * f + 2) + 2, cols * (strip.shape[2] * f + 2) + 2))
    return tile(lut("viridis")[minmax_index(strip)], cols, factor, pad=2)


def kernel_grid(weights: np.ndarray) -> np.ndarray:
    """``(O, I, kh, kw)`` -> RGB grid: rows filters, columns inputs (1x1 kernels: one O x I matrix),
    each filter on its own symmetric scale, RdBu_r."""
    out_ch, in_ch, kh, kw = weights.shape
    index = symmetric_index(weights.reshape(out_ch, -1)).reshape(weights.shape)
    colors = lut("RdBu_r")
    if kh == kw == 1:
        want = max(3, math.ceil(128 / max(out_ch, in_ch)))
        factor = fit_factor(want, lambda f: (out_ch * f, in_ch * f))
        return tile(colors[index[:, :, 0, 0]][None], 1, factor, pad=0)
    want = max(3, math.ceil(15 / max(kh, kw)))
    factor = fit_factor(want, lambda f: (out_ch * (kh * f + 1) + 1, in_ch * (kw * f + 1) + 1))
    return tile(colors[index.reshape(out_ch * in_ch, kh, kw)], in_ch, factor)
