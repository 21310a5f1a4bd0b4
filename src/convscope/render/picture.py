"""The rendered-image value type returned by every ``grid()`` / ``overlay()`` call."""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..io.files import atomic_write_bytes

if TYPE_CHECKING:
    from PIL import Image

    from .scene import Scene

__all__ = ["Picture", "encode_png"]

DEFAULT_COMPRESS_LEVEL = 1
"""Deflate level for PNG: 1 is the fastest level that compresses (several times faster than 6)."""

_FAST_LEVELS = (1, 2, 3)
"""Levels served by ISA-L's deflate (``isal``, the ``[fast]`` extra, in ``[cli]``) when installed:
about 3x faster than zlib at level 1 for convscope's grids, files 5-20% larger. Higher levels use zlib."""


@lru_cache(maxsize=1)
def _isal_zlib() -> Any:
    """``isal.isal_zlib`` (the same compressobj API as :mod:`zlib`), or None when not installed."""
    try:
        from isal import isal_zlib
    except ImportError:
        return None
    return isal_zlib


def _compressor(level: int) -> Any:
    """A deflate compressobj writing a zlib stream (what PNG's IDAT holds) at ``level``."""
    fast = _isal_zlib() if level in _FAST_LEVELS else None
    if fast is not None:
        return fast.compressobj(level)
    return zlib.compressobj(level)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (gray, gray+alpha, RGB, RGBA)
_BLOCK_BYTES = 1 << 21  # rows are filtered and compressed in blocks of about this many bytes


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def encode_png(pixels: np.ndarray, compress_level: int = DEFAULT_COMPRESS_LEVEL) -> bytes:
    """Encode an ``(H, W, 3|4)`` or ``(H, W)`` ``uint8`` array as PNG bytes (8 bits per sample).

    A direct encoder (numpy + deflate, which releases the GIL, so images encode in parallel on a
    thread pool; ISA-L's deflate for levels 1-3 when ``isal`` is installed, else zlib). Each row is filtered with Up when it repeats the row above (nearest-upscaled
    grids: the row becomes zeros, which deflate quickly) and with None otherwise. That is about 3x
    faster than Pillow's per-row trial of all five filters at the same zlib level, and the files
    are smaller for convscope's grids. Any PNG reader (Pillow included) decodes it to exactly
    ``pixels``.
    """
    arr = np.asarray(pixels)
    if arr.dtype != np.uint8:
        raise TypeError(f"encode_png needs uint8 pixels, got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in _COLOR_TYPES or 0 in arr.shape:
        raise TypeError(f"encode_png needs an (H, W), (H, W, 3) or (H, W, 4) array, got shape {arr.shape}")
    level = int(compress_level)
    if not 0 <= level <= 9:
        raise ValueError(f"compress_level must be 0..9, got {compress_level}")
    height, width, channels = arr.shape
    rows = np.ascontiguousarray(arr).reshape(height, width * channels)
    line = rows.shape[1]
    compressor = _compressor(level)
    block = max(1, _BLOCK_BYTES // (line + 1))
    buf = np.empty((min(block, height), line + 1), dtype=np.uint8)
    repeat = np.zeros(min(block, height), dtype=bool)
    parts: list[bytes] = []
    for start in range(0, height, block):
        stop = min(start + block, height)
        out, same = buf[: stop - start], repeat[: stop - start]
        current = rows[start:stop]
        first = 1 if start == 0 else 0  # the image's first row has no row above
        same[:first] = False
        if stop - start > first:
            np.all(current[first:] == rows[start + first - 1 : stop - 1], axis=1, out=same[first:])
        out[:, 0] = np.where(same, 2, 0)  # filter type: 2 = Up, 0 = None
        out[:, 1:] = current
        out[same, 1:] = 0  # Up of a repeated row
        parts.append(compressor.compress(out.data))
    parts.append(compressor.flush())
    idat = b"".join(parts)
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPES[channels], 0, 0, 0)
    chunks = [_PNG_SIGNATURE, _png_chunk(b"IHDR", header)]
    step = 1 << 30  # IDAT chunks must stay below 2**31 bytes
    chunks += [_png_chunk(b"IDAT", idat[i : i + step]) for i in range(0, len(idat), step)]
    chunks.append(_png_chunk(b"IEND", b""))
    return b"".join(chunks)


@dataclass(frozen=True, eq=False)
class Picture:
    """An RGB(A) image produced by convscope, and the figure it belongs to.

    Attributes:
        pixels: ``(H, W, 3)`` or ``(H, W, 4)`` ``uint8`` array, row-major, top row first: the data
            image (a grid's cells, an overlay, a flow figure).
        meta: what was drawn (layer, channels shown, value range, normalization); goes into
            ``manifest.json`` entries.
        scene: the figure as a :class:`~convscope.render.scene.Scene` (the data image plus vector
            text, colour bar, scale bar), or None for a bare image. Every file format is drawn from
            it: ``to_png()`` paints it (so PNG files carry the colour bar too), ``to_svg()`` and
            ``to_pdf()`` write it as vectors with the pixels embedded crisp.
    """

    pixels: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    scene: Scene | None = field(default=None, repr=False)

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

    @property
    def figure(self) -> Scene:
        """The figure scene (a scene holding just ``pixels`` for a bare image)."""
        if self.scene is not None:
            return self.scene
        from .scene import Raster, Scene

        return Scene(self.width, self.height, (Raster(0, 0, self.width, self.height, self.pixels[..., :3]),),
                     meta={"body": [self.width, self.height]})

    def figure_pixels(self) -> np.ndarray:
        """``(H, W, 3|4)`` uint8: the figure painted (``pixels`` itself for a bare image)."""
        if self.scene is None:
            return self.pixels
        from .scene import paint_png

        return paint_png(self.scene, scale=float(self.scene.meta.get("png_scale", 1.0)))

    def to_png(self, compress_level: int = DEFAULT_COMPRESS_LEVEL) -> bytes:
        """PNG bytes of the figure (:meth:`figure_pixels`)."""
        return encode_png(self.figure_pixels(), compress_level)

    def to_svg(self) -> bytes:
        """SVG bytes of the figure: editable text, pixel data crisp (``image-rendering: pixelated``)."""
        from .scene import to_svg

        return to_svg(self.figure)

    def to_pdf(self, **options: Any) -> bytes:
        """One-page PDF bytes of the figure (needs ``convscope[export]``; see :func:`~convscope.render.scene.to_pdf`)."""
        from .scene import to_pdf

        size_in = self.figure.meta.get("size_in")
        if size_in is not None:
            options.setdefault("size_in", tuple(size_in))
            options.setdefault("dpi", float(self.figure.meta.get("dpi", 300.0)))
        return to_pdf(self.figure, **options)

    def encode(self, fmt: str, compress_level: int = DEFAULT_COMPRESS_LEVEL) -> bytes:
        """The figure as ``"png"``, ``"svg"`` or ``"pdf"`` bytes."""
        kind = fmt.lower().lstrip(".")
        if kind == "png":
            return self.to_png(compress_level)
        if kind == "svg":
            return self.to_svg()
        if kind == "pdf":
            return self.to_pdf()
        raise ValueError(f"unknown picture format {fmt!r}; use png, svg or pdf")

    def save(self, path: str | os.PathLike[str], compress_level: int = DEFAULT_COMPRESS_LEVEL) -> Path:
        """Write the figure atomically (temporary file + rename) as PNG, SVG or PDF, chosen by the
        path's suffix (``.png``, ``.svg``, ``.pdf``), and return the path."""
        target = Path(path)
        kind = target.suffix.lower().lstrip(".")
        if kind not in ("png", "svg", "pdf"):
            raise ValueError(f"Picture.save writes .png, .svg or .pdf; give a path with one of those suffixes, not {target.name!r}")
        return atomic_write_bytes(target, self.encode(kind, compress_level))

    def to_pil(self) -> Image.Image:
        from PIL import Image

        return Image.fromarray(self.pixels)

    def _repr_png_(self) -> bytes:  # Jupyter inline display
        return self.to_png()

    def __repr__(self) -> str:
        return f"Picture({self.width}x{self.height}, meta={ {k: self.meta[k] for k in list(self.meta)[:4]} })"
