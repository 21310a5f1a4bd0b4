"""A dataset-scan "channel card": a channel's kernel, top-k crops, histogram and statistics in one picture.

Pure: arrays and strings in, a :class:`Picture` out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .flow import fit_into
from .scene import font as _font
from .picture import Picture

__all__ = ["render_channel_card", "crop_thumbnail"]

_BG = (255, 255, 255)
_INK = (30, 30, 30)
_MUTED = (110, 110, 110)
_BAR = (70, 110, 180)
_EDGE_BAR = (200, 120, 60)


def crop_thumbnail(image: np.ndarray, box: Sequence[int] | None, size: int = 72) -> np.ndarray:
    """``image[y0:y1, x0:x1]`` (the whole image when ``box`` is None or empty) fitted into ``size x size``.

    Args:
        image: ``(H, W, 3)`` uint8.
        box: ``(y0, x0, y1, x1)`` half-open.
    """
    crop = image
    if box is not None and len(box) == 4 and box[2] > box[0] and box[3] > box[1] and box[0] >= 0:
        crop = image[int(box[0]):int(box[2]), int(box[1]):int(box[3])]
    return np.ascontiguousarray(fit_into(crop, size, size))


def fit_text(draw: Any, text: str, font: Any, width: int) -> str:
    """``text`` cut at the end (with "…") until it is at most ``width`` pixels wide in ``font``."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def render_channel_card(
    title: str,
    crops: Sequence[np.ndarray],
    captions: Sequence[str],
    histogram: np.ndarray,
    edges: np.ndarray,
    stats_lines: Sequence[str],
    kernel: np.ndarray | None = None,
    *,
    thumb: int = 72,
    cols: int = 4,
) -> Picture:
    """Draw one channel card.

    Args:
        title: e.g. ``"enc2.conv channel 5"``.
        crops: top-k ``(h, w, 3)`` uint8 pictures (at most ``thumb`` px each side), best first.
        captions: the text under each crop: its first line (the score) in ink, further lines (the
            example's name) muted, each cut to the crop's width.
        histogram: ``bins + 2`` counts (underflow, bins, overflow); edges: ``bins + 1`` edges.
        stats_lines: text lines (count, mean, std, fractions...).
        kernel: ``(h, w, 3)`` uint8 picture of the channel's filter, or None.

    Returns:
        :class:`Picture` with ``meta`` ``{"examples": len(crops)}``.
    """
    from PIL import Image, ImageDraw

    font = _font(12)
    small = _font(10)
    left_w = 200
    cols = max(1, min(cols, max(1, len(crops))))
    rows = max(1, -(-len(crops) // cols))
    caption_lines = max((caption.count("\n") + 1 for caption in captions), default=1)
    cell_h = thumb + 4 + 12 * caption_lines
    grid_w = cols * (thumb + 6) + 6
    hist_h = 80
    kernel_h = 0 if kernel is None else min(120, kernel.shape[0])
    left_h = 26 + (kernel_h + 18 if kernel is not None else 0) + hist_h + 34 + 15 * len(stats_lines)
    top = 42  # the title row, then the crops' label
    height = max(top + rows * cell_h + 8, left_h + 8)
    width = left_w + grid_w
    canvas = Image.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(canvas)
    draw.text((8, 6), title, fill=_INK, font=font)
    y = 26
    if kernel is not None:
        draw.text((8, y), "kernel", fill=_MUTED, font=small)
        pic = fit_into(kernel, left_w - 16, kernel_h, upscale=True)
        canvas.paste(Image.fromarray(pic), (8, y + 14))
        y += kernel_h + 18
    # histogram (linear counts; the under/overflow bins in orange at the ends)
    draw.text((8, y), "histogram", fill=_MUTED, font=small)
    y += 14
    counts = np.asarray(histogram, dtype=np.float64)
    peak = counts.max() if counts.size and counts.max() > 0 else 1.0
    bar_w = (left_w - 16) / max(1, counts.size)
    for i, value in enumerate(counts):
        h = int(round((hist_h - 4) * value / peak))
        if h <= 0:
            continue
        x0 = 8 + i * bar_w
        color = _EDGE_BAR if i in (0, counts.size - 1) else _BAR
        draw.rectangle([x0, y + hist_h - h, max(x0, x0 + bar_w - 1), y + hist_h], fill=color)
    draw.line([8, y + hist_h, left_w - 8, y + hist_h], fill=_MUTED)
    lo, hi = float(edges[0]), float(edges[-1])
    draw.text((8, y + hist_h + 2), f"{lo:.3g}", fill=_MUTED, font=small)
    text = f"{hi:.3g}"
    draw.text((left_w - 8 - draw.textlength(text, font=small), y + hist_h + 2), text, fill=_MUTED, font=small)
    y += hist_h + 20
    for line in stats_lines:
        draw.text((8, y), line, fill=_INK, font=small)
        y += 15
    # crops
    x_base = left_w
    draw.text((x_base + 6, 26), f"top {len(crops)} examples" if crops else "no examples", fill=_MUTED, font=small)
    for i, (crop, caption) in enumerate(zip(crops, captions)):
        r, c = divmod(i, cols)
        x0 = x_base + 6 + c * (thumb + 6)
        y0 = top + r * cell_h
        pic = np.asarray(crop, dtype=np.uint8)
        ox = x0 + (thumb - pic.shape[1]) // 2
        oy = y0 + (thumb - pic.shape[0]) // 2
        canvas.paste(Image.fromarray(pic), (ox, oy))
        draw.rectangle([x0 - 1, y0 - 1, x0 + thumb, y0 + thumb], outline=(200, 200, 200))
        for n, line in enumerate(caption.split("\n")):
            draw.text((x0, y0 + thumb + 2 + 12 * n), fit_text(draw, line, small, thumb), fill=_INK if n == 0 else _MUTED,
                      font=small)
    return Picture(pixels=np.asarray(canvas), meta={"examples": len(crops)})
