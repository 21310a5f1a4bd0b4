"""One scene description per figure, drawn by one painter per format (PNG, SVG, PDF).

A :class:`Scene` is a list of drawing items in figure pixels (CSS pixels: 96 per inch, origin top
left, y down): :class:`Rect`, :class:`Text`, :class:`Line`, :class:`Polygon`, :class:`Raster`
(pixel data shown in a box of any aspect, never smoothed) and :class:`Label` (a small white-on-dark
index label, as in the grids). Layout code builds scenes; it never draws. The painters:

* :func:`paint_png` -> ``(H, W, 3)`` uint8 (Pillow; the same pixels the Pillow-only renderers
  produced before scenes existed),
* :func:`to_svg` -> SVG bytes: editable ``<text>`` (a hover ``<title>`` when an item has one),
  ``<image>`` elements with ``image-rendering: pixelated`` and ``preserveAspectRatio="none"`` so
  non-square pixels keep their physical aspect,
* :func:`to_pdf` -> PDF bytes through matplotlib's PDF backend (the ``[export]`` extra) with
  ``pdf.fonttype = 42`` (embedded TrueType, never Type 3) and rasters pre-upsampled by nearest
  neighbour and embedded unresampled, so PDF viewers cannot blur them.

Builders for the parts every map figure needs: :func:`colorbar` (numbers at both ends and the
normalisation scope stated) and :func:`scalebar` (physical length, e.g. mm).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import math
import re
import tempfile
import threading
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..errors import ConvscopeError

__all__ = [
    "Rect",
    "Text",
    "Line",
    "Polygon",
    "Raster",
    "Label",
    "Item",
    "Scene",
    "arrow",
    "colorbar",
    "scalebar",
    "format_value",
    "paint_png",
    "to_svg",
    "to_pdf",
    "FORMATS",
    "PX_PER_INCH",
    "text_width",
    "fit_text_left",
    "wrap_text",
]

RGB = tuple[int, int, int]
PX_PER_INCH = 96.0
"""Scene units: CSS pixels, 96 per inch (so 1 px = 0.75 pt in PDF)."""
FORMATS: tuple[str, ...] = ("png", "svg", "pdf")
SVG_FONT_FAMILY = "Aileron, 'DejaVu Sans', Arial, Helvetica, sans-serif"


# ------------------------------------------------------------------------------------------------
# items
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rect:
    """A rectangle ``x, y, w, h`` (optionally rounded), filled and/or outlined."""

    x: float
    y: float
    w: float
    h: float
    fill: RGB | None = None
    stroke: RGB | None = None
    stroke_width: float = 1.0
    radius: float = 0.0
    group: str = ""


@dataclass(frozen=True)
class Text:
    """One line of text; ``(x, y)`` is the top-left of the font's ascender box (Pillow's default
    anchor), ``size`` the font size in px. ``title`` is shown on hover (SVG ``<title>``)."""

    x: float
    y: float
    text: str
    size: int = 12
    fill: RGB = (30, 30, 30)
    title: str = ""
    role: str = ""
    group: str = ""


@dataclass(frozen=True)
class Line:
    """A polyline through ``points`` ``((x, y), ...)``."""

    points: tuple[tuple[float, float], ...]
    stroke: RGB = (30, 30, 30)
    width: float = 1.0
    group: str = ""


@dataclass(frozen=True)
class Polygon:
    """A filled polygon."""

    points: tuple[tuple[float, float], ...]
    fill: RGB = (30, 30, 30)
    group: str = ""


@dataclass(frozen=True, eq=False)
class Raster:
    """Pixel data ``(h, w, 3)`` uint8 shown in the box ``x, y, w, h`` by nearest neighbour.

    The box may have another aspect than the pixels (physical spacing: non-square pixels are kept
    non-square in every format). ``title`` is the hover text in SVG.
    """

    x: float
    y: float
    w: float
    h: float
    pixels: np.ndarray
    title: str = ""
    group: str = ""


@dataclass(frozen=True)
class Label:
    """A grid index label: white ``text`` in the label font on a small dark box at ``(x, y)``."""

    x: float
    y: float
    text: str
    group: str = ""


Item = Union[Rect, Text, Line, Polygon, Raster, Label]


def _shift(item: Item, dx: float, dy: float) -> Item:
    if isinstance(item, (Line, Polygon)):
        return dataclasses.replace(item, points=tuple((x + dx, y + dy) for x, y in item.points))
    return dataclasses.replace(item, x=item.x + dx, y=item.y + dy)


@dataclass(frozen=True, eq=False)
class Scene:
    """A figure: ``width x height`` px, a background colour and items drawn in order.

    Attributes:
        meta: facts tests and composition use, e.g. ``colorbars`` (one dict per bar: ``low``,
            ``high``, ``labels``, ``scope``), ``body`` (``[w, h]`` of the content without its colour
            bar), ``colorscale`` (what the bar means, for sharing one bar between panels).
    """

    width: int
    height: int
    items: tuple[Item, ...] = ()
    background: RGB = (255, 255, 255)
    meta: dict[str, Any] = field(default_factory=dict)

    def shifted(self, dx: float, dy: float) -> tuple[Item, ...]:
        """The items moved by ``(dx, dy)`` (to place this scene inside another)."""
        return tuple(_shift(item, dx, dy) for item in self.items)

    def without(self, group: str) -> Scene:
        """A copy without the items of ``group`` (e.g. ``"colorbar"``), cropped to ``meta["body"]``."""
        body = self.meta.get("body") or [self.width, self.height]
        meta = {k: v for k, v in self.meta.items() if k not in ("colorbars",)}
        return Scene(int(body[0]), int(body[1]), tuple(i for i in self.items if i.group != group),
                     self.background, meta)

    def texts(self) -> list[Text]:
        return [i for i in self.items if isinstance(i, Text)]

    def hover_regions(self, exclude: Iterable[Sequence[float]] = ()) -> list[dict[str, Any]]:
        """Where a web page must put a hover text: every text shown shortened (or with a fuller
        ``title`` than its lines, e.g. a skip label); a text wrapped over lines in full gets none.

        Args:
            exclude: ``[x0, y0, x1, y1]`` boxes already carrying their own hover (e.g. clickable
                blocks); texts inside one are left out.

        Returns:
            ``[{"title": full text, "box": [x0, y0, x1, y1]}]`` with the box as fractions of the
            scene's width and height (consecutive lines of one text, e.g. a two-line skip label,
            share one region), in item order.
        """
        boxes = [tuple(float(v) for v in b) for b in exclude]
        found: list[tuple[str, list[float], list[str]]] = []
        for item in self.texts():
            if not item.title or item.title == item.text:
                continue
            x0, y0 = item.x, item.y
            x1, y1 = x0 + text_width(item.text, item.size), y0 + item.size * 1.25
            if any(b[0] <= x0 and x1 <= b[2] and b[1] <= y0 and y1 <= b[3] for b in boxes):
                continue
            last = found[-1] if found else None
            if last is not None and last[0] == item.title and abs(y0 - last[1][3]) <= item.size and \
                    min(x1, last[1][2]) > max(x0, last[1][0]):
                box = last[1]
                box[:] = [min(box[0], x0), min(box[1], y0), max(box[2], x1), max(box[3], y1)]
                last[2].append(item.text)
            else:
                found.append((item.title, [x0, y0, x1, y1], [item.text]))
        w, h = float(self.width), float(self.height)
        return [{"title": title, "box": [b[0] / w, b[1] / h, b[2] / w, b[3] / h]} for title, b, lines in found
                if " ".join(lines) != title]  # a text wrapped in full needs no hover


# ------------------------------------------------------------------------------------------------
# fonts and text measurement (Pillow's bundled font: the PNG's font, and embedded in the PDF)
# ------------------------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def font(size: int) -> Any:
    """Pillow's bundled scalable font at ``size`` px (the bitmap font on very old Pillow)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


@lru_cache(maxsize=4096)
def text_width(text: str, size: int) -> int:
    """Width in px of ``text`` in :func:`font` at ``size`` (cached: figures measure the same labels often)."""
    left, _, right, _ = font(size).getbbox(text)
    return int(right - left)


def _ascent(size: int) -> float:
    try:
        return float(font(size).getmetrics()[0])
    except AttributeError:  # pragma: no cover
        return float(size)


def fit_text_left(text: str, size: int, width: float) -> str:
    """``text``, or ``".." + its end`` (the distinctive part of a layer name) fitting ``width`` px."""
    if text_width(text, size) <= width:
        return text
    lo, hi = 0, len(text)  # longest tail that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text_width(".." + text[-mid:], size) <= width:
            lo = mid
        else:
            hi = mid - 1
    return ".." + text[-lo:] if lo else ".."


def wrap_text(text: str, size: int, width: float, lines: int = 2) -> list[str]:
    """Break ``text`` into at most ``lines`` lines of ``width`` px, at ``.``, ``/``, ``_`` or spaces
    when possible; the last line keeps the end of the text (abbreviated from the left)."""
    if text_width(text, size) <= width or lines <= 1:
        return [fit_text_left(text, size, width)]
    out: list[str] = []
    rest = text
    while rest and len(out) < lines - 1:
        if text_width(rest, size) <= width:
            break
        cut = 0
        for i in range(1, len(rest)):
            if text_width(rest[:i], size) > width:
                break
            cut = i
        breaks = [j + 1 for j in range(cut) if rest[j] in "./_- :"]
        cut = breaks[-1] if breaks and breaks[-1] > cut // 3 else max(cut, 1)
        out.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        out.append(fit_text_left(rest, size, width))
    return out


def format_value(value: float | None) -> str:
    """A colour-bar number: 3 significant digits, ``-0`` shown as ``0``."""
    if value is None or not math.isfinite(value):
        return "n/a"
    text = f"{value:.3g}"
    return "0" if text in ("-0", "0", "-0.0") else text


# ------------------------------------------------------------------------------------------------
# builders
# ------------------------------------------------------------------------------------------------


def arrow(start: tuple[float, float], end: tuple[float, float], color: RGB, width: float = 3, head: float = 11,
          group: str = "") -> list[Item]:
    """A line from ``start`` to ``end`` with a filled triangular head at ``end``."""
    x0, y0 = start
    x1, y1 = end
    angle = math.atan2(y1 - y0, x1 - x0)
    base_x = x1 - head * math.cos(angle)
    base_y = y1 - head * math.sin(angle)
    spread = head * 0.55
    left = (base_x + spread * math.sin(angle), base_y - spread * math.cos(angle))
    right = (base_x - spread * math.sin(angle), base_y + spread * math.cos(angle))
    return [Line(((x0, y0), (base_x, base_y)), color, width, group),
            Polygon(((x1, y1), left, right), color, group)]


SCOPE_TEXT = {
    "shared": "one scale for all panels",
    "channel": "per channel: each cell on its own range",
    "filter": "per filter: each kernel on its own range",
    "map": "",
}


def colorbar(
    x: float,
    y: float,
    length: float,
    *,
    lut: np.ndarray,
    low: float | None,
    high: float | None,
    scale: str = "minmax",
    scope: str = "shared",
    thickness: float = 12,
    size: int = 11,
    caption: str | None = None,
) -> tuple[list[Item], tuple[float, float], dict[str, Any]]:
    """A vertical colour bar with its numbers, top = high end, and what the scale means.

    Args:
        lut: ``(K, 3)`` uint8 colour table of the map.
        low, high: the values mapped to the bottom and top colours. For independently scaled panels
            (``scope`` ``"channel"``/``"filter"``) pass None: the ends then read ``min``/``max`` (or
            ``-max|x|`` / ``0`` / ``+max|x|`` for symmetric scales), never numbers that would be
            wrong for all but one panel.
        scale: ``"minmax"``, ``"symmetric"`` or ``"percentile"`` (stated under the bar).
        scope: ``"shared"``, ``"channel"``, ``"filter"`` or ``"map"`` (stated under the bar).

    Returns:
        ``(items, (width, height), info)``; ``info`` (``low``, ``high``, ``labels``, ``scope``,
        ``scale``) goes into ``Scene.meta["colorbars"]``.
    """
    table = np.ascontiguousarray(np.asarray(lut, dtype=np.uint8)[::-1, None, :])  # (K, 1, 3), top = high
    items: list[Item] = [
        Raster(x, y, thickness, length, table, title=f"colour scale ({scale})", group="colorbar"),
        Rect(x, y, thickness, length, None, (90, 90, 90), 1, group="colorbar"),
    ]
    numeric = low is not None and high is not None and math.isfinite(low) and math.isfinite(high)
    if low is not None and high is not None and numeric:
        labels = [format_value(high), format_value(low)]
        if scale == "symmetric" or (low < 0 < high and abs(low + high) <= 1e-9 * max(abs(low), 1e-30)):
            labels.insert(1, "0")
    elif scale == "symmetric":
        labels = ["+max|x|", "0", "-max|x|"]
    else:
        labels = ["max", "min"]
    positions = [y] + ([y + length / 2] if len(labels) == 3 else []) + [y + length]
    ascent = _ascent(size)
    label_w = 0
    for text, py in zip(labels, positions):
        items.append(Line(((x + thickness, py), (x + thickness + 4, py)), (90, 90, 90), 1, group="colorbar"))
        role = "colorbar-high" if py == y else ("colorbar-low" if py == y + length else "colorbar-mid")
        items.append(Text(x + thickness + 6, py - ascent / 2 - 1, text, size, (30, 30, 30), role=role, group="colorbar"))
        label_w = max(label_w, text_width(text, size))
    if caption is None:
        what = {"minmax": "min-max", "symmetric": "symmetric about 0", "percentile": "percentile 1-99, clipped"}
        caption = what.get(scale, scale)
        if SCOPE_TEXT.get(scope):
            caption = f"{caption}; {SCOPE_TEXT[scope]}"
    width = thickness + 6 + label_w
    height = length
    if caption:
        lines = wrap_text(caption, size - 1, max(width, 110), lines=5)
        cy = y + length + 6
        for line in lines:
            items.append(Text(x, cy, line, size - 1, (90, 90, 90), role="colorbar-scope", group="colorbar"))
            cy += size + 1
            width = max(width, text_width(line, size - 1))
        height = cy - y
    info = {"low": low if numeric else None, "high": high if numeric else None, "labels": labels,
            "scope": scope, "scale": scale}
    return items, (width, height), info


def _nice_length(max_units: float) -> float:
    """The largest 1, 2 or 5 x 10^k not above ``max_units``."""
    if max_units <= 0:
        return 0.0
    power = 10 ** math.floor(math.log10(max_units))
    for step in (5, 2, 1):
        if step * power <= max_units:
            return step * power
    return power


def scalebar(x: float, y: float, px_per_unit: float, max_px: float, *, unit: str = "mm", color: RGB = (30, 30, 30),
             size: int = 11) -> tuple[list[Item], tuple[float, float], dict[str, Any]]:
    """A horizontal scale bar of a round physical length (1, 2, 5 x 10^k ``unit``) at most ``max_px`` long.

    ``px_per_unit`` is figure pixels per ``unit`` along x (for a map drawn with physical aspect, the
    same along y). Returns ``(items, (width, height), info)`` with ``info`` ``length`` and ``unit``.
    """
    if not px_per_unit > 0:
        raise ConvscopeError(f"a scale bar needs a positive pixel spacing, got {px_per_unit} px per {unit}")
    length = _nice_length(max_px / px_per_unit)
    bar_px = length * px_per_unit
    text = f"{length:g} {unit}"
    items: list[Item] = [
        Rect(x, y, bar_px, 4, color, None, group="scalebar"),
        Text(x, y + 6, text, size, color, role="scalebar", group="scalebar"),
    ]
    return items, (max(bar_px, text_width(text, size)), 6 + size + 2), {"length": length, "unit": unit, "px": bar_px}


# ------------------------------------------------------------------------------------------------
# PNG painter (Pillow)
# ------------------------------------------------------------------------------------------------


def _nearest(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    src_h, src_w = pixels.shape[:2]
    if (src_h, src_w) == (height, width):
        return pixels
    rows = np.minimum((np.arange(height) * src_h) // max(height, 1), src_h - 1)
    cols = np.minimum((np.arange(width) * src_w) // max(width, 1), src_w - 1)
    return pixels[rows[:, None], cols[None, :]]


def _rgb(pixels: np.ndarray) -> np.ndarray:
    arr = np.asarray(pixels)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return arr[..., :3]


def _item_bbox(item: Item) -> tuple[float, float, float, float]:
    if isinstance(item, (Line, Polygon)):
        xs = [p[0] for p in item.points]
        ys = [p[1] for p in item.points]
        pad = getattr(item, "width", 1.0) + 1
        return min(xs) - pad, min(ys) - pad, max(xs) + pad, max(ys) + pad
    if isinstance(item, Text):
        return item.x - 2, item.y - 2, item.x + text_width(item.text, item.size) + 4, item.y + item.size * 1.6 + 2
    if isinstance(item, Label):
        from .grid import _label_patch

        patch = _label_patch(item.text)
        return item.x, item.y, item.x + patch.shape[1], item.y + patch.shape[0]
    return item.x - 2, item.y - 2, item.x + item.w + 2, item.y + item.h + 2


def _filled(height: int, width: int, color: np.ndarray) -> np.ndarray:
    """``(height, width, 3)`` uint8 of ``color``: a memset for greys (white), else one row copied down
    (numpy's 3-byte broadcast fill is several times slower than either)."""
    if color[0] == color[1] == color[2]:
        return np.full((height, width, 3), int(color[0]), dtype=np.uint8)
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[0] = color
    flat = canvas.reshape(height, width * 3)
    flat[1:] = flat[0]
    return canvas


def paint_png(scene: Scene, scale: float = 1.0) -> np.ndarray:
    """Draw ``scene`` with Pillow: ``(round(H * scale), round(W * scale), 3)`` uint8.

    Rasters are placed by nearest neighbour with numpy (a raster at integer coordinates and its own
    size is copied as is); vector items are drawn with Pillow only on the region they cover.
    """
    from PIL import Image, ImageDraw

    s = float(scale)
    if not s > 0:
        raise ConvscopeError(f"scale must be positive, got {scale}")
    width, height = max(1, round(scene.width * s)), max(1, round(scene.height * s))
    canvas = _filled(height, width, np.asarray(scene.background, dtype=np.uint8))

    def place(item: Raster) -> None:
        x0, y0 = round(item.x * s), round(item.y * s)
        x1, y1 = round((item.x + item.w) * s), round((item.y + item.h) * s)
        if x1 <= x0 or y1 <= y0:
            return
        src = _rgb(item.pixels)
        full = _nearest(src, y1 - y0, x1 - x0)
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if cx1 > cx0 and cy1 > cy0:
            canvas[cy0:cy1, cx0:cx1] = full[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]

    # runs of vector items between rasters are drawn in one Pillow pass on their bounding box
    run: list[Item] = []

    def flush() -> None:
        if not run:
            return
        boxes = np.array([_item_bbox(i) for i in run]) * s
        bx0 = int(max(0, math.floor(boxes[:, 0].min())))
        by0 = int(max(0, math.floor(boxes[:, 1].min())))
        bx1 = int(min(width, math.ceil(boxes[:, 2].max())))
        by1 = int(min(height, math.ceil(boxes[:, 3].max())))
        if bx1 > bx0 and by1 > by0:
            image = Image.fromarray(np.ascontiguousarray(canvas[by0:by1, bx0:bx1]))
            draw = ImageDraw.Draw(image)
            for item in run:
                _draw_pil(draw, image, item, s, -bx0, -by0)
            canvas[by0:by1, bx0:bx1] = np.asarray(image, dtype=np.uint8)
        run.clear()

    for item in scene.items:
        if isinstance(item, Raster):
            flush()
            place(item)
        else:
            run.append(item)
    flush()
    return canvas


def _draw_pil(draw: Any, image: Any, item: Item, s: float, dx: float, dy: float) -> None:
    def pt(x: float, y: float) -> tuple[float, float]:
        return x * s + dx, y * s + dy

    if isinstance(item, Rect):
        x0, y0 = pt(item.x, item.y)
        x1, y1 = pt(item.x + item.w, item.y + item.h)
        width = max(1, round(item.stroke_width * s)) if item.stroke is not None else 0
        if item.radius:
            draw.rounded_rectangle((x0, y0, x1, y1), radius=item.radius * s, fill=item.fill, outline=item.stroke,
                                   width=width)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=item.fill, outline=item.stroke, width=width)
    elif isinstance(item, Text):
        size = max(1, round(item.size * s))
        draw.text(pt(item.x, item.y), item.text, fill=item.fill, font=font(size))
    elif isinstance(item, Line):
        draw.line([pt(*p) for p in item.points], fill=item.stroke, width=max(1, round(item.width * s)))
    elif isinstance(item, Polygon):
        draw.polygon([pt(*p) for p in item.points], fill=item.fill)
    elif isinstance(item, Label):
        from PIL import Image

        from .grid import _label_patch

        patch = _label_patch(item.text)
        if s != 1.0:
            patch = _nearest(patch, max(1, round(patch.shape[0] * s)), max(1, round(patch.shape[1] * s)))
        x, y = pt(item.x, item.y)
        image.paste(Image.fromarray(np.ascontiguousarray(patch)), (round(x), round(y)))


# ------------------------------------------------------------------------------------------------
# SVG painter
# ------------------------------------------------------------------------------------------------


def _vector_rect(item: Rect) -> tuple[float, float, float, float]:
    """``(x, y, w, h)`` of the path that covers what Pillow paints for ``item``.

    Pillow's integer coordinates name pixels (centres at +0.5) and its rectangles include both end
    pixels, with the outline inside: the filled area is ``w + 1`` px wide and a stroke of width
    ``sw`` is centred ``sw / 2`` inside it. Lines and polygons are shifted by half a pixel likewise.
    """
    sw = float(item.stroke_width) if item.stroke is not None else 0.0
    return item.x + sw / 2, item.y + sw / 2, item.w + 1 - sw, item.h + 1 - sw


def _color(rgb: RGB | None) -> str:
    if rgb is None:
        return "none"
    r, g, b = (int(c) for c in rgb[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _esc(text: str) -> str:
    """``text`` safe inside SVG: escaped, and characters XML cannot hold replaced by U+FFFD."""
    return html.escape(_XML_INVALID.sub("\ufffd", text), quote=True)


def _png_b64(pixels: np.ndarray) -> str:
    from .picture import encode_png

    return base64.b64encode(encode_png(np.ascontiguousarray(_rgb(pixels)), 6)).decode("ascii")


def to_svg(scene: Scene) -> bytes:
    """The scene as a standalone SVG 1.1 document (UTF-8 bytes), sized in px (96 per inch).

    Text is ``<text>`` (editable; a ``<title>`` child shows the full string on hover when the item has
    one); rasters are PNG ``<image>`` elements with ``image-rendering: pixelated`` (nearest neighbour
    at any zoom) and ``preserveAspectRatio="none"`` (their box's aspect, e.g. physical spacing).
    Lines and polygons of a ``group`` carry it as their ``class`` (``class="skip"`` on each skip
    arrow's line and head in the U-Net flow figure).
    """
    w, h = scene.width, scene.height
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" version="1.1" '
        f'width="{w}px" height="{h}px" viewBox="0 0 {w} {h}">\n',
        f'<rect x="0" y="0" width="{w}" height="{h}" fill="{_color(scene.background)}"/>\n',
    ]
    for item in scene.items:
        if isinstance(item, Rect):
            rx = f' rx="{_num(item.radius)}"' if item.radius else ""
            stroke = f' stroke="{_color(item.stroke)}" stroke-width="{_num(item.stroke_width)}"' if item.stroke else ""
            rect_x, rect_y, rect_w, rect_h = _vector_rect(item)
            out.append(f'<rect x="{_num(rect_x)}" y="{_num(rect_y)}" width="{_num(rect_w)}" height="{_num(rect_h)}"'
                       f'{rx} fill="{_color(item.fill)}"{stroke}/>\n')
        elif isinstance(item, Text):
            title = f"<title>{_esc(item.title)}</title>" if item.title else ""
            cls = f' class="{_esc(item.role)}"' if item.role else ""
            out.append(f'<text x="{_num(item.x)}" y="{_num(item.y + _ascent(item.size))}"{cls} '
                       f'font-family="{SVG_FONT_FAMILY}" font-size="{item.size}" fill="{_color(item.fill)}" '
                       f'xml:space="preserve">{_esc(item.text)}{title}</text>\n')
        elif isinstance(item, Line):
            points = " ".join(f"{_num(x + 0.5)},{_num(y + 0.5)}" for x, y in item.points)
            cls = f' class="{_esc(item.group)}"' if item.group else ""
            out.append(f'<polyline points="{points}"{cls} fill="none" stroke="{_color(item.stroke)}" '
                       f'stroke-width="{_num(item.width)}"/>\n')
        elif isinstance(item, Polygon):
            points = " ".join(f"{_num(x + 0.5)},{_num(y + 0.5)}" for x, y in item.points)
            cls = f' class="{_esc(item.group)}"' if item.group else ""
            out.append(f'<polygon points="{points}"{cls} fill="{_color(item.fill)}"/>\n')
        elif isinstance(item, Raster):
            data = _png_b64(item.pixels)
            title = f"<title>{_esc(item.title)}</title>" if item.title else ""
            out.append(f'<image x="{_num(item.x)}" y="{_num(item.y)}" width="{_num(item.w)}" height="{_num(item.h)}" '
                       'preserveAspectRatio="none" image-rendering="pixelated" '
                       'style="image-rendering:pixelated;image-rendering:crisp-edges;image-rendering:optimizeSpeed" '
                       f'xlink:href="data:image/png;base64,{data}">{title}</image>\n')
        elif isinstance(item, Label):
            from .grid import _label_cell_size

            lh, _ = _label_cell_size(["0"])
            lw = text_width(item.text, 10) + 3
            out.append(f'<rect x="{_num(item.x)}" y="{_num(item.y)}" width="{lw}" height="{lh}" fill="#181818"/>\n')
            out.append(f'<text x="{_num(item.x + 1)}" y="{_num(item.y + 1 + _ascent(10) - 2)}" class="label" '
                       f'font-family="{SVG_FONT_FAMILY}" font-size="10" fill="#ffffff">{_esc(item.text)}</text>\n')
    out.append("</svg>\n")
    return "".join(out).encode("utf-8")


# ------------------------------------------------------------------------------------------------
# PDF painter (matplotlib's PDF backend, TrueType fonts)
# ------------------------------------------------------------------------------------------------

_FONT_LOCK = threading.Lock()
_FONT_FILE: list[Path] = []


def _font_file() -> Path:
    """Pillow's bundled TrueType font written once to a temporary file (so the PDF embeds the PNG's font)."""
    with _FONT_LOCK:
        if not _FONT_FILE:
            data = font(12).path.getvalue()  # a TrueType subset of Aileron (CC0) inside Pillow
            folder = Path(tempfile.mkdtemp(prefix="convscope-font-"))
            path = folder / "convscope-label-font.ttf"
            path.write_bytes(data)
            from matplotlib import font_manager

            font_manager.fontManager.addfont(str(path))
            _FONT_FILE.append(path)
        return _FONT_FILE[0]


def _import_matplotlib() -> Any:
    try:
        import matplotlib
        from matplotlib.backends.backend_pdf import FigureCanvasPdf  # noqa: F401
    except ImportError:
        raise ConvscopeError(
            "PDF output needs matplotlib: pip install 'convscope[export]' (PNG and SVG need nothing extra)"
        ) from None
    return matplotlib


def to_pdf(scene: Scene, *, size_in: tuple[float, float] | None = None, dpi: float = 300.0) -> bytes:
    """The scene as a one-page PDF (bytes), drawn with matplotlib's PDF backend.

    Args:
        size_in: page ``(width, height)`` in inches; default the scene at 96 px per inch.
        dpi: resolution the rasters are pre-upsampled to (nearest neighbour, integer factor per
            axis, at most 16): PDF viewers smooth embedded images, so each data pixel becomes a
            block of identical pixels that stays crisp. Rasters are embedded unresampled
            (``interpolation="none"``).

    Fonts are embedded as TrueType (``pdf.fonttype = 42``), never Type 3: Pillow's bundled font (the
    PNG's), then DejaVu Sans for characters it lacks.
    """
    matplotlib = _import_matplotlib()
    with _PDF_LOCK:  # matplotlib's rcParams are process-global: one PDF at a time
        return _to_pdf(matplotlib, scene, size_in, dpi)


_PDF_LOCK = threading.Lock()


def _to_pdf(matplotlib: Any, scene: Scene, size_in: tuple[float, float] | None, dpi: float) -> bytes:
    from matplotlib.backends.backend_pdf import FigureCanvasPdf
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties
    from matplotlib.patches import FancyBboxPatch, Rectangle
    from matplotlib.patches import Polygon as MplPolygon

    _font_file()
    w, h = float(scene.width), float(scene.height)
    if size_in is None:
        size_in = (w / PX_PER_INCH, h / PX_PER_INCH)
    pt_per_px = size_in[0] * 72.0 / w  # line widths and font sizes follow the page scale
    device_per_px = size_in[0] * float(dpi) / w
    rc = {"pdf.fonttype": 42, "ps.fonttype": 42, "pdf.compression": 6, "path.simplify": False,
          "font.family": ["Aileron", "DejaVu Sans"], "image.interpolation": "none", "image.resample": False,
          "image.composite_image": False, "text.parse_math": False, "text.usetex": False}
    with matplotlib.rc_context(rc):
        figure = Figure(figsize=size_in, dpi=72)
        canvas = FigureCanvasPdf(figure)
        ax = figure.add_axes((0, 0, 1, 1))
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_axis_off()
        face = (scene.background[0] / 255, scene.background[1] / 255, scene.background[2] / 255)
        ax.set_facecolor(face)
        figure.patch.set_facecolor(face)
        fonts: dict[int, Any] = {}

        def rgb(c: RGB | None) -> Any:
            return "none" if c is None else tuple(v / 255 for v in c[:3])

        z = 0.0
        for item in scene.items:
            z += 1.0
            if isinstance(item, Rect):
                lw = item.stroke_width * pt_per_px if item.stroke is not None else 0
                rx, ry, rw, rh = _vector_rect(item)
                patch: Any
                if item.radius:
                    patch = FancyBboxPatch((rx, ry), rw, rh,
                                           boxstyle=f"round,pad=0,rounding_size={item.radius}",
                                           facecolor=rgb(item.fill), edgecolor=rgb(item.stroke), linewidth=lw,
                                           mutation_aspect=1)
                else:
                    patch = Rectangle((rx, ry), rw, rh, facecolor=rgb(item.fill),
                                      edgecolor=rgb(item.stroke), linewidth=lw)
                patch.set_zorder(z)
                ax.add_patch(patch)
            elif isinstance(item, (Text, Label)):
                if isinstance(item, Label):
                    from .grid import _label_cell_size

                    lh, _ = _label_cell_size(["0"])
                    lw_box = text_width(item.text, 10) + 3
                    box = Rectangle((item.x, item.y), lw_box, lh, facecolor=(24 / 255,) * 3, edgecolor="none")
                    box.set_zorder(z)
                    ax.add_patch(box)
                    text, size, color, x, y = item.text, 10, (255, 255, 255), item.x + 1, item.y - 1
                else:
                    text, size, color, x, y = item.text, item.size, item.fill, item.x, item.y
                if size not in fonts:
                    fonts[size] = FontProperties(family=["Aileron", "DejaVu Sans"], size=size * pt_per_px)
                ax.text(x, y + _ascent(size), _XML_INVALID.sub("?", text), fontproperties=fonts[size], color=rgb(color), va="baseline",
                        ha="left", zorder=z + 0.5, clip_on=False)
            elif isinstance(item, Line):
                xs, ys = zip(*((x + 0.5, y + 0.5) for x, y in item.points))
                ax.plot(xs, ys, color=rgb(item.stroke), linewidth=item.width * pt_per_px, solid_capstyle="butt",
                        zorder=z)
            elif isinstance(item, Polygon):
                poly = MplPolygon([(x + 0.5, y + 0.5) for x, y in item.points], closed=True, facecolor=rgb(item.fill), edgecolor="none")
                poly.set_zorder(z)
                ax.add_patch(poly)
            elif isinstance(item, Raster):
                src = np.ascontiguousarray(_rgb(item.pixels))
                ph, pw = src.shape[:2]
                fy = int(min(16, max(1, math.ceil(item.h * device_per_px / ph))))
                fx = int(min(16, max(1, math.ceil(item.w * device_per_px / pw))))
                up = np.repeat(np.repeat(src, fy, axis=0), fx, axis=1) if fx * fy > 1 else src
                ax.imshow(up, extent=(item.x, item.x + item.w, item.y + item.h, item.y), interpolation="none",
                          resample=False, aspect="auto", zorder=z)
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        buf = io.BytesIO()
        with warnings.catch_warnings():  # a glyph neither font has is drawn as a box, as in the PNG
            warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
            canvas.print_pdf(buf, metadata={"Creator": "convscope", "Producer": "convscope (matplotlib PDF backend)"})
    return buf.getvalue()


def encode(scene: Scene, fmt: str, *, pixels: np.ndarray | None = None) -> bytes:
    """``scene`` as ``"png"``, ``"svg"`` or ``"pdf"`` bytes (``pixels``: an already painted PNG raster)."""
    from .picture import encode_png

    kind = fmt.lower().lstrip(".")
    if kind == "png":
        return encode_png(pixels if pixels is not None else paint_png(scene))
    if kind == "svg":
        return to_svg(scene)
    if kind == "pdf":
        return to_pdf(scene)
    raise ConvscopeError(f"unknown picture format {fmt!r}; use one of {', '.join(FORMATS)}")


def parse_formats(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"png,svg"`` (or a list) -> ``("png", "svg")``, validated, duplicates dropped; None -> ``("png",)``."""
    if text is None:
        return ("png",)
    parts: Sequence[str] = text.split(",") if isinstance(text, str) else list(text)
    chosen: list[str] = []
    for part in parts:
        for piece in str(part).split(","):
            name = piece.strip().lower().lstrip(".")
            if not name:
                continue
            if name not in FORMATS:
                raise ConvscopeError(f"unknown --format {name!r}; use png, svg or pdf (several: png,svg,pdf)")
            if name not in chosen:
                chosen.append(name)
    if not chosen:
        raise ConvscopeError("--format is empty; use png, svg or pdf (several: png,svg,pdf)")
    return tuple(chosen)
