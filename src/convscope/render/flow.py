"""The U-Net flow figure and the per-level panel figure (Pillow drawing + vectorised numpy thumbnails).

Pure rendering: numpy arrays and plain records in, :class:`~.picture.Picture` out. The records
(:class:`FlowBlock`, :class:`FlowLink`, :class:`PanelColumn`) are built by :mod:`convscope.unet_flow`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ..errors import ConvscopeError
from .picture import Picture

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
    """

    key: str
    column: str
    level: int
    title: str
    subtitle: str
    image: np.ndarray


@dataclass(frozen=True)
class FlowLink:
    """An arrow between two blocks: ``kind`` ``"down"``, ``"up"``, ``"skip"`` or ``"io"``; optional label."""

    src: str
    dst: str
    kind: str
    label: str = ""


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
    """

    title: str
    name: str
    subtitle: str
    mean_image: np.ndarray
    grid_image: np.ndarray | None = None
    grid_caption: str = ""


# ------------------------------------------------------------------------------------------------
# numpy helpers
# ------------------------------------------------------------------------------------------------


def map_to_2d(maps: np.ndarray, mode: str = "mean") -> np.ndarray:
    """One 2-D float map from ``(C, *spatial)`` activations.

    Args:
        maps: ``(C, L)``, ``(C, H, W)`` or ``(C, D, H, W)`` real array.
        mode: ``"mean"`` (channel mean) or ``"top"`` (the channel with the largest mean).

    Returns:
        ``(H, W)`` float32: 3-D maps give their middle slice along D; 1-D maps a strip
        ``(max(4, L // 8), L)``.
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
        flat = flat[flat.shape[0] // 2]
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
# drawing helpers
# ------------------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def _text_width(draw: Any, text: str, font: Any) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return int(right - left)


def _fit_text(draw: Any, text: str, font: Any, width: int) -> str:
    """``text``, shortened in the middle with an ellipsis until it fits ``width`` px."""
    if _text_width(draw, text, font) <= width:
        return text
    keep = len(text)
    while keep > 3:
        keep -= 1
        head = (keep + 1) // 2
        tail = keep - head
        candidate = text[:head] + ".." + (text[-tail:] if tail else "")
        if _text_width(draw, candidate, font) <= width:
            return candidate
    return text[:1] + ".."


def _arrow(draw: Any, start: tuple[float, float], end: tuple[float, float], color: tuple[int, int, int], width: int = 3, head: int = 11) -> None:
    """A line from ``start`` to ``end`` with a filled triangular head at ``end``."""
    x0, y0 = start
    x1, y1 = end
    angle = math.atan2(y1 - y0, x1 - x0)
    base_x = x1 - head * math.cos(angle)
    base_y = y1 - head * math.sin(angle)
    draw.line([(x0, y0), (base_x, base_y)], fill=color, width=width)
    spread = head * 0.55
    left = (base_x + spread * math.sin(angle), base_y - spread * math.cos(angle))
    right = (base_x - spread * math.sin(angle), base_y + spread * math.cos(angle))
    draw.polygon([(x1, y1), left, right], fill=color)


# ------------------------------------------------------------------------------------------------
# the U figure
# ------------------------------------------------------------------------------------------------


def render_flow_figure(
    blocks: Sequence[FlowBlock],
    links: Sequence[FlowLink],
    *,
    depth: int,
    title: str = "",
    thumb: int = 112,
    legend: str = "",
) -> Picture:
    """Draw the U layout: encoder column down the left, bottleneck at the bottom, decoder up the right.

    Rows from the top: input (left) and output (right); one row per level (encoder block indented a
    little more at each level, decoder block mirrored on the right); the bottleneck centred at the
    bottom. Skip arrows run across each level, with their labels above them.

    Args:
        blocks: the boxes (see :class:`FlowBlock`); at most one per (column, level).
        links: arrows between block keys.
        depth: number of levels above the bottleneck.
        title: text at the top.
        thumb: thumbnail box side in pixels.
        legend: text at the bottom (lines separated by ``\n``).

    Returns:
        :class:`Picture` (RGB uint8); ``meta["blocks"]`` maps block keys to their ``[x0, y0, x1, y1]``.
    """
    from PIL import Image, ImageDraw

    if depth < 1:
        raise ConvscopeError(f"depth must be >= 1 level above the bottleneck, got {depth}")
    title_font, name_font, small_font = _font(18), _font(13), _font(12)
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
    rows = depth + 2
    legend_lines = legend.split("\n") if legend else []
    height = top + rows * (block_h + row_gap) + 16 * len(legend_lines) + margin // 2

    def position(block: FlowBlock) -> tuple[int, int]:
        if block.column == "input":
            return margin, top
        if block.column == "output":
            return width - margin - block_w, top
        if block.column == "bottleneck":
            return (width - block_w) // 2, top + (depth + 1) * (block_h + row_gap)
        row_y = top + (block.level + 1) * (block_h + row_gap)
        if block.column == "encoder":
            return margin + block.level * indent, row_y
        if block.column == "decoder":
            return width - margin - block.level * indent - block_w, row_y
        raise ConvscopeError(f"unknown block column {block.column!r}")

    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((margin, margin - 4), _fit_text(draw, title, title_font, width - 2 * margin), fill=INK, font=title_font)
    boxes: dict[str, tuple[int, int, int, int]] = {}
    for block in blocks:
        x0, y0 = position(block)
        boxes[block.key] = (x0, y0, x0 + block_w, y0 + block_h)

    # arrows first, so boxes sit on top of their ends
    for link in links:
        if link.src not in boxes or link.dst not in boxes:
            continue
        sx0, sy0, sx1, sy1 = boxes[link.src]
        dx0, dy0, dx1, dy1 = boxes[link.dst]
        color = LINK_COLOR.get(link.kind, INK)
        if link.kind == "skip":
            y = (sy0 + sy1) / 2 - line_h
            _arrow(draw, (sx1 + 2, y), (dx0 - 3, y), color, width=3)
            if link.label:
                parts = link.label.split("\n")[:3]
                for i, part in enumerate(parts):
                    text = _fit_text(draw, part, small_font, int(dx0 - sx1 - 12))
                    tw = _text_width(draw, text, small_font)
                    draw.text(((sx1 + dx0 - tw) / 2, y - 6 - 14 * (len(parts) - i)), text, fill=color, font=small_font)
        elif link.kind in ("down", "io") and (sy1 <= dy0):
            start = ((sx0 + sx1) / 2, sy1 + 1)
            end = ((dx0 + dx1) / 2, dy0 - 2)
            _arrow(draw, start, end, color)
        else:  # up: from the top of the deeper block to the bottom of the higher one
            start = ((sx0 + sx1) / 2, sy0 - 1)
            end = ((dx0 + dx1) / 2, dy1 + 2)
            _arrow(draw, start, end, color)
        if link.label and link.kind != "skip":
            mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
            draw.text((mx + 8, my - 7), _fit_text(draw, link.label, small_font, 120), fill=MUTED, font=small_font)

    for block in blocks:
        x0, y0, x1, y1 = boxes[block.key]
        draw.rounded_rectangle((x0, y0, x1, y1), radius=6, fill=BLOCK_FILL.get(block.column, (240, 240, 240)),
                               outline=BLOCK_EDGE.get(block.column, MUTED), width=2)
        thumb_img = fit_into(_as_rgb(block.image), thumb, thumb)
        th, tw = thumb_img.shape[:2]
        tx = x0 + (block_w - tw) // 2
        ty = y0 + pad + (thumb - th) // 2
        image.paste(Image.fromarray(np.ascontiguousarray(thumb_img)), (int(tx), int(ty)))
        text_y = y0 + pad + thumb + 3
        for text, font, color in ((block.title, name_font, INK), (block.subtitle, small_font, MUTED)):
            fitted = _fit_text(draw, text, font, block_w - 2 * pad)
            tw_text = _text_width(draw, fitted, font)
            draw.text((x0 + (block_w - tw_text) / 2, text_y), fitted, fill=color, font=font)
            text_y += line_h + 1
    for i, line in enumerate(legend_lines):
        y = height - margin // 2 - 16 * (len(legend_lines) - i) - 4
        draw.text((margin, y), _fit_text(draw, line, small_font, width - 2 * margin), fill=MUTED, font=small_font)
    pixels = np.asarray(image, dtype=np.uint8).copy()
    return Picture(pixels=pixels, meta={"kind": "unet_flow", "blocks": {k: list(v) for k, v in boxes.items()}})


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


def render_level_panels(
    columns: Sequence[PanelColumn],
    *,
    title: str = "",
    footer: Sequence[str] = (),
    panel: int = 240,
) -> Picture:
    """Side-by-side panels (e.g. encoder | skip | upsampled decoder | merged) for one level.

    Each column: a title, the node name and shape, the channel-mean map fitted into a
    ``panel x panel`` box, and below it the top-k channel grid fitted to the column width.

    Args:
        columns: the panels, left to right.
        title: heading line.
        footer: text lines under the panels (metrics).
        panel: column width and mean-map box side in pixels.

    Returns:
        :class:`Picture` (RGB uint8).
    """
    from PIL import Image, ImageDraw

    if not columns:
        raise ConvscopeError("render_level_panels needs at least one column")
    title_font, head_font, small_font = _font(18), _font(14), _font(12)
    margin, gap, line_h = 16, 16, 17
    grids = [fit_into(_as_rgb(c.grid_image), panel, int(panel * 1.5)) if c.grid_image is not None else None for c in columns]
    grid_h = max((g.shape[0] for g in grids if g is not None), default=0)
    top = margin + (30 if title else 0)
    head_h = 3 * line_h + 4
    body_y = top + head_h
    grid_y = body_y + panel + 8
    caption_h = line_h if any(c.grid_caption for c in columns) else 0
    footer_y = grid_y + grid_h + (caption_h + 10 if grid_h else 0)
    width = 2 * margin + len(columns) * panel + (len(columns) - 1) * gap
    height = footer_y + len(footer) * line_h + margin
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((margin, margin - 2), _fit_text(draw, title, title_font, width - 2 * margin), fill=INK, font=title_font)
    for i, (column, grid) in enumerate(zip(columns, grids)):
        x = margin + i * (panel + gap)
        draw.text((x, top), _fit_text(draw, column.title, head_font, panel), fill=INK, font=head_font)
        draw.text((x, top + line_h + 1), _fit_text(draw, column.name, small_font, panel), fill=INK, font=small_font)
        draw.text((x, top + 2 * line_h + 1), _fit_text(draw, column.subtitle, small_font, panel), fill=MUTED, font=small_font)
        mean = fit_into(_as_rgb(column.mean_image), panel, panel)
        mh, mw = mean.shape[:2]
        image.paste(Image.fromarray(np.ascontiguousarray(mean)), (x + (panel - mw) // 2, body_y + (panel - mh) // 2))
        draw.rectangle((x - 1, body_y - 1, x + panel, body_y + panel), outline=(200, 200, 200))
        if grid is not None:
            image.paste(Image.fromarray(np.ascontiguousarray(grid)), (x + (panel - grid.shape[1]) // 2, grid_y))
            if column.grid_caption:
                draw.text((x, grid_y + grid.shape[0] + 3), _fit_text(draw, column.grid_caption, small_font, panel), fill=MUTED, font=small_font)
    for j, line in enumerate(footer):
        draw.text((margin, footer_y + j * line_h), _fit_text(draw, line, small_font, width - 2 * margin), fill=INK, font=small_font)
    return Picture(pixels=np.asarray(image, dtype=np.uint8).copy(), meta={"kind": "unet_level"})
