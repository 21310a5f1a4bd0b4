"""Grid images of activations and kernels, and heat-map overlays. numpy + Pillow only.

Every function here works on all channels at once: one normalisation pass, one LUT lookup and
one strided copy into the output grid (nearest-neighbour upscaling is fused into that copy).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..errors import ConvscopeError
from .colormap import NAN_COLOR, _as_lut, _lookup, apply_colormap, colormap_name, get_colormap
from .figure import data_figure
from .normalize import _check_scale, _normalize_owned
from .picture import Picture

__all__ = ["tile", "render_activation_grid", "render_kernel_grid", "render_overlay", "VOLUME_MODES"]

VOLUME_MODES: tuple[str, ...] = ("slices", "mip")

MIN_KERNEL_CELL = 8
"""Smallest displayed kernel cell (its longer side, px); ``max_side`` yields to it."""
MATRIX_MIN_KERNELS = 256
"""A layer of 2-D kernels of at most 2x2 with at least this many kernels is drawn as one O x I matrix."""

_LABEL_BG = (24, 24, 24)
_LABEL_FG = (255, 255, 255)
_SEPARATOR_CANDIDATES = np.array(
    [(255, 255, 255), (0, 0, 0), (128, 128, 128), (40, 40, 40), (70, 110, 190), (230, 200, 60)], dtype=np.int32
)


# --------------------------------------------------------------------------------------------
# tiling
# --------------------------------------------------------------------------------------------


def _pad_color(pad_value: int | Sequence[int] | np.ndarray, channels: int) -> np.ndarray:
    color = np.asarray(pad_value)
    if color.ndim == 0:
        color = np.full(channels, color)
    if color.shape != (channels,) or not np.all((color >= 0) & (color <= 255)):
        raise ConvscopeError(
            f"pad_value must be an int in 0..255 or {channels} such ints (one per colour channel), got {pad_value!r}"
        )
    return color.astype(np.uint8)


def _grid_shape(count: int, cols: int | None) -> tuple[int, int]:
    if cols is None:
        cols = math.ceil(math.sqrt(count))
    cols = max(1, min(int(cols), count))
    return math.ceil(count / cols), cols


def _tile_runs(runs: np.ndarray, cols: int, pad: int, pad_color: np.ndarray, fy: int, fx: int) -> np.ndarray:
    """Tile cells given as x-upscaled pixel runs into a padded grid, upscaling rows by ``fy``.

    Args:
        runs: ``(N, h, w, fx * C)`` uint8, C-contiguous: every source pixel already repeated ``fx``
            times along x (so ``fx * C`` contiguous bytes per source pixel).

    No per-cell loop: each run is one ``fx * C``-byte void item, written through one strided
    ``(rows, cols, h, w)`` view of the output into the top row of every upscaled cell row; the
    other ``fy - 1`` rows are then full-width row copies. Only the padding lines and those top rows
    are pre-filled with ``pad_color``.
    """
    count, h, w, run = runs.shape
    channels = run // fx
    rows = math.ceil(count / cols)
    ch, cw = h * fy, w * fx
    height = rows * (ch + pad) + pad
    width = cols * (cw + pad) + pad
    line = width * channels
    out = np.empty((height, width, channels), dtype=np.uint8)
    flat = out.reshape(height, line)
    pattern = np.tile(pad_color.astype(np.uint8), width)  # one padding row, (W * C,)
    if pad:
        lines = as_strided(flat, shape=(rows + 1, pad, line), strides=((ch + pad) * line, line, 1), writeable=True)
        lines[...] = pattern
    band = as_strided(
        flat[pad:], shape=(rows, h, fy, line), strides=((ch + pad) * line, fy * line, line, 1), writeable=True
    )
    band[:, :, 0] = pattern

    item = np.dtype((np.void, run))
    src = runs.view(item)[..., 0]  # (N, h, w)
    dest = np.ndarray(
        shape=(rows, cols, h, w),
        dtype=item,
        buffer=out,
        offset=(pad * width + pad) * channels,
        strides=((ch + pad) * line, (cw + pad) * channels, fy * line, run),
    )
    full_rows = count // cols
    if full_rows:
        dest[:full_rows] = src[: full_rows * cols].reshape(full_rows, cols, h, w)
    rest = count - full_rows * cols
    if rest:
        dest[full_rows, :rest] = src[full_rows * cols :]
    if fy > 1:
        band[:, :, 1:] = band[:, :, :1]
    return out


def _tile_into(
    cells: np.ndarray,
    cols: int,
    pad: int,
    pad_color: np.ndarray,
    factor: tuple[int, int] = (1, 1),
) -> np.ndarray:
    """Tile ``(N, h, w, C)`` uint8 cells row-major into a grid, nearest-upscaling each by ``factor``."""
    fy, fx = factor
    count, h, w, channels = cells.shape
    pixels = np.ascontiguousarray(cells)
    if fx > 1:
        items = pixels.view(np.dtype((np.void, channels)))[..., 0]  # (N, h, w)
        pixels = np.repeat(items, fx, axis=2).view(np.uint8).reshape(count, h, w, fx * channels)
    return _tile_runs(pixels, cols, pad, pad_color, fy, fx)


def _tile_mapped(
    index: np.ndarray,
    table: np.ndarray,
    cols: int,
    pad: int,
    pad_color: np.ndarray,
    factor: tuple[int, int] = (1, 1),
) -> np.ndarray:
    """Colour-map and tile in one go: ``(N, h, w)`` LUT row indices into a ``(K, C)`` uint8 table.

    The x-upscaling is folded into the lookup (a table whose rows are each colour repeated ``fx``
    times), so the upscaled cells are produced by one ``np.take``.
    """
    fy, fx = factor
    run_table = np.ascontiguousarray(np.tile(table, (1, fx)))
    runs = np.take(run_table, index, axis=0)  # (N, h, w, fx * C)
    return _tile_runs(runs, cols, pad, pad_color, fy, fx)


def tile(
    cells: np.ndarray,
    *,
    cols: int | None = None,
    pad: int = 1,
    pad_value: int | Sequence[int] = 255,
) -> np.ndarray:
    """Arrange equally sized cells into one grid image, row-major.

    Args:
        cells: ``(N, h, w, 3)`` ``uint8`` (any channel count ``C`` works; ``(N, h, w)`` gives a
            2-D grid).
        cols: cells per row; default ``ceil(sqrt(N))`` (near-square). Clamped to ``N``.
        pad: pixels between cells and around the grid.
        pad_value: colour of the padding and of empty trailing cells: an int or one int per channel.

    Returns:
        ``(rows * (h + pad) + pad, cols * (w + pad) + pad, 3)`` ``uint8`` with
        ``rows = ceil(N / cols)``.

    Raises:
        ConvscopeError: (a ``ValueError``) for an empty or wrongly shaped ``cells``, ``cols < 1``
            or ``pad < 0``.
    """
    arr = np.asarray(cells)
    if arr.ndim not in (3, 4) or arr.shape[0] == 0:
        raise ConvscopeError(f"tile needs a non-empty (N, h, w, 3) uint8 array of cells, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ConvscopeError(f"tile needs uint8 cells (colour-map them first with apply_colormap), got {arr.dtype}")
    if cols is not None and int(cols) < 1:
        raise ConvscopeError(f"cols must be a positive number of columns or None, got {cols}")
    if int(pad) < 0:
        raise ConvscopeError(f"pad must be >= 0 pixels, got {pad}")
    gray = arr.ndim == 3
    if gray:
        arr = arr[..., None]
    _, cols_used = _grid_shape(arr.shape[0], cols)
    grid = _tile_into(arr, cols_used, int(pad), _pad_color(pad_value, arr.shape[3]))
    return grid[..., 0] if gray else grid


# --------------------------------------------------------------------------------------------
# helpers: factors, separators, labels
# --------------------------------------------------------------------------------------------


def _fit_factor(want: int, extent: Callable[[int], tuple[int, int]], max_side: int) -> int:
    """Largest factor in ``[1, want]`` whose ``extent(f) = (height, width)`` fits ``max_side``, else 1."""
    for f in range(max(1, want), 0, -1):
        if max(extent(f)) <= max_side:
            return f
    return 1


def _separator(lut: np.ndarray) -> np.ndarray:
    """A padding colour far from every colour of ``lut`` (white when white is far enough)."""
    diff = _SEPARATOR_CANDIDATES[:, None, :] - lut[None, :, :].astype(np.int32)
    distance = np.sqrt((diff**2).sum(axis=2)).min(axis=1)
    good = np.flatnonzero(distance >= 90)
    pick = int(good[0]) if good.size else int(np.argmax(distance))
    return _SEPARATOR_CANDIDATES[pick].astype(np.uint8)


def _gap_color(separator: np.ndarray) -> np.ndarray:
    """Colour of the 1 px gaps and empty space *inside* a cell: the separator moved halfway to grey."""
    return ((separator.astype(np.uint16) + 128) // 2).astype(np.uint8)


def _upscale(a: np.ndarray, fy: int, fx: int) -> np.ndarray:
    """Nearest-neighbour upscale of the last two axes of ``a`` by integer factors (one copy)."""
    if fy == 1 and fx == 1:
        return a
    *lead, h, w = a.shape
    big = np.broadcast_to(a[..., :, None, :, None], (*lead, h, fy, w, fx))
    return big.reshape(*lead, h * fy, w * fx)


@lru_cache(maxsize=1)
def _font() -> Any:
    from PIL import ImageFont

    return ImageFont.load_default()


def _text_box(text: str) -> tuple[int, int, int, int]:
    """``(left, top, width, height)`` of ``text`` in the label font."""
    left, top, right, bottom = _font().getbbox(text)
    return int(left), int(top), int(right - left), int(bottom - top)


def _label_cell_size(labels: Sequence[str]) -> tuple[int, int]:
    """``(height, width)`` of the dark box drawn behind the widest label."""
    longest = max(len(t) for t in labels)
    probes = [t for t in labels if len(t) == longest][:64] + ["0" * longest, "8" * longest]
    width = max(_text_box(t)[2] for t in probes)
    height = max(_text_box(t)[3] for t in probes[:1] + ["0123456789"])
    return height + 2, width + 3


@lru_cache(maxsize=8192)
def _label_patch(text: str) -> np.ndarray:
    """``(box_h, w, 3)`` uint8: ``text`` in white on a small dark box (rendered once, then cached)."""
    from PIL import Image, ImageDraw

    box_h, _ = _label_cell_size(["0"])
    left, top, width, _ = _text_box(text)
    image = Image.new("RGB", (width + 3, box_h), _LABEL_BG)
    ImageDraw.Draw(image).text((1 - left, 1 - top), text, fill=_LABEL_FG, font=_font())
    patch = np.asarray(image, dtype=np.uint8).copy()
    patch.setflags(write=False)
    return patch


def _blit(pixels: np.ndarray, patch: np.ndarray, x: int, y: int) -> None:
    """Copy ``patch`` into ``pixels`` (in place) with its top-left corner at ``(x, y)``, clipped."""
    height, width = pixels.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + patch.shape[1], width), min(y + patch.shape[0], height)
    if x1 > x0 and y1 > y0:
        pixels[y0:y1, x0:x1, :3] = patch[y0 - y : y1 - y, x0 - x : x1 - x]


def _draw_corner_labels(pixels: np.ndarray, texts: Sequence[str], corners: Sequence[tuple[int, int]]) -> np.ndarray:
    """Draw white ``texts`` on small dark boxes with top-left corners at ``corners`` ``(x, y)``, in place."""
    for text, (x, y) in zip(texts, corners):
        _blit(pixels, _label_patch(text), x, y)
    return pixels


def _add_margin_labels(
    pixels: np.ndarray,
    *,
    row_centers: np.ndarray,
    row_texts: Sequence[str],
    col_centers: np.ndarray,
    col_texts: Sequence[str],
) -> tuple[np.ndarray, np.ndarray, list[tuple[float, float, str]]]:
    """Put the grid on a dark canvas with row labels in a left margin and column labels on top.

    Labels are thinned to every ``k``-th row/column so they never overlap.

    Returns:
        ``(pixels, bare, labels)``: the canvas with the labels drawn, the same canvas without them
        (for figures that draw labels as text), and the labels as ``(x, y, text)``.
    """
    box_h, _ = _label_cell_size(["0"])
    row_w = max(_label_patch(t).shape[1] for t in row_texts) + 3
    col_w = max(_label_patch(t).shape[1] for t in col_texts) + 2
    left, top = row_w, box_h + 2
    height, width = pixels.shape[:2]
    canvas = np.empty((height + top, width + left, 3), dtype=np.uint8)
    canvas[:top] = _LABEL_BG
    canvas[top:, :left] = _LABEL_BG
    canvas[top:, left:] = pixels[..., :3]
    bare = canvas.copy()

    def stride(centers: np.ndarray, need: int) -> int:
        pitch = float(centers[1] - centers[0]) if len(centers) > 1 else float(need)
        return max(1, math.ceil(need / max(pitch, 1.0)))

    placed: list[tuple[float, float, str]] = []
    step = stride(row_centers, box_h)
    for center, text in zip(row_centers[::step], row_texts[::step]):
        patch = _label_patch(text)
        x, y = left - 2 - patch.shape[1], top + int(center) - box_h // 2
        _blit(canvas, patch, x, y)
        placed.append((x, y, text))
    step = stride(col_centers, col_w)
    for center, text in zip(col_centers[::step], col_texts[::step]):
        patch = _label_patch(text)
        x, y = left + int(center) - patch.shape[1] // 2, 1
        _blit(canvas, patch, x, y)
        placed.append((x, y, text))
    return canvas, bare, placed


def _cell_corners(count: int, cols: int, cell_hw: tuple[int, int], pad: int) -> list[tuple[int, int]]:
    index = np.arange(count)
    xs = pad + (index % cols) * (cell_hw[1] + pad)
    ys = pad + (index // cols) * (cell_hw[0] + pad)
    return list(zip(xs.tolist(), ys.tolist()))


def _kernel_floor(kh: int, kw: int, label_h: int = 0, label_w: int = 0) -> int:
    """Smallest upscale factor of a ``kh x kw`` kernel cell: 2 px per weight, a longer side of at
    least :data:`MIN_KERNEL_CELL` px, and (with labels) twice the label box in each direction."""
    floor = max(2, math.ceil(MIN_KERNEL_CELL / max(kh, kw)))
    if label_h or label_w:
        floor = max(floor, math.ceil(2 * label_h / kh), math.ceil(2 * label_w / kw))
    return floor


def _aspect_cols(count: int, cell_h: int, cell_w: int) -> int:
    """Columns making a grid of ``count`` cells of ``cell_h x cell_w`` roughly square."""
    return max(1, min(count, math.ceil(math.sqrt(count * cell_h / max(cell_w, 1)))))


_UNBOUNDED = 1 << 30


def _physical_box(
    pixels: np.ndarray, spacing: Sequence[float] | None, px_per_value: int, spatial: int
) -> tuple[tuple[float, float] | None, float | None]:
    """Display box and figure px per unit for a grid whose values measure ``spacing`` ``(row, col)``."""
    if spacing is None:
        return None, None
    if spatial != 2:
        raise ConvscopeError(f"spacing applies to 2-D maps; these maps have {spatial} spatial axes")
    try:
        sy, sx = (float(v) for v in spacing)
    except (TypeError, ValueError):
        raise ConvscopeError(f"spacing must be two positive numbers (row, column), got {spacing!r}") from None
    if not (sy > 0 and sx > 0 and math.isfinite(sy) and math.isfinite(sx)):
        raise ConvscopeError(f"spacing must be two positive numbers (row, column), got {spacing!r}")
    finest = min(sy, sx)
    height, width = pixels.shape[:2]
    return (width * sx / finest, height * sy / finest), px_per_value / finest


_BLOCK_CHUNK_BYTES = 1 << 18
""":func:`_block_mean` sums rows for this many bytes of channels at a time, so the row sums stay in
the CPU cache while their columns are summed."""


def _block_mean(maps: np.ndarray, step: int) -> np.ndarray:
    """``(C, H, W)`` -> ``(C, ceil(H / step), ceil(W / step))`` float32: the mean of each
    ``step x step`` block (edge blocks average what they hold; a NaN in a block gives NaN).

    Rows first, then columns: ``step`` additions of every ``step``-th row (whole contiguous rows,
    one read of the input in all), then ``step`` strided additions over the ``step`` times smaller
    row sums, a few channels at a time so those sums are still in the cache. That avoids numpy's
    slow reduction over two short inner axes of a 5-D view and reads the input once, as a
    ``step**2``-offset sum could not (each offset touches every cache line of its rows).
    """
    count, height, width = maps.shape
    out_h, out_w = math.ceil(height / step), math.ceil(width / step)
    total = np.zeros((count, out_h, out_w), dtype=np.float32)
    per = max(1, _BLOCK_CHUNK_BYTES // (out_h * width * 4))
    buffer = np.empty((min(per, count), out_h, width), dtype=np.float32)
    for first in range(0, count, per):
        last = min(count, first + per)
        row_sums = buffer[: last - first]
        row_sums[...] = 0.0
        for dy in range(min(step, height)):
            row_sums[:, : math.ceil((height - dy) / step)] += maps[first:last, dy::step]
        block = total[first:last]
        for dx in range(min(step, width)):
            block[:, :, : math.ceil((width - dx) / step)] += row_sums[:, :, dx::step]
    if height % step or width % step:  # edge blocks hold fewer values
        per_row = np.minimum(step, height - np.arange(out_h) * step).astype(np.float32)
        per_col = np.minimum(step, width - np.arange(out_w) * step).astype(np.float32)
        total /= per_row[:, None] * per_col[None, :]
    else:
        total *= np.float32(1.0 / (step * step))
    return total


def _check_common(cols: int | None, max_side: int) -> None:
    if cols is not None and int(cols) < 1:
        raise ConvscopeError(f"cols must be a positive number of columns or None, got {cols}")
    if int(max_side) < 1:
        raise ConvscopeError(f"max_side must be a positive number of pixels, got {max_side}")


def _value_range(stats: Any) -> list[float] | None:
    return None if stats.data_min is None else [stats.data_min, stats.data_max]


def _scale_range(norm: Any) -> list[float] | None:
    """``[low, high]``: the values the colormap's ends stand for (one scale for all maps), or None."""
    low, high = float(norm.low[0]), float(norm.high[0])
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return [low, high]


# --------------------------------------------------------------------------------------------
# activations
# --------------------------------------------------------------------------------------------


def _select(maps: np.ndarray, channels: Sequence[int] | np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Owned float32 copy of the chosen channels (one copy) and their indices."""
    count = maps.shape[0]
    if channels is None:
        return np.array(maps, dtype=np.float32, copy=True, order="C"), np.arange(count)
    index = _check_channels(count, channels)
    chosen = np.take(maps, index, axis=0)
    if chosen.dtype != np.float32 or not chosen.flags.c_contiguous:
        chosen = np.ascontiguousarray(chosen, dtype=np.float32)
    return chosen, index


def _check_channels(count: int, channels: Sequence[int] | np.ndarray) -> np.ndarray:
    """Validated ``int64`` channel indices."""
    index = np.asarray(channels).reshape(-1)
    if index.size == 0:
        raise ConvscopeError("channels is empty: give at least one channel index, or None for all channels")
    if not np.issubdtype(index.dtype, np.integer):
        raise ConvscopeError(f"channels must be integer indices, got dtype {index.dtype}")
    bad = index[(index < 0) | (index >= count)]
    if bad.size:
        raise ConvscopeError(f"channel {int(bad[0])} is out of range: the maps have {count} channels (0..{count - 1})")
    return index.astype(np.int64)


VOLUME_ORIENTATIONS: tuple[str, ...] = ("array", "radiological")
"""How the three views of a 3D map are drawn: ``"array"`` (axes as stored) or ``"radiological"``
(the map's axes are ``(X, Y, Z)`` of a RAS+ scan: sagittal, coronal and axial planes with rows and
columns as :func:`convscope.core.view.plane_slice` draws them)."""


def _volume_views(
    maps: np.ndarray, volume: str, channels: Sequence[int] | np.ndarray | None = None,
    orientation: str = "array",
) -> tuple[list[np.ndarray], np.ndarray]:
    """The three ``(C, a, b)`` float32 views of ``(C, D, H, W)`` volumes: middle slices or MIPs
    (axis 0, 1, 2) of the chosen channels, and the channel indices.

    ``orientation="radiological"``: each view is flipped on both axes and transposed, which makes
    the axis-0, 1 and 2 views the sagittal (rows S->I, cols A->P), coronal (S->I, R->L) and axial
    (A->P, R->L) planes of a RAS+ map. Views are taken before anything is copied: a streamed volume
    is never duplicated, only its three small views are.
    """
    count, depth, height, width = maps.shape
    index = np.arange(count) if channels is None else _check_channels(count, channels)
    if volume == "slices":
        views = [maps[:, depth // 2], maps[:, :, height // 2], maps[:, :, :, width // 2]]
        views = [np.take(v, index, axis=0) for v in views]
    else:
        identity = index.size == count and bool(np.array_equal(index, np.arange(count)))
        chosen = maps if identity else np.take(maps, index, axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rays stay NaN, silently
            views = [np.nanmax(chosen, axis=axis) for axis in (1, 2, 3)]
    if orientation == "radiological":
        views = [np.swapaxes(v[:, ::-1, ::-1], 1, 2) for v in views]
    return [np.ascontiguousarray(v, dtype=np.float32) for v in views], index


def render_activation_grid(
    maps: np.ndarray,
    *,
    channels: Sequence[int] | np.ndarray | None = None,
    cmap: str | np.ndarray = "viridis",
    scale: str = "minmax",
    shared: bool = False,
    cols: int | None = None,
    labels: bool = False,
    volume: str = "slices",
    max_side: int | None = 4096,
    min_cell: int = 48,
    title: str = "",
    spacing: Sequence[float] | None = None,
    unit: str = "mm",
    orientation: str = "array",
) -> Picture:
    """Draw feature maps of one sample as a grid of colour-mapped cells.

    Layout by number of spatial axes:
        * 1 (``(C, L)``): each channel is a horizontal strip ``max(8, L // 8)`` px tall (nearest
          upscaled; widened by an integer factor to at least ``4 * min_cell`` px), in one column
          unless ``cols`` is given.
        * 2 (``(C, H, W)``): each channel is one cell.
        * 3 (``(C, D, H, W)``): each cell shows three views side by side with a 1 px gap: the middle
          slices along axes D, H and W (``volume="slices"``; 2 px between cells, gaps and empty
          space in a cell are grey), or the maximum-intensity projections
          along them (``volume="mip"``, NaN-aware). The views of a channel share one scale.

    Cells are upscaled by an integer factor so their short side is at least ``min_cell`` px, reduced
    (down to 1) so the whole image stays within ``max_side`` px per side when possible. When even
    1 px per value exceeds ``max_side`` (2-D maps), each cell is downsampled by averaging
    ``s x s`` blocks with the smallest integer ``s`` that fits (``meta["downsample"] = s``);
    ``max_side=None`` never downsamples (full resolution). The default column count makes the image
    roughly square. Normalisation uses the values shown.

    Args:
        maps: ``(C, *spatial)`` real array, 1 to 3 spatial axes (float32 preferred).
        channels: channel indices to draw, in this order; None draws all.
        cmap: colormap name or ``(K, 3)`` table. NaN pixels are magenta.
        scale: ``"minmax"``, ``"symmetric"`` or ``"percentile"`` (see :func:`normalize`).
        shared: one scale for all shown channels instead of one per channel.
        cols: cells per row.
        labels: draw the channel index in each cell's top-left corner.
        volume: ``"slices"`` or ``"mip"`` (3-D maps only, but always validated).
        max_side: largest image side in pixels (upscaling is reduced, then cells downsampled, to
            fit); None for full resolution.
        min_cell: smallest wanted short side of a cell in pixels.
        title: figure title (e.g. the layer name) above the grid in the figure.
        spacing: ``(row, column)`` physical size of one map value in ``unit`` (2-D maps): the figure
            shows the grid in that aspect (non-square values stay non-square) with a scale bar.
            ``pixels`` are unchanged.
        unit: unit of ``spacing`` (e.g. ``"mm"``).
        orientation: 3-D maps: ``"array"`` (the views along axes 0, 1, 2 as stored) or
            ``"radiological"`` (the maps are ``(X, Y, Z)`` of a RAS+ scan: the views are its sagittal,
            coronal and axial planes in radiological view; ``meta["views"]`` names them).

    Returns:
        :class:`Picture` (RGB ``uint8``) whose ``meta`` has ``value_range`` (finite ``[min, max]``
        of the shown values, or None), ``nan_count``, ``inf_count``, ``cell_size`` (``[h, w]`` px),
        ``cols``, ``rows``, ``scale_factor``, ``cmap``, ``scale``, ``shared``, ``scale_range``
        (the values of the colour bar's ends when one scale serves every cell, else None). Its
        ``scene`` is the figure: the grid (labels as text), a colour bar stating the scale (numbers
        for a shared scale or one channel; ``min``/``max`` of each cell for per-channel scales).

    Raises:
        ConvscopeError: (a ``ValueError``) for bad shapes, channels, scale, volume, cmap or sizes.
    """
    arr = np.asarray(maps)
    if arr.ndim not in (2, 3, 4) or arr.shape[0] == 0:
        raise ConvscopeError(
            f"maps must be (C, L), (C, H, W) or (C, D, H, W) with C >= 1 (one sample), got shape {arr.shape}"
        )
    if any(s == 0 for s in arr.shape[1:]):
        raise ConvscopeError(f"maps have an empty spatial axis: shape {arr.shape}")
    _check_scale(scale)
    side: int = _UNBOUNDED if max_side is None else int(max_side)
    _check_common(cols, side)
    if volume not in VOLUME_MODES:
        raise ConvscopeError(f"unknown volume mode {volume!r}; use 'slices' or 'mip'")
    if orientation not in VOLUME_ORIENTATIONS:
        raise ConvscopeError(f"unknown orientation {orientation!r}; use 'array' or 'radiological'")
    if int(min_cell) < 1:
        raise ConvscopeError(f"min_cell must be a positive number of pixels, got {min_cell}")
    lut = _as_lut(cmap)
    pad = 1
    pad_color = _separator(lut)
    spatial = arr.ndim - 1
    downsample = 1
    if spatial == 3:  # views first: a (C, D, H, W) volume is never copied whole
        views, index = _volume_views(arr, volume, channels, orientation)
        count = int(index.size)
    else:
        sel, index = _select(arr, channels)
        count = sel.shape[0]
    texts = [str(int(i)) for i in index] if labels else []
    label_h, label_w = _label_cell_size(texts) if labels else (0, 0)

    if spatial == 1:
        length = sel.shape[1]
        norm, stats = _normalize_owned(sel, scale=scale, shared=shared)
        index, table = _lookup(norm.unit[:, None], lut)  # (C, 1, L)
        cols_used = 1 if cols is None else max(1, min(int(cols), count))
        rows = math.ceil(count / cols_used)
        fx_want = max(1, math.ceil(4 * int(min_cell) / length))
        fx = _fit_factor(fx_want, lambda f: (0, cols_used * (length * f + pad) + pad), side)
        strip_want = max(8, length // 8, label_h)
        strip = _fit_factor(strip_want, lambda f: (rows * (f + pad) + pad, 0), side)
        pixels = _tile_mapped(index, table, cols_used, pad, pad_color, (strip, fx))
        cell_hw = (strip, length * fx)
        factor = fx
    elif spatial == 2:
        height, width = sel.shape[1:]
        cols_used = _aspect_cols(count, height, width) if cols is None else max(1, min(int(cols), count))
        rows = math.ceil(count / cols_used)
        step = 1
        while max(rows * (math.ceil(height / step) + pad) + pad, cols_used * (math.ceil(width / step) + pad) + pad) > side \
                and min(height, width) // (step + 1) >= 1:
            step += 1
        if step > 1:  # the grid would exceed max_side at 1 px per value: average step x step blocks per cell
            sel = _block_mean(sel, step)
            height, width = sel.shape[1:]
            downsample = step
        norm, stats = _normalize_owned(sel, scale=scale, shared=shared)
        index, table = _lookup(norm.unit, lut)
        want = max(1, math.ceil(int(min_cell) / min(height, width)), math.ceil(label_h / height), math.ceil(label_w / width))
        factor = _fit_factor(
            want, lambda f: (rows * (height * f + pad) + pad, cols_used * (width * f + pad) + pad), side
        )
        pixels = _tile_mapped(index, table, cols_used, pad, pad_color, (factor, factor))
        cell_hw = (height * factor, width * factor)
    else:
        pad = 2
        view_hw = [v.shape[1:] for v in views]
        base_h = max(h for h, _ in view_hw)
        base_w = sum(w for _, w in view_hw)
        cols_used = _aspect_cols(count, base_h, base_w + 2) if cols is None else max(1, min(int(cols), count))
        rows = math.ceil(count / cols_used)
        want = max(1, math.ceil(int(min_cell) / min(base_h, base_w)), math.ceil(label_h / base_h))

        def extent(f: int) -> tuple[int, int]:
            return rows * (base_h * f + pad) + pad, cols_used * (base_w * f + 2 + pad) + pad

        factor = _fit_factor(want, extent, side)
        cell_h, cell_w = base_h * factor, base_w * factor + 2
        composite = np.full((count, cell_h, cell_w), np.nan, dtype=np.float32)
        background = np.ones((cell_h, cell_w), dtype=bool)
        x = 0
        nan_count = inf_count = 0
        for view in views:  # three views, each vectorised over all channels
            vh, vw = view.shape[1] * factor, view.shape[2] * factor
            composite[:, :vh, x : x + vw] = _upscale(view, factor, factor)
            background[:vh, x : x + vw] = False
            nan_count += int(np.isnan(view).sum())
            inf_count += int(np.isinf(view).sum())
            x += vw + 1
        norm, stats = _normalize_owned(composite, scale=scale, shared=shared)
        index, table = _lookup(norm.unit, lut)
        table = np.concatenate([table, _gap_color(pad_color)[None]])
        index[:, background] = len(table) - 1
        stats = type(stats)(stats.data_min, stats.data_max, nan_count, inf_count)
        pixels = _tile_mapped(index, table, cols_used, pad, pad_color)
        cell_hw = (cell_h, cell_w)

    one_scale = bool(shared) or count == 1
    scale_range = _scale_range(norm) if one_scale else None
    label_items: list[tuple[float, float, str]] = []
    bare = pixels
    if labels:
        corners = _cell_corners(count, cols_used, cell_hw, pad)
        bare = pixels.copy()
        pixels = _draw_corner_labels(pixels, texts, corners)
        label_items = [(x, y, t) for t, (x, y) in zip(texts, corners)]
    box, per_unit = _physical_box(bare, spacing, factor * downsample, spatial)
    scene = data_figure(
        bare, lut=lut, low=None if scale_range is None else scale_range[0],
        high=None if scale_range is None else scale_range[1], scale=scale,
        scope="shared" if shared else ("map" if count == 1 else "channel"), title=title, labels=label_items,
        box=box, px_per_unit=per_unit, unit=unit,
    )
    meta: dict[str, Any] = {
        "value_range": _value_range(stats),
        "scale_range": scale_range,
        "nan_count": stats.nan_count,
        "inf_count": stats.inf_count,
        "cell_size": [int(cell_hw[0]), int(cell_hw[1])],
        "cols": int(cols_used),
        "rows": int(rows),
        "scale_factor": int(factor),
        "downsample": int(downsample),
        "cmap": colormap_name(cmap),
        "scale": scale,
        "shared": bool(shared),
    }
    if spatial == 3:
        meta["volume"] = volume
        meta["orientation"] = orientation
        meta["views"] = (["sagittal", "coronal", "axial"] if orientation == "radiological"
                         else ["axis 0", "axis 1", "axis 2"])
    return Picture(pixels=pixels, meta=meta, scene=scene)


# --------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------


def _rgb_pixels(unit: np.ndarray) -> np.ndarray:
    """``(O, 3, kh, kw)`` unit floats -> ``(O, kh, kw, 3)`` uint8; a NaN in any channel -> magenta."""
    scaled = np.multiply(unit.transpose(0, 2, 3, 1), np.float32(255.0), dtype=np.float32)
    scaled += np.float32(0.5)
    nan_mask = np.isnan(scaled).any(axis=-1)
    np.nan_to_num(scaled, copy=False, nan=0.0)
    pixels = scaled.astype(np.uint8)
    pixels[nan_mask] = NAN_COLOR
    return pixels


def render_kernel_grid(
    weights: np.ndarray,
    *,
    groups: int = 1,
    scale: str = "symmetric",
    shared: bool = False,
    cmap: str | np.ndarray | None = None,
    rgb: bool = False,
    cols: int | None = None,
    labels: bool = False,
    max_side: int = 4096,
    title: str = "",
) -> Picture:
    """Draw the filters of one convolution layer.

    Layouts (``meta["layout"]``):
        * ``"cells"``: rows are output filters, columns input channels (group-local index); each cell
          is one kernel: ``kh x kw`` for 2-D, a ``1 x k`` strip for 1-D, the ``kd`` depth slices side
          by side (1 px grey gaps, 3 px between cells) for 3-D. When there is one input channel per
          group (depthwise) the ``O`` cells wrap into a near-square grid (or ``cols``) instead of a
          single column.
        * ``"matrix"``: every kernel is ``1``/``1x1``/``1x1x1``, or 2-D of at most ``2x2`` in a layer
          of at least :data:`MATRIX_MIN_KERNELS` kernels: the layer is one ``O x I`` heat map (rows
          filters, columns inputs; a ``2x2`` kernel is a ``2x2`` block of it), no gaps, with filter
          and input indices in the margins when ``labels``.
        * ``"rgb"``: ``rgb=True`` (needs ``I == 3`` and 2-D kernels): each filter is one colour image
          (input channels as R, G, B), tiled near-square or in ``cols`` columns; with the symmetric
          scale 0 is mid grey.

    Each filter is normalised over all its ``I * prod(k)`` weights, or the whole layer with
    ``shared``. Kernels are nearest-upscaled to at least 3 px per weight and ~24 px per kernel (~40 px per RGB filter),
    reduced to stay within ``max_side`` but never below the readable minimum: a kernel cell's longer
    side is at least :data:`MIN_KERNEL_CELL` px and every weight at least 2 px (``max_side`` yields to
    that). With ``labels`` in the ``"rgb"``/depthwise layouts, cells are at least twice the label
    box in each direction, so a label covers at most a corner (a quarter) of its kernel.
    ``cols`` applies to the ``"rgb"`` and depthwise layouts.

    Args:
        weights: ``(O, I, *k)`` real array (canonical layout, ``I`` = input channels per group),
            1 to 3 kernel axes.
        groups: convolution groups (``O`` must be divisible by it); recorded in ``meta``.
        scale: ``"symmetric"``, ``"minmax"`` or ``"percentile"`` (see :func:`normalize`).
        shared: one scale for the whole layer instead of one per filter.
        cmap: colormap name or ``(K, 3)`` table; default ``"RdBu_r"`` (symmetric, percentile) or
            ``"gray"`` (minmax). Ignored for ``rgb``.
        rgb: draw each 3-input filter as a colour image.
        cols: columns of the ``"rgb"`` / depthwise grid.
        labels: ``"cells"``/``"matrix"``: filter indices in a left margin and input indices in a top
            margin (thinned so they do not overlap); ``"rgb"``/depthwise: filter index in each cell.
        max_side: largest image side in pixels.

    Returns:
        :class:`Picture` (RGB ``uint8``) whose ``meta`` has ``value_range``, ``rows``, ``cols``,
        ``scale_factor`` (px per weight), ``layout``, ``cell_size``, ``nan_count``, ``inf_count``,
        ``cmap``, ``scale``, ``shared``, ``groups``.

    Raises:
        ConvscopeError: (a ``ValueError``) for a bad shape, groups, scale, cmap or an impossible ``rgb``.
    """
    arr = np.asarray(weights)
    if arr.ndim not in (3, 4, 5) or 0 in arr.shape:
        raise ConvscopeError(
            f"weights must be (out, in_per_group, *kernel) with 1 to 3 kernel axes, got shape {arr.shape}"
        )
    _check_scale(scale)
    _check_common(cols, max_side)
    if int(groups) < 1 or arr.shape[0] % int(groups):
        raise ConvscopeError(f"groups={groups} must be a positive divisor of out_channels={arr.shape[0]}")
    out_ch, in_ch = arr.shape[:2]
    ksize = tuple(int(s) for s in arr.shape[2:])
    if rgb and in_ch != 3:
        raise ConvscopeError(f"rgb=True needs 3 input channels per filter, these weights have {in_ch}; use rgb=False")
    if rgb and len(ksize) != 2:
        raise ConvscopeError(f"rgb=True needs 2-D kernels, these are {len(ksize)}-D {ksize}; use rgb=False")
    if cmap is None:
        cmap = "gray" if scale == "minmax" else "RdBu_r"
    lut = _as_lut(cmap)

    work = np.array(arr, dtype=np.float32, copy=True, order="C")
    norm, stats = _normalize_owned(work.reshape(out_ch, -1), scale=scale, shared=shared)
    unit = work  # normalised in place, (O, I, *k)
    indices = [str(i) for i in range(out_ch)]
    label_h, label_w = _label_cell_size(indices) if labels else (0, 0)
    label_items: list[tuple[float, float, str]] = []
    bare: np.ndarray | None = None
    margin = (label_h + 2, max(_text_box(t)[2] for t in indices) + 6) if labels else (0, 0)

    if rgb:
        layout = "rgb"
        kh, kw = ksize
        pad = 1
        pad_color = np.array((255, 255, 255), dtype=np.uint8)
        cells = _rgb_pixels(unit)
        cols_used = _aspect_cols(out_ch, kh, kw) if cols is None else max(1, min(int(cols), out_ch))
        rows = math.ceil(out_ch / cols_used)
        floor = _kernel_floor(kh, kw, label_h, label_w)
        want = max(3, math.ceil(40 / max(kh, kw)), floor)
        factor = _fit_factor(want, lambda f: (rows * (kh * f + pad) + pad, cols_used * (kw * f + pad) + pad), max_side)
        factor = max(factor, floor)
        pixels = _tile_into(cells, cols_used, pad, pad_color, (factor, factor))
        cell_hw = (kh * factor, kw * factor)
        if labels:
            corners = _cell_corners(out_ch, cols_used, cell_hw, pad)
            bare = pixels.copy()
            pixels = _draw_corner_labels(pixels, indices, corners)
            label_items = [(x, y, t) for t, (x, y) in zip(indices, corners)]
    elif all(s == 1 for s in ksize) or (
        len(ksize) == 2 and max(ksize) <= 2 and in_ch > 1 and out_ch * in_ch >= MATRIX_MIN_KERNELS
    ):
        layout = "matrix"
        rows, cols_used = out_ch, in_ch
        bh, bw = (ksize[0], ksize[1]) if len(ksize) == 2 else (1, 1)
        plane = unit.reshape(out_ch, in_ch, bh, bw).transpose(0, 2, 1, 3).reshape(1, out_ch * bh, in_ch * bw)
        index, table = _lookup(plane, lut)
        want = max(3, math.ceil(128 / max(out_ch * bh, in_ch * bw)))
        factor = _fit_factor(want, lambda f: (out_ch * bh * f + margin[0], in_ch * bw * f + margin[1]), max_side)
        factor = max(factor, 2)
        pixels = _tile_mapped(index, table, 1, 0, np.zeros(3, np.uint8), (factor, factor))
        cell_hw = (bh * factor, bw * factor)
        if labels:
            centers_r = (np.arange(out_ch) + 0.5) * bh * factor
            centers_c = (np.arange(in_ch) + 0.5) * bw * factor
            pixels, bare, label_items = _add_margin_labels(
                pixels, row_centers=centers_r, row_texts=indices,
                col_centers=centers_c, col_texts=[str(i) for i in range(in_ch)],
            )
    else:
        layout = "cells"
        pad_color = _separator(lut)
        index, table = _lookup(unit.reshape(out_ch * in_ch, *ksize), lut)  # (O*I, *k)
        wrap = in_ch == 1
        count = out_ch * in_ch
        if len(ksize) == 1:
            base_h, base_w, gap_slices, pad = 1, ksize[0], 0, 1
            cells_f1 = index[:, None]  # (N, 1, k)
        elif len(ksize) == 2:
            base_h, base_w, gap_slices, pad = ksize[0], ksize[1], 0, 1
            cells_f1 = index
        else:
            kd, kh, kw = ksize
            base_h, base_w, gap_slices, pad = kh, kd * kw, kd - 1, 3
            cells_f1 = None
        if wrap:
            cols_used = _aspect_cols(out_ch, base_h, base_w + gap_slices) if cols is None else max(1, min(int(cols), out_ch))
        else:
            cols_used = in_ch
        rows = math.ceil(count / cols_used)
        floor = _kernel_floor(base_h, base_w, label_h if labels and wrap else 0, label_w if labels and wrap else 0)
        want = max(3, math.ceil(24 / max(ksize)), floor)
        extra = (0, 0) if wrap else margin

        def extent(f: int) -> tuple[int, int]:
            return (
                rows * (base_h * f + pad) + pad + extra[0],
                cols_used * (base_w * f + gap_slices + pad) + pad + extra[1],
            )

        factor = max(_fit_factor(want, extent, max_side), floor)
        if cells_f1 is not None:
            pixels = _tile_mapped(cells_f1, table, cols_used, pad, pad_color, (factor, factor))
            cell_hw = (base_h * factor, base_w * factor)
        else:
            kd, kh, kw = ksize
            colored = np.take(table, index, axis=0)  # (N, kd, kh, kw, 3)
            up = _upscale(np.moveaxis(colored, -1, 1), factor, factor)  # (N, 3, kd, kh*f, kw*f)
            up = np.moveaxis(up, 1, -1)  # (N, kd, kh*f, kw*f, 3)
            composite = np.empty((count, kh * factor, kd, kw * factor + 1, 3), dtype=np.uint8)
            composite[...] = _gap_color(pad_color)
            composite[:, :, :, : kw * factor] = up.transpose(0, 2, 1, 3, 4)
            cells = composite.reshape(count, kh * factor, kd * (kw * factor + 1), 3)[:, :, :-1]
            pixels = _tile_into(cells, cols_used, pad, pad_color)
            cell_hw = (kh * factor, kd * kw * factor + kd - 1)
        if labels and wrap:
            corners = _cell_corners(out_ch, cols_used, cell_hw, pad)
            bare = pixels.copy()
            pixels = _draw_corner_labels(pixels, indices, corners)
            label_items = [(x, y, t) for t, (x, y) in zip(indices, corners)]
        elif labels:
            centers_r = pad + np.arange(out_ch) * (cell_hw[0] + pad) + cell_hw[0] / 2
            centers_c = pad + np.arange(in_ch) * (cell_hw[1] + pad) + cell_hw[1] / 2
            pixels, bare, label_items = _add_margin_labels(
                pixels, row_centers=centers_r, row_texts=indices,
                col_centers=centers_c, col_texts=[str(i) for i in range(in_ch)],
            )

    one_scale = bool(shared) or out_ch == 1
    scale_range = _scale_range(norm) if one_scale else None
    scene = data_figure(
        pixels if bare is None else bare, lut=get_colormap("gray") if rgb else lut,
        low=None if scale_range is None else scale_range[0], high=None if scale_range is None else scale_range[1],
        scale=scale, scope="shared" if shared else ("map" if out_ch == 1 else "filter"), title=title,
        labels=label_items,
        caption=("each filter as an RGB image (input channels 0, 1, 2 as R, G, B); grey levels per channel, "
                 + ("one scale for the layer" if shared else "each filter on its own range")) if rgb else None,
    )
    meta: dict[str, Any] = {
        "value_range": _value_range(stats),
        "scale_range": scale_range,
        "rows": int(rows),
        "cols": int(cols_used),
        "scale_factor": int(factor),
        "layout": layout,
        "cell_size": [int(cell_hw[0]), int(cell_hw[1])],
        "nan_count": stats.nan_count,
        "inf_count": stats.inf_count,
        "cmap": "rgb" if rgb else colormap_name(cmap),
        "scale": scale,
        "shared": bool(shared),
        "groups": int(groups),
    }
    return Picture(pixels=pixels, meta=meta, scene=scene)


# --------------------------------------------------------------------------------------------
# overlay
# --------------------------------------------------------------------------------------------


def _as_rgb_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ConvscopeError(
            f"overlay image must be uint8 (H, W, 3) or (H, W); got {img.dtype}: convert with np.clip(x * 255, 0, 255).astype(np.uint8)"
        )
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim == 3 and img.shape[2] in (3, 4):
        return np.ascontiguousarray(img[:, :, :3])
    raise ConvscopeError(f"overlay image must be (H, W, 3) RGB or (H, W) gray uint8, got shape {img.shape}")


def _resize_map(amap: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsample of a 2-D float map to ``(height, width)``, NaN/Inf preserved by position.

    Non-finite pixels are filled with the finite minimum for the bilinear pass (so they do not smear),
    then restored where a nearest-neighbour resize of their mask says so.
    """
    from PIL import Image

    src = np.ascontiguousarray(amap, dtype=np.float32)
    if src.shape == (height, width):
        return src.copy()
    finite = np.isfinite(src)
    code = None
    filled = src
    if not finite.all():
        fill = float(src[finite].min()) if finite.any() else 0.0
        filled = np.where(finite, src, np.float32(fill))
        code = np.zeros(src.shape, dtype=np.uint8)
        code[np.isnan(src)] = 1
        code[src == np.inf] = 2
        code[src == -np.inf] = 3
    resized = np.asarray(
        Image.fromarray(filled).resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32
    ).copy()
    if code is not None:
        code_big = np.asarray(Image.fromarray(code).resize((width, height), Image.Resampling.NEAREST))
        resized[code_big == 1] = np.nan
        resized[code_big == 2] = np.inf
        resized[code_big == 3] = -np.inf
    return resized


def render_overlay(
    image: np.ndarray,
    amap: np.ndarray,
    *,
    cmap: str | np.ndarray = "jet",
    alpha: float = 0.5,
    scale: str = "minmax",
    title: str = "",
) -> Picture:
    """Blend a colour-mapped activation map over an image.

    The map is upsampled bilinearly (Pillow) to the image size, normalised, colour-mapped and
    blended: ``out = (1 - alpha) * image + alpha * heat`` (rounded). NaN map pixels are magenta in
    the heat map.

    Args:
        image: ``(H, W, 3)`` RGB ``uint8`` (``(H, W)`` gray and ``(H, W, 4)`` RGBA are accepted;
            alpha is dropped).
        amap: ``(h, w)`` real map.
        cmap: colormap name or ``(K, 3)`` table.
        alpha: weight of the heat map in ``[0, 1]``: 0 returns the image, 1 the heat map.
        scale: ``"minmax"``, ``"symmetric"`` or ``"percentile"``.

        title: figure title above the overlay.

    Returns:
        :class:`Picture` ``(H, W, 3)`` with ``meta`` ``value_range`` (finite ``[min, max]`` of
        ``amap``), ``scale_range`` (the values of the colour bar's ends: the range the colours were
        normalised on, i.e. of the upsampled map), ``alpha``, ``cmap``, ``scale``, ``nan_count``.
        Its ``scene`` is the figure with the colour bar (the map's colours at full weight) and the
        blend weight stated.

    Raises:
        ConvscopeError: (a ``ValueError``) for bad shapes, dtype, alpha, scale or cmap.
    """
    try:
        weight = float(alpha)
    except (TypeError, ValueError):
        raise ConvscopeError(f"alpha must be a number in [0, 1], got {alpha!r}") from None
    if not 0.0 <= weight <= 1.0:
        raise ConvscopeError(f"alpha must be in [0, 1] (0 = only the image, 1 = only the map), got {alpha}")
    _check_scale(scale)
    lut = _as_lut(cmap)
    base = _as_rgb_image(image)
    heat_map = np.asarray(amap)
    if heat_map.ndim != 2 or 0 in heat_map.shape:
        raise ConvscopeError(f"overlay needs a 2-D (h, w) activation map, got shape {heat_map.shape}; pick a channel/slice first")
    height, width = base.shape[:2]
    finite = np.isfinite(heat_map)
    value_range = [float(heat_map[finite].min()), float(heat_map[finite].max())] if finite.any() else None
    nan_count = int(np.isnan(heat_map).sum())

    resized = _resize_map(heat_map, height, width)
    norm, _ = _normalize_owned(resized[None], scale=scale, shared=False)
    heat = apply_colormap(norm.unit[0], lut)
    if weight == 0.0:
        pixels = base.copy()
    elif weight == 1.0:
        pixels = heat
    else:
        blend = base.astype(np.float32)
        blend *= np.float32(1.0 - weight)
        blend += heat.astype(np.float32) * np.float32(weight)
        blend += np.float32(0.5)
        pixels = np.clip(blend, 0, 255).astype(np.uint8)
    scale_range = _scale_range(norm)
    what = {"minmax": "min-max", "symmetric": "symmetric about 0", "percentile": "percentile 1-99, clipped"}
    scene = data_figure(
        pixels, lut=lut, low=None if scale_range is None else scale_range[0],
        high=None if scale_range is None else scale_range[1], scale=scale, scope="map", title=title,
        caption=f"{what[scale]}; blended over the input at alpha {weight:g}",
    )
    meta = {
        "value_range": value_range,
        "scale_range": scale_range,
        "alpha": weight,
        "cmap": colormap_name(cmap),
        "scale": scale,
        "nan_count": nan_count,
    }
    return Picture(pixels=pixels, meta=meta, scene=scene)
