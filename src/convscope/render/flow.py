"""The U-Net flow figure and the per-level panel figure (Pillow drawing + vectorised numpy thumbnails).

Pure rendering: numpy arrays and plain records in, :class:`~.picture.Picture` out. The records
(:class:`FlowBlock`, :class:`FlowLink`, :class:`PanelColumn`) are built by :mod:`convscope.unet_flow`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.view import FIRST_AXIS, MiddleView
from ..errors import ConvscopeError
from .picture import Picture
from .scene import (
    RGB,
    Item,
    Line,
    Polygon,
    Raster,
    Rect,
    Scene,
    Text,
    arrow,
    fit_text_left,
    format_value,
    paint_png,
    text_width,
    wrap_text,
)

__all__ = [
    "FlowBlock",
    "FlowLink",
    "PanelColumn",
    "map_to_2d",
    "colorize_map",
    "resize_nearest",
    "fit_into",
    "label_image",
    "blend",
    "render_flow_figure",
    "render_level_panels",
    "layout_flow_figure",
    "layout_level_panels",
    "CLASS_PALETTE",
]

BACKGROUND = (255, 255, 255)
INK = (30, 30, 30)
MUTED = (110, 110, 110)
DOWN_COLOR = (70, 110, 190)
UP_COLOR = (60, 150, 90)
SKIP_COLOR = (225, 120, 20)
IO_COLOR = (120, 120, 120)
BLOCK_FILL = {
    "input": (238, 238, 238),
    "encoder": (228, 236, 250),
    "bottleneck": (240, 230, 250),
    "decoder": (228, 245, 233),
    "output": (238, 238, 238),
}
BLOCK_EDGE = {
    "input": (150, 150, 150),
    "encoder": DOWN_COLOR,
    "bottleneck": (130, 90, 170),
    "decoder": UP_COLOR,
    "output": (150, 150, 150),
}
LINK_COLOR = {"down": DOWN_COLOR, "up": UP_COLOR, "skip": SKIP_COLOR, "io": IO_COLOR}

CLASS_PALETTE = np.array(
    [
        [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
        [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
    ],
    dtype=np.uint8,
)
"""Colours of predicted classes 0..9 (repeats after 10)."""


@dataclass(frozen=True, eq=False)
class FlowBlock:
    """One box of the U figure.

    Attributes:
        key: unique key (links refer to it).
        column: ``"input"``, ``"encoder"``, ``"bottleneck"``, ``"decoder"`` or ``"output"``.
        level: level index (0 = top); ignored for input/output/bottleneck.
        title: first text line (the node name).
        subtitle: second text line (the shape).
        image: ``(h, w, 3)`` uint8 thumbnail source (fitted into the block, aspect kept).
        hover: hover text of the thumbnail (SVG ``<title>``), e.g. ``"skip source: enc.0"``;
            default: ``title``.
    """

    key: str
    column: str
    level: int
    title: str
    subtitle: str
    image: np.ndarray
    hover: str = ""


@dataclass(frozen=True)
class FlowLink:
    """An arrow between two blocks: ``kind`` ``"down"``, ``"up"``, ``"skip"`` or ``"io"``; optional label.

    A ``"skip"`` gets its own lane (arrow with its label lines above it, ``\n``-separated); a skip
    whose ``src`` and ``dst`` are the same block is drawn as a loop beside that block.
    """

    src: str
    dst: str
    kind: str
    label: str = ""
    title: str = ""
    """Hover text (SVG ``<title>``) of the label; default: the label on one line."""


@dataclass(frozen=True, eq=False)
class PanelColumn:
    """One column of a level panel figure: titles, the channel-mean map and the top-k channel grid.

    Attributes:
        title: e.g. ``"encoder output"``.
        name: node name.
        subtitle: shape and statistics text.
        mean_image: ``(h, w, 3)`` uint8 picture of the channel mean.
        grid_image: ``(h, w, 3)`` uint8 grid of the top channels, or None.
        grid_caption: text under the grid (e.g. ``"top 8 of 32 channels by mean"``).
        mean_range: ``(low, high)`` values of the mean map's colour ends (adds its colour bar).
        lut: ``(K, 3)`` colour table of the mean map (with ``mean_range``).
    """

    title: str
    name: str
    subtitle: str
    mean_image: np.ndarray
    grid_image: np.ndarray | None = None
    grid_caption: str = ""
    mean_range: tuple[float, float] | None = None
    lut: np.ndarray | None = None


# ------------------------------------------------------------------------------------------------
# numpy helpers
# ------------------------------------------------------------------------------------------------


def map_to_2d(maps: np.ndarray, mode: str = "mean", view: MiddleView | None = None) -> np.ndarray:
    """One 2-D float map from ``(C, *spatial)`` activations.

    Args:
        maps: ``(C, L)``, ``(C, H, W)`` or ``(C, D, H, W)`` real array.
        mode: ``"mean"`` (channel mean) or ``"top"`` (the channel with the largest mean).
        view: how a 3-D map becomes 2-D (:class:`~convscope.core.view.MiddleView`: a volume's axial
            middle plane in radiological view); default the middle slice along the first spatial axis.

    Returns:
        ``(H, W)`` float32: 3-D maps give ``view``'s slice; 1-D maps a strip ``(max(4, L // 8), L)``.
    """
    arr = np.asarray(maps, dtype=np.float32)
    if arr.ndim < 2 or arr.ndim > 4:
        raise ConvscopeError(f"maps must be (C, L), (C, H, W) or (C, D, H, W), got shape {arr.shape}")
    if mode == "mean":
        with np.errstate(all="ignore"):
            flat = np.nanmean(np.where(np.isfinite(arr), arr, np.nan), axis=0) if not np.isfinite(arr).all() else arr.mean(axis=0)
    elif mode == "top":
        with np.errstate(all="ignore"):
            scores = np.nan_to_num(arr.reshape(arr.shape[0], -1).mean(axis=1), nan=-np.inf)
        flat = arr[int(np.argmax(scores))]
    else:
        raise ConvscopeError(f"thumbnail must be 'mean' (channel mean) or 'top' (strongest channel), not {mode!r}")
    if flat.ndim == 3:
        flat = (view or FIRST_AXIS).take(flat)
    if flat.ndim == 1:
        flat = np.repeat(flat[None], max(4, flat.shape[0] // 8), axis=0)
    return np.ascontiguousarray(flat, dtype=np.float32)


def colorize_map(amap: np.ndarray, cmap: str = "viridis", scale: str = "minmax") -> np.ndarray:
    """``(h, w)`` float map -> ``(h, w, 3)`` uint8 (normalised on its own range, colour-mapped)."""
    from .colormap import apply_colormap
    from .normalize import normalize

    unit = normalize(np.asarray(amap)[None], scale=scale, shared=False).unit[0]
    return apply_colormap(unit, cmap)


def resize_nearest(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of ``(h, w)`` or ``(h, w, C)`` to ``(height, width)`` (index arrays)."""
    src_h, src_w = image.shape[:2]
    if (src_h, src_w) == (height, width):
        return image
    rows = np.minimum((np.arange(height) * src_h) // max(height, 1), src_h - 1)
    cols = np.minimum((np.arange(width) * src_w) // max(width, 1), src_w - 1)
    return image[rows[:, None], cols[None, :]]


def fit_into(image: np.ndarray, box_w: int, box_h: int, *, upscale: bool = True) -> np.ndarray:
    """Resize ``(h, w, 3)`` to fit ``box_w x box_h`` keeping the aspect ratio (nearest neighbour)."""
    h, w = image.shape[:2]
    factor = min(box_w / w, box_h / h)
    if not upscale:
        factor = min(factor, 1.0)
    new_w, new_h = max(1, int(round(w * factor))), max(1, int(round(h * factor)))
    return resize_nearest(image, new_h, new_w)


def label_image(labels: np.ndarray) -> np.ndarray:
    """``(h, w)`` integer class map -> ``(h, w, 3)`` uint8 in :data:`CLASS_PALETTE` colours."""
    return CLASS_PALETTE[np.asarray(labels, dtype=np.int64) % len(CLASS_PALETTE)]


def blend(base: np.ndarray, top: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``(1 - alpha) * base + alpha * top`` for two ``(h, w, 3)`` uint8 pictures (``top`` resized to ``base``)."""
    if top.shape[:2] != base.shape[:2]:
        top = resize_nearest(top, base.shape[0], base.shape[1])
    mixed = base.astype(np.float32) * (1.0 - alpha) + top.astype(np.float32) * alpha + 0.5
    return np.clip(mixed, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------
# text helpers (Pillow's font metrics: the layout is the same in every format)
# ------------------------------------------------------------------------------------------------


def _fit(text: str, size: int, width: float) -> str:
    """``text``, abbreviated from the left (keeping its distinctive end) to fit ``width`` px."""
    return fit_text_left(text, size, width)


def _centered(x0: float, width: float, text: str, size: int) -> float:
    return x0 + (width - text_width(text, size)) / 2


# ------------------------------------------------------------------------------------------------
# the U figure
# ------------------------------------------------------------------------------------------------


SKIP_LABEL_SIZE = 12
SKIP_LINE_H = 14
_LANE_BELOW = 8  # room under a skip arrow (its head's half width and a gap)


def _lane_height(lines: int) -> int:
    """Vertical room of one skip lane: its label lines above the arrow, the arrow head below."""
    return SKIP_LINE_H * lines + 6 + _LANE_BELOW


def _label_lines(link: FlowLink) -> list[str]:
    return [part for part in link.label.split("\n")] if link.label else []


def _loop_arrow(x: float, y_out: float, y_in: float, reach: float, color: RGB, width: float, group: str,
                head: float = 11) -> list[Item]:
    """A loop on the right side of a block: out of it at ``y_out``, ``reach`` px to the right, back in at ``y_in``."""
    far = x + reach
    base = x + head
    spread = head * 0.55
    return [
        Line(((x, y_out), (far, y_out), (far, y_in), (base, y_in)), color, width, group),
        Polygon(((x, y_in), (base, y_in - spread), (base, y_in + spread)), color, group),
    ]


def layout_flow_figure(
    blocks: Sequence[FlowBlock],
    links: Sequence[FlowLink],
    *,
    depth: int,
    title: str = "",
    thumb: int = 112,
    legend: str = "",
    colorbar_lut: np.ndarray | None = None,
) -> Scene:
    """The U layout as a :class:`~convscope.render.scene.Scene` (see :func:`render_flow_figure`)."""
    if depth < 1:
        raise ConvscopeError(f"depth must be >= 1 level above the bottleneck, got {depth}")
    pad = 6
    line_h = 16
    block_w = max(thumb + 2 * pad, 150)
    block_h = thumb + 2 * pad + 2 * line_h + 4
    row_gap = 34
    indent = int(block_w * 0.42)
    margin = 24
    center_gap = 230
    top = margin + (32 if title else 0)
    half = margin + (depth - 1) * indent + block_w
    center_gap = max(center_gap, 760 - 2 * half)  # room for the legend on shallow nets
    width = 2 * half + center_gap
    keys = {b.key: b for b in blocks}

    # skips: one lane (arrow + label) each; a skip from a block into itself is a loop beside it
    skip_groups: dict[tuple[str, str], list[FlowLink]] = {}
    for link in links:
        if link.kind == "skip":
            skip_groups.setdefault((link.src, link.dst), []).append(link)

    def row_of(key: str) -> int | None:
        block = keys.get(key)
        if block is None:
            return None
        if block.column in ("input", "output"):
            return 0
        if block.column == "bottleneck":
            return depth + 1
        return block.level + 1

    # each row is as tall as its skip lanes need (UNet++ levels carry several skips)
    rows = depth + 2
    row_h = [block_h] * rows
    for (src, dst), group in skip_groups.items():
        row = row_of(src)
        if row is None or row_of(dst) != row:
            continue
        lines = max(len(_label_lines(link)) for link in group)
        need = len(group) * _lane_height(lines) + 8
        row_h[row] = max(row_h[row], need)
    row_top = [top]
    for r in range(rows - 1):
        row_top.append(row_top[-1] + row_h[r] + row_gap)

    legend_lines = [part for line in legend.split("\n") for part in wrap_text(line, 12, width - 2 * margin, lines=4)] if legend else []
    bar_room = 56 if colorbar_lut is not None else 0
    height = row_top[-1] + row_h[-1] + row_gap + 16 * len(legend_lines) + margin // 2 + bar_room

    def box_of(block: FlowBlock) -> tuple[int, int, int, int]:
        row = row_of(block.key)
        assert row is not None
        y0, h = row_top[row], row_h[row]
        if block.column == "input":
            x0 = margin
        elif block.column == "output":
            x0 = width - margin - block_w
        elif block.column == "bottleneck":
            x0 = (width - block_w) // 2
        elif block.column == "encoder":
            x0 = margin + block.level * indent
        elif block.column == "decoder":
            x0 = width - margin - block.level * indent - block_w
        else:
            raise ConvscopeError(f"unknown block column {block.column!r}")
        return x0, y0, x0 + block_w, y0 + h

    items: list[Item] = []
    if title:
        items.append(Text(margin, margin - 4, _fit(title, 18, width - 2 * margin), 18, INK, title=title, role="title"))
    boxes: dict[str, tuple[int, int, int, int]] = {}
    for block in blocks:
        if block.column not in BLOCK_FILL:
            raise ConvscopeError(f"unknown block column {block.column!r}")
        boxes[block.key] = box_of(block)

    drawn_skips = 0
    missing: list[str] = []
    arrows: list[dict[str, Any]] = []
    # arrows first, so boxes sit on top of their ends
    for link in links:
        if link.src not in boxes or link.dst not in boxes:
            missing.append(f"{link.src}->{link.dst}")
            continue
        sx0, sy0, sx1, sy1 = boxes[link.src]
        dx0, dy0, dx1, dy1 = boxes[link.dst]
        color = LINK_COLOR.get(link.kind, INK)
        hover = link.title or link.label.replace("\n", " | ")
        if link.kind == "skip":
            group = skip_groups[(link.src, link.dst)]
            k, n = group.index(link), len(group)
            parts = _label_lines(link)
            lines = max(len(_label_lines(other)) for other in group)
            thick = 3 if n <= 3 else 2
            if link.src == link.dst:  # a loop beside the block (the bottom level's skip at the bottleneck)
                band = (sy1 - sy0) / n
                y_out, y_in = sy0 + band * (k + 0.3), sy0 + band * (k + 0.7)
                reach = 30
                items += _loop_arrow(sx1 + 2, y_out, y_in, reach, color, thick, "skip")
                text_x = sx1 + reach + 12
                room = width - margin - text_x
                text_y = (y_out + y_in) / 2 - SKIP_LINE_H * len(parts) / 2 - 2
                for i, part in enumerate(parts):
                    items.append(Text(text_x, text_y + SKIP_LINE_H * i, _fit(part, SKIP_LABEL_SIZE, room),
                                      SKIP_LABEL_SIZE, color, title=hover, role="skip-label"))
                arrows.append({"src": link.src, "dst": link.dst, "loop": True, "head": [sx1 + 2, y_in],
                               "tail": [sx1 + 2, y_out], "label": link.label})
            else:
                lane = (sy1 - sy0 - 8) / n
                lane_need = _lane_height(lines)
                y = sy0 + 4 + k * lane + (lane - lane_need) / 2 + SKIP_LINE_H * lines + 6
                x_start, x_end = (sx1 + 2, dx0 - 3) if sx1 <= dx0 else (sx0 - 2, dx1 + 3)
                items += arrow((x_start, y), (x_end, y), color, width=thick, group="skip")
                room = abs(x_end - x_start) - 12
                left = min(x_start, x_end)
                for i, part in enumerate(parts):
                    text = _fit(part, SKIP_LABEL_SIZE, room)
                    tw = text_width(text, SKIP_LABEL_SIZE)
                    items.append(Text(left + (abs(x_end - x_start) - tw) / 2,
                                      y - 6 - SKIP_LINE_H * (len(parts) - i), text, SKIP_LABEL_SIZE, color,
                                      title=hover, role="skip-label"))
                arrows.append({"src": link.src, "dst": link.dst, "loop": False, "head": [x_end, y],
                               "tail": [x_start, y], "label": link.label})
            drawn_skips += 1
            continue
        if link.kind in ("down", "io") and (sy1 <= dy0):
            start = ((sx0 + sx1) / 2, sy1 + 1)
            end = ((dx0 + dx1) / 2, dy0 - 2)
        else:  # up: from the top of the deeper block to the bottom of the higher one
            start = ((sx0 + sx1) / 2, sy0 - 1)
            end = ((dx0 + dx1) / 2, dy1 + 2)
        items += arrow(start, end, color)
        if link.label:
            mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
            items.append(Text(mx + 8, my - 7, _fit(link.label, 12, 120), 12, MUTED, title=hover))

    for block in blocks:
        x0, y0, x1, y1 = boxes[block.key]
        items.append(Rect(x0, y0, x1 - x0, y1 - y0, BLOCK_FILL.get(block.column, (240, 240, 240)),
                          BLOCK_EDGE.get(block.column, MUTED), 2, radius=6))
        inner_y = y0 + ((y1 - y0) - block_h) // 2  # content centred in a row made taller by its skip lanes
        thumb_img = fit_into(_as_rgb(block.image), thumb, thumb)
        th, tw = thumb_img.shape[:2]
        tx = x0 + (block_w - tw) // 2
        ty = inner_y + pad + (thumb - th) // 2
        items.append(Raster(int(tx), int(ty), tw, th, np.ascontiguousarray(thumb_img), title=block.hover or block.title))
        text_y = inner_y + pad + thumb + 3
        for text, size, color, role in ((block.title, 13, INK, "block-name"), (block.subtitle, 12, MUTED, "block-shape")):
            fitted = _fit(text, size, block_w - 2 * pad)
            items.append(Text(_centered(x0, block_w, fitted, size), text_y, fitted, size, color, title=text, role=role))
            text_y += line_h + 1
    legend_top = height - margin // 2 - 16 * len(legend_lines) - 4 - bar_room
    for i, line in enumerate(legend_lines):
        items.append(Text(margin, legend_top + 16 * i, _fit(line, 12, width - 2 * margin), 12, MUTED, title=line,
                          role="legend"))
    colorbars = []
    if colorbar_lut is not None:
        bar_items, _, info = _horizontal_bar(margin, height - bar_room + 4, 160, colorbar_lut)
        items += bar_items
        colorbars.append(info)
    meta = {"kind": "unet_flow", "blocks": {k: list(v) for k, v in boxes.items()},
            "block_names": {b.key: b.title for b in blocks},
            "skips_drawn": drawn_skips, "skips_given": sum(len(g) for g in skip_groups.values()),
            "skip_arrows": arrows, "links_missing": missing, "colorbars": colorbars, "body": [width, height]}
    return Scene(width, height, tuple(items), BACKGROUND, meta)


def _horizontal_bar(x: float, y: float, length: float, lut: np.ndarray) -> tuple[list[Item], tuple[float, float], dict[str, Any]]:
    """A horizontal colour bar for independently scaled thumbnails: ``min`` .. ``max`` of each one."""
    table = np.ascontiguousarray(np.asarray(lut, dtype=np.uint8)[None, :, :])
    items: list[Item] = [
        Text(x, y, "min", 11, MUTED, role="colorbar-low", group="colorbar"),
        Raster(x + 26, y + 1, length, 10, table, title="thumbnail colour scale", group="colorbar"),
        Rect(x + 26, y + 1, length, 10, None, (90, 90, 90), 1, group="colorbar"),
        Text(x + 30 + length, y, "max", 11, MUTED, role="colorbar-high", group="colorbar"),
        Text(x + 60 + length, y, "thumbnail colours: each thumbnail on its own min-max (per map, not comparable "
             "between blocks)", 11, MUTED, role="colorbar-scope", group="colorbar"),
    ]
    info = {"low": None, "high": None, "labels": ["max", "min"], "scope": "per map", "scale": "minmax"}
    return items, (length + 60, 14), info


def render_flow_figure(
    blocks: Sequence[FlowBlock],
    links: Sequence[FlowLink],
    *,
    depth: int,
    title: str = "",
    thumb: int = 112,
    legend: str = "",
    colorbar_lut: np.ndarray | None = None,
) -> Picture:
    """Draw the U layout: encoder column down the left, bottleneck at the bottom, decoder up the right.

    Rows from the top: input (left) and output (right); one row per level (encoder block indented a
    little more at each level, decoder block mirrored on the right); the bottleneck centred at the
    bottom. Every skip link gets its own lane: an arrow across the level with its label lines above
    it; a row is made as tall as its lanes need (UNet++ levels with six skips), so no label is
    dropped and no two labels overlap. A skip whose two ends are the same block is a loop on that
    block's right side with its label beside it (the bottom level's skip at the bottleneck). Names
    and labels too long for their room are abbreviated from the left, keeping their distinctive end;
    the full text is the hover text (SVG ``<title>``).

    Args:
        blocks: the boxes (see :class:`FlowBlock`); at most one per (column, level).
        links: arrows between block keys.
        depth: number of levels above the bottleneck.
        title: text at the top.
        thumb: thumbnail box side in pixels.
        legend: text at the bottom (lines separated by ``\n``).
        colorbar_lut: ``(K, 3)`` colour table of the thumbnails: adds their colour scale under the legend.

    Returns:
        :class:`Picture` (RGB uint8) with its ``scene``; ``meta["blocks"]`` maps block keys to their
        ``[x0, y0, x1, y1]`` and ``meta["block_names"]`` to their titles; ``meta["skips_drawn"]`` counts the skip arrows drawn and
        ``meta["skip_arrows"]`` lists them (``src``, ``dst``, ``loop``, ``tail``/``head`` points,
        ``label``) in link order.
    """
    scene = layout_flow_figure(blocks, links, depth=depth, title=title, thumb=thumb, legend=legend,
                               colorbar_lut=colorbar_lut)
    meta = {k: v for k, v in scene.meta.items() if k not in ("body", "colorbars")}
    return Picture(pixels=paint_png(scene), meta=meta, scene=scene)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ConvscopeError(f"block images must be uint8 (h, w, 3) pictures, got {arr.dtype}; colour-map maps first")
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        return np.ascontiguousarray(arr[:, :, :3])
    raise ConvscopeError(f"block images must be (h, w, 3) uint8, got shape {arr.shape}")


# ------------------------------------------------------------------------------------------------
# the per-level panels
# ------------------------------------------------------------------------------------------------


def layout_level_panels(
    columns: Sequence[PanelColumn],
    *,
    title: str = "",
    footer: Sequence[str] = (),
    panel: int = 240,
) -> Scene:
    """The per-level panel figure as a :class:`~convscope.render.scene.Scene` (see :func:`render_level_panels`)."""
    if not columns:
        raise ConvscopeError("render_level_panels needs at least one column")
    margin, gap, line_h = 16, 16, 17
    grids = [fit_into(_as_rgb(c.grid_image), panel, int(panel * 1.5)) if c.grid_image is not None else None for c in columns]
    grid_h = max((g.shape[0] for g in grids if g is not None), default=0)
    top = margin + (30 if title else 0)
    head_h = 3 * line_h + 4
    body_y = top + head_h
    has_bars = any(c.mean_range is not None for c in columns)
    bar_h = 30 if has_bars else 0
    grid_y = body_y + panel + 8 + bar_h
    captions = [wrap_text(c.grid_caption, 12, panel, lines=2) if c.grid_caption else [] for c in columns]
    caption_h = line_h * max((len(c) for c in captions), default=0)
    footer_y = grid_y + grid_h + (caption_h + 10 if grid_h else 0)
    width = 2 * margin + len(columns) * panel + (len(columns) - 1) * gap
    height = footer_y + len(footer) * line_h + margin
    items: list[Item] = []
    if title:
        items.append(Text(margin, margin - 2, _fit(title, 18, width - 2 * margin), 18, INK, title=title, role="title"))
    colorbars = []
    for i, (column, grid) in enumerate(zip(columns, grids)):
        x = margin + i * (panel + gap)
        items.append(Text(x, top, _fit(column.title, 14, panel), 14, INK, title=column.title, role="panel-title"))
        items.append(Text(x, top + line_h + 1, _fit(column.name, 12, panel), 12, INK, title=column.name,
                          role="panel-name"))
        items.append(Text(x, top + 2 * line_h + 1, _fit(column.subtitle, 12, panel), 12, MUTED,
                          title=column.subtitle, role="panel-shape"))
        mean = fit_into(_as_rgb(column.mean_image), panel, panel)
        mh, mw = mean.shape[:2]
        items.append(Raster(x + (panel - mw) // 2, body_y + (panel - mh) // 2, mw, mh, np.ascontiguousarray(mean),
                            title=column.name))
        items.append(Rect(x - 1, body_y - 1, panel + 1, panel + 1, None, (200, 200, 200), 1))
        if column.mean_range is not None and column.lut is not None:
            bar_items, info = _panel_bar(x, body_y + panel + 4, panel, column.lut, column.mean_range)
            items += bar_items
            colorbars.append(info)
        if grid is not None:
            items.append(Raster(x + (panel - grid.shape[1]) // 2, grid_y, grid.shape[1], grid.shape[0],
                                np.ascontiguousarray(grid)))
            for j, line in enumerate(captions[i]):  # wrapped over two lines, not cut
                items.append(Text(x, grid_y + grid.shape[0] + 3 + j * line_h, line, 12, MUTED,
                                  title=column.grid_caption, role="grid-caption"))
    for j, line in enumerate(footer):
        items.append(Text(margin, footer_y + j * line_h, _fit(line, 12, width - 2 * margin), 12, INK, title=line,
                          role="footer"))
    return Scene(width, height, tuple(items), BACKGROUND,
                 {"kind": "unet_level", "colorbars": colorbars, "body": [width, height]})


def _panel_bar(x: float, y: float, length: float, lut: np.ndarray, value_range: tuple[float, float]) -> tuple[list[Item], dict[str, Any]]:
    """A horizontal colour bar under one panel's mean map, with its two end values."""
    low, high = (float(v) for v in value_range)
    table = np.ascontiguousarray(np.asarray(lut, dtype=np.uint8)[None, :, :])
    lo_text, hi_text = format_value(low), format_value(high)
    inner = length - 4
    items: list[Item] = [
        Raster(x, y, inner, 9, table, title="colour scale of the channel mean", group="colorbar"),
        Rect(x, y, inner, 9, None, (90, 90, 90), 1, group="colorbar"),
        Text(x, y + 11, lo_text, 11, MUTED, role="colorbar-low", group="colorbar"),
        Text(x + inner - text_width(hi_text, 11), y + 11, hi_text, 11, MUTED, role="colorbar-high", group="colorbar"),
    ]
    mid = "channel mean, min-max"
    items.append(Text(x + (inner - text_width(mid, 10)) / 2, y + 12, mid, 10, MUTED, role="colorbar-scope",
                      group="colorbar"))
    return items, {"low": low, "high": high, "labels": [hi_text, lo_text], "scope": "map", "scale": "minmax"}


def render_level_panels(
    columns: Sequence[PanelColumn],
    *,
    title: str = "",
    footer: Sequence[str] = (),
    panel: int = 240,
) -> Picture:
    """Side-by-side panels (e.g. encoder | skip | upsampled decoder | merged) for one level.

    Each column: a title, the node name and shape, the channel-mean map fitted into a
    ``panel x panel`` box with its colour bar (when the column gives ``mean_range``), and below it
    the top-k channel grid fitted to the column width.

    Args:
        columns: the panels, left to right.
        title: heading line.
        footer: text lines under the panels (metrics).
        panel: column width and mean-map box side in pixels.

    Returns:
        :class:`Picture` (RGB uint8) with its ``scene``.
    """
    scene = layout_level_panels(columns, title=title, footer=footer, panel=panel)
    return Picture(pixels=paint_png(scene), meta={"kind": "unet_level"}, scene=scene)
