"""The rendered-image value type returned by every ``grid()`` / ``overlay()`` call."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io.files import atomic_write_bytes

__all__ = ["Picture", "encode_png"]

DEFAULT_COMPRESS_LEVEL = 1
"""zlib level for PNG: 1 is several times faster than Pillow's default 6 for ~10-20% larger files."""


def encode_png(pixels: np.ndarray, compress_level: int = DEFAULT_COMPRESS_LEVEL) -> bytes:
    """Encode an ``(H, W, 3|4)`` or ``(H, W)`` ``uint8`` array as PNG bytes with Pillow."""
    from PIL import Image

    arr = np.ascontiguousarray(pixels)
    if arr.dtype != np.uint8:
        raise TypeError(f"encode_png needs uint8 pixels, got {arr.dtype}")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


@dataclass(frozen=True, eq=False)
class Picture:
    """An RGB(A) image produced by convscope.

    Attributes:
        pixels: ``(H, W, 3)`` or ``(H, W, 4)`` ``uint8`` array, row-major, top row first.
        meta: what was drawn (layer, channels shown, value range, normalization); goes into
            ``manifest.json`` entries.
    """

    pixels: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.pixels.dtype != np.uint8 or self.pixels.ndim != 3 or self.pixels.shape[2] not in (3, 4):
            raise ValueError(
                f"Picture needs an (H, W, 3|4) uint8 array, got {self.pixels.shape} {self.pixels.dtype}"
            )

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` as in Pillow."""
        return (self.width, self.height)

    def to_png(self, compress_level: int = DEFAULT_COMPRESS_LEVEL) -> bytes:
        return encode_png(self.pixels, compress_level)

    def save(self, path: str | os.PathLike[str], compress_level: int = DEFAULT_COMPRESS_LEVEL) -> Path:
        """Write a PNG atomically (temporary file + rename) and return the path."""
        target = Path(path)
        if target.suffix.lower() != ".png":
            raise ValueError(f"Picture.save writes PNG; give a path ending in .png, not {target.name!r}")
        return atomic_write_bytes(target, self.to_png(compress_level))

    def to_pil(self) -> Any:
        from PIL import Image

        return Image.fromarray(self.pixels)

    def _repr_png_(self) -> bytes:  # Jupyter inline display
        return self.to_png()

    def __repr__(self) -> str:
        return f"Picture({self.width}x{self.height}, meta={ {k: self.meta[k] for k in list(self.meta)[:4]} })"
