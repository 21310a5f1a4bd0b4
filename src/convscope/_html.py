"""Small HTML pieces for Jupyter's ``_repr_html_``: escaped tables, rounded numbers, tiny thumbnails.

Every model-derived string goes through :func:`html.escape`; thumbnails are inline PNG data URIs.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["table", "number", "thumbnail", "plural"]

THUMB_SIDE = 48
"""Largest side of a thumbnail, pixels."""


def plural(count: int, word: str, many: str | None = None) -> str:
    """``plural(1, "layer")`` -> ``"1 layer"``; ``plural(3, "layer")`` -> ``"3 layers"``."""
    return f"{count} {word if count == 1 else (many or word + 's')}"


def number(value: Any, digits: int = 4) -> str:
    """A rounded, readable number (``-`` for None/NaN)."""
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return html.escape(str(value))
    if not math.isfinite(v):
        return "-" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if v == 0:
        return "0"
    return f"{v:.{digits}g}" if 1e-3 <= abs(v) < 1e5 else f"{v:.{max(1, digits - 1)}e}"


def thumbnail(maps: np.ndarray | None, side: int = THUMB_SIDE) -> str:
    """``<img>`` of a ``(H, W)`` map (min-max to gray) at most ``side`` px, or ``""``."""
    if maps is None or maps.ndim != 2 or maps.size == 0:
        return ""
    from PIL import Image

    data = np.asarray(maps, dtype=np.float32)
    finite = np.isfinite(data)
    if not finite.any():
        return ""
    low, high = float(data[finite].min()), float(data[finite].max())
    unit = np.where(finite, (data - low) / (high - low) if high > low else 0.0, 0.0)
    picture = Image.fromarray((np.clip(unit, 0, 1) * 255).astype(np.uint8), mode="L")
    scale = side / max(picture.size)
    if scale < 1:
        picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                                 Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    uri = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{uri}" width="{picture.width}" height="{picture.height}" alt="">'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, caption: str | None = None,
          raw_columns: Sequence[int] = ()) -> str:
    """An HTML table; cells are escaped except those in ``raw_columns`` (already HTML, e.g. thumbnails)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(f"<td>{cell if i in raw_columns else html.escape(str(cell))}</td>" for i, cell in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
