"""Figure scenes: a data image with its colour bar (and title, scale bar), a generic colour-mapped
map figure, and :func:`compose` to arrange pictures into one publication figure.

Every picture convscope draws carries its figure (``Picture.scene``), so every file format shows
the same colour scale. The rule for colour bars: one bar states one scale. Panels that share a
scale (``shared=True``, a single map) get a bar with the numbers at its ends; independently scaled
cells (per channel, per filter) get a bar that says so (``min``/``max`` of each cell, or
``-max|x|``/``0``/``+max|x|``), never numbers that are true for one cell only. :func:`compose` puts
one bar for several panels only when their scales are equal, and refuses otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConvscopeError
from .scene import (
    PX_PER_INCH,
    Item,
    Label,
    Raster,
    Scene,
    Text,
    colorbar,
    fit_text_left,
    scalebar,
    text_width,
)

__all__ = ["data_figure", "map_figure", "compose", "MM_PER_INCH"]

MM_PER_INCH = 25.4
_MARGIN = 6
_TITLE_SIZE = 13
_INK = (30, 30, 30)


def data_figure(
    pixels: np.ndarray,
    *,
    lut: np.ndarray | None,
    low: float | None,
    high: float | None,
    scale: str,
    scope: str,
    title: str = "",
    labels: Sequence[tuple[float, float, str]] = (),
    box: tuple[float, float] | None = None,
    px_per_unit: float | None = None,
    unit: str = "mm",
    caption: str | None = None,
    note: str = "",
) -> Scene:
    """The figure of one data image: optional title, the image, its colour bar on the right.

    Args:
        pixels: ``(H, W, 3)`` uint8 data image (a grid, an overlay, a map).
        lut: ``(K, 3)`` uint8 colour table, or None for no colour bar (e.g. a class map).
        low, high: values at the bar's ends (None for independently scaled cells: see
            :func:`~convscope.render.scene.colorbar`).
        scale, scope: stated under the bar (``scope``: ``"shared"``, ``"channel"``, ``"filter"``, ``"map"``).
        title: text above the image (abbreviated from the left, full text on hover).
        labels: ``(x, y, text)`` index labels in image pixels (drawn as :class:`Label` items).
        box: ``(w, h)`` display size of the image (physical aspect); default its pixel size.
        px_per_unit: figure px per physical ``unit`` along x; adds a scale bar under the image.
        note: one extra line under the image (e.g. "2048 of 2048 channels, cells 7x7 px").

    Returns:
        :class:`Scene` with ``meta`` ``colorbars`` and ``body`` (the extent without the bar).
    """
    img_h, img_w = pixels.shape[:2]
    bw, bh = box if box is not None else (float(img_w), float(img_h))
    items: list[Item] = []
    x0 = _MARGIN
    top = _MARGIN
    body_w = x0 + bw + _MARGIN
    if title:
        fitted = fit_text_left(title, _TITLE_SIZE, max(bw + (120 if lut is not None else 0), 200))
        items.append(Text(x0, top, fitted, _TITLE_SIZE, _INK, title=title, role="title"))
        top += _TITLE_SIZE + 8
        body_w = max(body_w, x0 + text_width(fitted, _TITLE_SIZE) + _MARGIN)
    items.append(Raster(x0, top, bw, bh, pixels[..., :3], title=title))
    sx, sy = bw / img_w, bh / img_h
    for lx, ly, text in labels:
        items.append(Label(x0 + lx * sx, top + ly * sy, text))
    y = top + bh
    meta: dict[str, Any] = {}
    if px_per_unit is not None:
        bar_items, (_, sh), info = scalebar(x0, y + 6, px_per_unit, max(20.0, bw / 3), unit=unit)
        items += bar_items
        y += 6 + sh
        meta["scalebar"] = info
    if note:
        items.append(Text(x0, y + 4, fit_text_left(note, 11, max(bw, 160)), 11, (90, 90, 90), title=note,
                          role="note"))
        body_w = max(body_w, x0 + min(max(bw, 160), text_width(note, 11)) + _MARGIN)
        y += 4 + 14
    body_h = y + _MARGIN
    width, height = body_w, body_h
    bars = []
    if lut is not None:
        length = float(min(max(bh, 96.0), 320.0))
        bar_items, (cw, ch), info = colorbar(x0 + bw + 10, top, length, lut=lut, low=low, high=high, scale=scale,
                                             scope=scope, caption=caption)
        items += bar_items
        width = max(body_w, x0 + bw + 10 + cw + _MARGIN)
        height = max(body_h, top + ch + _MARGIN)
        bars.append(info)
    meta.update(colorbars=bars, body=[int(math.ceil(body_w)), int(math.ceil(body_h))],
                colorscale=_scale_key(bars[0], lut) if bars and lut is not None else None)
    return Scene(int(math.ceil(width)), int(math.ceil(height)), tuple(items), meta=meta)


def _scale_key(info: dict[str, Any], lut: np.ndarray) -> dict[str, Any]:
    """What a colour bar means, comparable between panels (shared bar allowed only when equal)."""
    return {"low": info["low"], "high": info["high"], "scale": info["scale"], "scope": info["scope"],
            "lut": bytes(np.asarray(lut, dtype=np.uint8).tobytes()).hex()[:64] + str(len(lut))}


def map_figure(
    amap: np.ndarray,
    *,
    cmap: str | np.ndarray = "viridis",
    scale: str = "minmax",
    title: str = "",
    background: np.ndarray | None = None,
    alpha: float = 0.5,
    spacing: Sequence[float] | None = None,
    unit: str = "mm",
    display: int = 320,
    note: str = "",
) -> Any:
    """A colour-mapped 2-D map (a CAM, a channel, a statistic, a slice) as a figure with its colour bar.

    The reusable entry point for any helper that draws one map: normalisation, colour bar numbers,
    crisp pixels, physical aspect and scale bar come from here.

    Args:
        amap: ``(h, w)`` real map.
        cmap: colormap name or ``(K, 3)`` table.
        scale: ``"minmax"``, ``"symmetric"`` or ``"percentile"``; the bar's ends are the values the
            end colours stand for.
        title: text above the map (full text on hover in SVG).
        background: ``(H, W, 3)`` uint8 image to blend the map over (bilinear upsampling of the map,
            as :func:`~convscope.render.grid.render_overlay`); None shows the map alone.
        alpha: heat-map weight when blending.
        spacing: ``(row, column)`` pixel spacing in ``unit`` (e.g. mm) of the shown image: the
            figure keeps that physical aspect (non-square pixels stay non-square) and gets a scale bar.
        display: longer side of the displayed map in figure px (pixels are repeated, never smoothed).
        note: an extra line under the map.

    Returns:
        :class:`~convscope.render.picture.Picture`: ``pixels`` the map (or overlay) at its own
        resolution, ``scene`` the figure; ``meta`` ``value_range``, ``scale_range`` (bar ends),
        ``cmap``, ``scale``.
    """
    from .colormap import _as_lut, apply_colormap, colormap_name
    from .grid import render_overlay
    from .normalize import _check_scale, _normalize_owned
    from .picture import Picture

    _check_scale(scale)
    arr = np.asarray(amap)
    if arr.ndim != 2 or 0 in arr.shape or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ConvscopeError(f"map_figure needs a real 2-D (h, w) map, got shape {arr.shape} {arr.dtype}")
    lut = _as_lut(cmap)
    if background is not None:
        overlay = render_overlay(background, arr, cmap=lut, alpha=alpha, scale=scale)
        pixels = overlay.pixels
        low, high = overlay.meta["scale_range"]
        meta = dict(overlay.meta)
    else:
        norm, stats = _normalize_owned(np.array(arr, dtype=np.float32, copy=True)[None], scale=scale, shared=True)
        pixels = apply_colormap(norm.unit[0], lut)
        low, high = _finite_or_none(norm.low[0]), _finite_or_none(norm.high[0])
        meta = {"value_range": None if stats.data_min is None else [stats.data_min, stats.data_max],
                "cmap": colormap_name(cmap), "scale": scale, "nan_count": stats.nan_count}
    h, w = pixels.shape[:2]
    if spacing is not None:
        sy, sx = (float(v) for v in spacing)
        if not (sy > 0 and sx > 0):
            raise ConvscopeError(f"spacing must be two positive numbers (row, column) in {unit}, got {tuple(spacing)}")
        phys_h, phys_w = h * sy, w * sx
    else:
        sy = sx = 1.0
        phys_h, phys_w = float(h), float(w)
    k = float(display) / max(phys_h, phys_w)
    box = (phys_w * k, phys_h * k)
    per_unit = k if spacing is not None else None  # figure px per unit (same along x and y)
    meta.update(scale_range=[low, high], spacing=None if spacing is None else [sy, sx])
    scene = data_figure(pixels, lut=lut, low=low, high=high, scale=scale, scope="map", title=title, box=box,
                        px_per_unit=per_unit, unit=unit, note=note)
    return Picture(pixels=pixels, meta=meta, scene=scene)


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def _letter(i: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return letters[i] if i < 26 else letters[i // 26 - 1] + letters[i % 26]


def compose(
    pictures: Sequence[Any],
    *,
    cols: int | None = None,
    titles: Sequence[str] | None = None,
    letters: bool = True,
    shared_colorbar: bool = False,
    title: str = "",
    width_mm: float | None = None,
    width_in: float | None = None,
    dpi: float = 300.0,
    gap: int = 14,
) -> Any:
    """Arrange pictures in rows and columns into one figure (one PDF page, one SVG, one PNG).

    Args:
        pictures: :class:`~convscope.render.picture.Picture` objects (their figures are placed as
            vectors: text stays text, pixels stay crisp).
        cols: panels per row (default: all in one row up to 3, then near-square).
        titles: one title per panel, drawn above it after its letter.
        letters: panel letters a, b, c... in bold-size text at each panel's top left.
        shared_colorbar: draw one colour bar for all panels instead of one each. Allowed only when
            every panel has the same colour scale (same colormap, scale, scope and range); raises
            otherwise (one bar for independently scaled panels would mislead).
        title: a line above everything.
        width_mm / width_in: physical width of the figure (PDF page; PNG at ``dpi``); default 96 px
            per inch.
        dpi: resolution of the PNG (``figure_pixels``) and of the rasters in the PDF.

    Returns:
        :class:`~convscope.render.picture.Picture` whose ``scene`` is the composed figure and whose
        ``pixels`` are that figure painted at ``dpi``; ``meta`` ``size_in``, ``dpi``, ``panels``.
    """
    from .picture import Picture
    from .scene import paint_png

    if not pictures:
        raise ConvscopeError("compose needs at least one picture")
    if titles is not None and len(titles) != len(pictures):
        raise ConvscopeError(f"compose got {len(titles)} titles for {len(pictures)} pictures; give one per picture")
    scenes = [p.figure for p in pictures]
    shared_bar = None
    if shared_colorbar:
        keys = [s.meta.get("colorscale") for s in scenes]
        if any(k is None for k in keys):
            raise ConvscopeError("shared_colorbar=True needs every panel to have a colour scale; one has none")
        if any(k != keys[0] for k in keys[1:]):
            raise ConvscopeError(
                "shared_colorbar=True but the panels are scaled differently (range, scale or colormap differ); "
                "render them with one shared scale (e.g. normalize='shared' and the same cmap) or keep a bar per panel"
            )
        shared_bar = [i for i in scenes[0].items if i.group == "colorbar"]
        bar_x0 = min(_x(i) for i in shared_bar)
        bar_y0 = min(_y(i) for i in shared_bar)
        bar_w = scenes[0].width - bar_x0
        bar_h = max(_y(i) for i in shared_bar) - bar_y0 + 30
        scenes = [s.without("colorbar") for s in scenes]
    count = len(scenes)
    if cols is None:
        cols = count if count <= 3 else math.ceil(math.sqrt(count))
    cols = max(1, min(int(cols), count))
    rows = math.ceil(count / cols)
    head = 18
    col_w = [max(s.width for s in scenes[c::cols]) for c in range(cols)]
    row_h = [max(s.height for s in scenes[r * cols : (r + 1) * cols]) + head for r in range(rows)]
    top = _MARGIN + (22 if title else 0)
    items: list[Item] = []
    if title:
        items.append(Text(_MARGIN, _MARGIN, title, 15, _INK, role="title"))
    panels = []
    y = top
    for r in range(rows):
        x = _MARGIN
        for c in range(cols):
            i = r * cols + c
            if i >= count:
                break
            scene = scenes[i]
            label = _letter(i) if letters else ""
            name = titles[i] if titles is not None else ""
            if label:
                items.append(Text(x, y, label, 16, _INK, role="panel-letter"))
            if name:
                lx = x + (text_width(label, 16) + 8 if label else 0)
                fitted = fit_text_left(name, 12, max(60, col_w[c] - (lx - x)))
                items.append(Text(lx, y + 3, fitted, 12, _INK, title=name, role="panel-title"))
            items += scene.shifted(x, y + head)
            panels.append({"letter": label, "title": name, "box": [x, y, x + scene.width, y + head + scene.height]})
            x += col_w[c] + gap
        y += row_h[r] + gap
    width: float = _MARGIN + sum(col_w) + gap * (cols - 1) + _MARGIN
    height: float = y - gap + _MARGIN
    bars: list[dict[str, Any]] = []
    if shared_bar is not None:
        bx = width
        by = top + head
        items += [_shift_item(i, bx - bar_x0, by - bar_y0) for i in shared_bar]
        width = bx + bar_w + _MARGIN
        height = max(height, by + bar_h)
        bars = list(pictures[0].figure.meta.get("colorbars", []))
    else:
        for s in [p.figure for p in pictures]:
            bars += s.meta.get("colorbars", [])
    width, height = int(math.ceil(width)), int(math.ceil(height))
    if width_mm is not None:
        width_in = float(width_mm) / MM_PER_INCH
    size_in = (float(width_in), float(width_in) * height / width) if width_in else (width / PX_PER_INCH,
                                                                                  height / PX_PER_INCH)
    meta = {"kind": "figure", "panels": panels, "size_in": list(size_in), "dpi": float(dpi), "colorbars": bars,
            "shared_colorbar": shared_bar is not None}
    png_scale = size_in[0] * float(dpi) / width
    scene = Scene(width, height, tuple(items), meta=dict(meta, body=[width, height], png_scale=png_scale))
    return Picture(pixels=paint_png(scene, scale=png_scale), meta=meta, scene=scene)


def _x(item: Item) -> float:
    return min(p[0] for p in item.points) if hasattr(item, "points") else item.x


def _y(item: Item) -> float:
    return min(p[1] for p in item.points) if hasattr(item, "points") else item.y


def _shift_item(item: Item, dx: float, dy: float) -> Item:
    from .scene import _shift

    return _shift(item, dx, dy)
