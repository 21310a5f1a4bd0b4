"""Three-plane views of a volume (axial, coronal, sagittal), in the patient's anatomy.

Conventions (radiological):

- axial: seen from the feet; patient's **right on the image's left**, anterior at the top.
- coronal: seen from the front; patient's right on the image's left, superior at the top.
- sagittal: seen from the patient's left; anterior on the image's left, superior at the top.

Every plane is named, carries its orientation letters on its four edges (R/L, A/P, S/I), keeps
the physical aspect ratio of anisotropic voxels (each voxel is drawn ``spacing / mm_per_pixel``
pixels, nearest neighbour: a drawing choice, no value is interpolated), and has a scale bar in mm.
Maps (activations, CAMs) are blended over the original intensities seen through the display
window; label maps are drawn as coloured outlines.

Input volumes are :class:`~convscope.core.volume.Volume` (``(C, X, Y, Z)`` RAS+).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from ..core.volume import Volume
from ..core.view import PLANES, plane_slice, plane_spacing
from .colormap import apply_colormap
from .picture import Picture

__all__ = ["render_planes", "render_plane", "render_plane_stack", "PLANE_EDGES", "letter_patch"]

PLANE_EDGES: dict[str, dict[str, str]] = {
    "axial": {"left": "R", "right": "L", "top": "A", "bottom": "P"},
    "coronal": {"left": "R", "right": "L", "top": "S", "bottom": "I"},
    "sagittal": {"left": "A", "right": "P", "top": "S", "bottom": "I"},
}
"""The orientation letter on each edge of each plane (radiological convention)."""

_SLICE_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}
_AXIS_NAME = "xyz"
_MARGIN = 16
_HEADER = 16
_TITLE = 16
_BG = (24, 24, 24)
_FG = (235, 235, 235)
_LETTER = (255, 214, 0)
_LABEL_COLORS = np.asarray(
    [(255, 64, 64), (64, 200, 255), (80, 230, 80), (255, 160, 0), (220, 80, 255), (255, 255, 64), (0, 255, 200), (255, 120, 180)],
    dtype=np.uint8,
)
_ROI_COLOR = (0, 255, 255)


@lru_cache(maxsize=1)
def _font() -> Any:
    from PIL import ImageFont

    return ImageFont.load_default()


@lru_cache(maxsize=256)
def letter_patch(text: str, color: tuple[int, int, int] = _LETTER) -> np.ndarray:
    """``(h, w, 3)`` uint8: ``text`` drawn on the figure background (what every edge letter looks like)."""
    from PIL import Image, ImageDraw

    left, top, right, bottom = _font().getbbox(text)
    image = Image.new("RGB", (int(right - left) + 2, int(bottom - top) + 2), _BG)
    ImageDraw.Draw(image).text((1 - left, 1 - top), text, fill=color, font=_font())
    patch = np.asarray(image, dtype=np.uint8).copy()
    patch.setflags(write=False)
    return patch


def _blit(canvas: np.ndarray, patch: np.ndarray, x: int, y: int) -> tuple[int, int]:
    h, w = patch.shape[:2]
    x = int(min(max(x, 0), canvas.shape[1] - w))
    y = int(min(max(y, 0), canvas.shape[0] - h))
    canvas[y:y + h, x:x + w] = patch
    return x, y


def _text(canvas: np.ndarray, text: str, x: int, y: int, color: tuple[int, int, int] = _FG) -> None:
    _blit(canvas, letter_patch(text, color), x, y)


def _nearest(n_src: int, n_dst: int) -> np.ndarray:
    return np.minimum(((np.arange(n_dst) + 0.5) * n_src / n_dst).astype(np.int64), n_src - 1)


def _outline(labels2d: np.ndarray) -> np.ndarray:
    """Pixels of a label image whose 4-neighbourhood holds another label (inside a labelled region)."""
    edge = np.zeros(labels2d.shape, dtype=bool)
    edge[1:, :] |= labels2d[1:, :] != labels2d[:-1, :]
    edge[:-1, :] |= labels2d[:-1, :] != labels2d[1:, :]
    edge[:, 1:] |= labels2d[:, 1:] != labels2d[:, :-1]
    edge[:, :-1] |= labels2d[:, :-1] != labels2d[:, 1:]
    edge[0, :] |= labels2d[0, :] != 0
    edge[-1, :] |= labels2d[-1, :] != 0
    edge[:, 0] |= labels2d[:, 0] != 0
    edge[:, -1] |= labels2d[:, -1] != 0
    return edge & (labels2d != 0)


def _scale_bar_mm(width_px: int, mm_per_px: float) -> float:
    best = 1.0
    for length in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500):
        if length / mm_per_px <= 0.45 * width_px:
            best = float(length)
    return best


def render_planes(
    volume: Volume,
    *,
    point: Sequence[int] | None = None,
    window: str | None = None,
    channel: int = 0,
    overlay: np.ndarray | None = None,
    overlay_cmap: str = "inferno",
    overlay_alpha: float = 0.6,
    overlay_name: str = "",
    labels: np.ndarray | None = None,
    roi: tuple[Sequence[int], Sequence[int]] | None = None,
    title: str = "",
    stamp: str = "",
    size: int = 256,
    label_names: Mapping[int, str] | None = None,
) -> Picture:
    """Axial, coronal and sagittal planes through ``point`` side by side, as one :class:`Picture`.

    Args:
        volume: the scan (original intensities; channel ``channel`` is drawn).
        point: voxel ``(x, y, z)`` of the RAS+ array the three planes pass through (default: centre).
        window: display window (``--window``: preset, ``L,W``, ``percentile:P,Q``, ``auto``).
        overlay: ``(X, Y, Z)`` map on the volume grid (NaN: no data, not drawn), min-max scaled over
            the whole volume (one scale for the three planes) and blended with opacity
            ``overlay_alpha * value`` so weak values leave the anatomy visible.
        labels: ``(X, Y, Z)`` integer label map, drawn as coloured outlines.
        label_names: label value -> name (a DICOM SEG's SegmentLabel): a legend line under the planes,
            each name in its outline colour (``meta["legend"]``).
        roi: ``(start, shape)`` voxel box drawn as a cyan outline where a plane cuts it.
        title / stamp: first line of the figure / second line (window and intensity).
        size: the longest panel side in pixels (at least one pixel per voxel is kept).

    Returns:
        A Picture whose ``meta["planes"]`` gives, per plane, its slice, the image box
        ``[x, y, w, h]`` in the picture, the letters and where they are drawn, and the scale bar.
    """
    data = volume.data[channel]
    shape = volume.shape
    centre = tuple(int(p) for p in (point if point is not None else [n // 2 for n in shape]))
    if len(centre) != 3 or any(not 0 <= c < n for c, n in zip(centre, shape)):
        raise ValueError(f"point {centre} is outside the volume {shape}")
    spacing = volume.spacing
    from ..io.volume_prep import window_function  # lazy: render/ imports no io at module level

    win, win_label = window_function(window, volume.units, data)
    ov_lo = ov_hi = 0.0
    if overlay is not None:
        if overlay.shape != shape:
            raise ValueError(f"overlay shape {overlay.shape} differs from the volume's {shape}")
        finite = overlay[np.isfinite(overlay)]
        if finite.size:
            ov_lo, ov_hi = float(finite.min()), float(finite.max())
    if labels is not None and labels.shape != shape:
        raise ValueError(f"label map shape {labels.shape} differs from the volume's {shape}")
    roi_masks = None
    if roi is not None:
        start, extent = roi
        roi_masks = [np.zeros(n, dtype=bool) for n in shape]
        for axis in range(3):
            roi_masks[axis][int(start[axis]):int(start[axis]) + int(extent[axis])] = True

    # one mm-per-pixel for every panel: physical sizes are comparable across planes
    extents_mm = [n * s for n, s in zip(shape, spacing)]
    mm_per_px = max(max(extents_mm) / size, 1e-9)
    mm_per_px = min(mm_per_px, min(spacing))  # at least one pixel per voxel along the finest axis

    panels = []
    for plane in PLANES:
        axis = _SLICE_AXIS[plane]
        index = centre[axis]
        gray = plane_slice(data, plane, index)
        row_mm, col_mm = plane_spacing(spacing, plane)
        rows = max(1, int(round(gray.shape[0] * row_mm / mm_per_px)))
        cols = max(1, int(round(gray.shape[1] * col_mm / mm_per_px)))
        ri, ci = _nearest(gray.shape[0], rows), _nearest(gray.shape[1], cols)
        grid = np.ix_(ri, ci)
        unit = win(gray)[grid]
        rgb = np.repeat((unit[..., None] * 255.0 + 0.5).astype(np.uint8), 3, axis=-1)
        if overlay is not None and ov_hi > ov_lo:
            ov = plane_slice(overlay, plane, index)[grid]
            ok = np.isfinite(ov)
            u = np.where(ok, (ov - ov_lo) / (ov_hi - ov_lo), 0.0).astype(np.float32)
            colors = apply_colormap(np.clip(u, 0, 1), overlay_cmap)[..., :3].astype(np.float32)
            alpha = (overlay_alpha * u * ok)[..., None]
            rgb = (rgb.astype(np.float32) * (1 - alpha) + colors * alpha + 0.5).astype(np.uint8)
        if labels is not None:
            lab = plane_slice(labels, plane, index)[grid].astype(np.int64)
            outline = _outline(lab)
            rgb[outline] = _LABEL_COLORS[(lab[outline] - 1) % len(_LABEL_COLORS)]
        if roi_masks is not None and roi_masks[axis][index]:
            masks = [m for a, m in enumerate(roi_masks) if a != axis]
            box3 = np.broadcast_to(
                (masks[0][:, None] & masks[1][None, :]).reshape(
                    [shape[a] if a != axis else 1 for a in range(3)]), [shape[a] if a != axis else 1 for a in range(3)])
            box = plane_slice(box3, plane, 0)[grid]
            rgb[_outline(box.astype(np.int64))] = _ROI_COLOR
        panels.append((plane, axis, index, rgb, row_mm, col_mm))

    panel_h = max(p[3].shape[0] for p in panels)
    heights = [_TITLE * (2 if stamp else 1) if title or stamp else 0]
    top = heights[0]
    cell_w = [p[3].shape[1] + 2 * _MARGIN for p in panels]
    legend = [(int(v), str(n), tuple(int(c) for c in _LABEL_COLORS[(int(v) - 1) % len(_LABEL_COLORS)]))
              for v, n in sorted((label_names or {}).items()) if int(v) > 0] if labels is not None else []
    legend_patches = [letter_patch(f"{v}: {n}", color) for v, n, color in legend]
    texts = [t for t in (title, stamp) if t]  # a tall, narrow scan: the canvas is widened to its text lines
    width = max([sum(cell_w)] + [letter_patch(t, _FG).shape[1] + 8 for t in texts]
                + [sum(p.shape[1] + 10 for p in legend_patches) + 4])
    height = top + _HEADER + panel_h + 2 * _MARGIN + 14 + (_TITLE if legend else 0)
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[:] = _BG
    if title:
        _text(canvas, title, 4, 2)
    if stamp:
        _text(canvas, stamp, 4, 2 + _TITLE if title else 2)
    meta_planes: dict[str, Any] = {}
    x_cell = 0
    for (plane, axis, index, rgb, row_mm, col_mm), cw in zip(panels, cell_w):
        h, w = rgb.shape[:2]
        x0 = x_cell + _MARGIN
        y0 = top + _HEADER + _MARGIN + (panel_h - h) // 2
        canvas[y0:y0 + h, x0:x0 + w] = rgb
        _text(canvas, f"{plane} {_AXIS_NAME[axis]}={index}", x_cell + 4, top + 2)
        letters: dict[str, list[int]] = {}
        for edge, letter in PLANE_EDGES[plane].items():
            patch = letter_patch(letter)
            ph, pw = patch.shape[:2]
            if edge == "left":
                pos = (x0 - pw - 2, y0 + h // 2 - ph // 2)
            elif edge == "right":
                pos = (x0 + w + 2, y0 + h // 2 - ph // 2)
            elif edge == "top":
                pos = (x0 + w // 2 - pw // 2, y0 - ph - 1)
            else:
                pos = (x0 + w // 2 - pw // 2, y0 + h + 1)
            letters[edge] = [*_blit(canvas, patch, *pos), pw, ph]
        bar_mm = _scale_bar_mm(w, mm_per_px)
        bar_px = max(1, int(round(bar_mm / mm_per_px)))
        bar_y = top + _HEADER + 2 * _MARGIN + panel_h
        canvas[bar_y:bar_y + 3, x0:x0 + bar_px] = _FG
        _text(canvas, f"{bar_mm:g} mm", x0 + bar_px + 4, bar_y - 4)
        meta_planes[plane] = {
            "slice_axis": _AXIS_NAME[axis], "index": int(index), "box": [int(x0), int(y0), int(w), int(h)],
            "edges": dict(PLANE_EDGES[plane]), "letters": letters, "voxel_mm": [row_mm, col_mm],
            "mm_per_pixel": mm_per_px, "scale_bar_mm": bar_mm, "scale_bar_px": bar_px,
        }
        x_cell += cw
    meta = {
        "kind": "planes", "planes": meta_planes, "point": list(centre), "window": win_label,
        "spacing_mm": list(spacing), "convention": "radiological (patient right on image left in axial/coronal)",
    }
    if legend:  # one line under the scale bars: "1: liver" in label 1's outline colour, ...
        x_leg, y_leg = 4, height - _TITLE + 1
        entries = {}
        for (value, name, color), patch in zip(legend, legend_patches):
            x_at, y_at = _blit(canvas, patch, x_leg, y_leg)
            entries[str(value)] = {"name": name, "color": list(color), "at": [x_at, y_at, patch.shape[1], patch.shape[0]]}
            x_leg += patch.shape[1] + 10
        meta["legend"] = entries
    if overlay is not None:
        meta["overlay"] = {"name": overlay_name, "range": [ov_lo, ov_hi], "cmap": overlay_cmap, "alpha": overlay_alpha}
    return Picture(np.ascontiguousarray(canvas), meta=meta)


def render_plane(
    volume: Volume,
    plane: str,
    index: int,
    *,
    window: str | None = None,
    channel: int = 0,
    overlay: np.ndarray | None = None,
    overlay_alpha: float = 0.6,
    overlay_cmap: str = "inferno",
    mip: bool = False,
    size: int = 384,
) -> Picture:
    """One plane of ``volume`` as a bare image (no margins), for the viewer's linked planes.

    ``mip`` shows the maximum projection along the plane's normal instead of slice ``index`` (of the
    intensities and of the overlay). The image keeps the physical aspect ratio (one mm-per-pixel
    for every plane of a volume, from ``size``); ``meta`` gives ``rows``/``cols`` of the slice,
    ``mm_per_pixel``, the ``edges`` letters and the overlay range.
    """
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {', '.join(PLANES)}; got {plane!r}")
    axis = _SLICE_AXIS[plane]
    data = volume.data[channel]
    count = data.shape[axis]
    if not 0 <= index < count:
        raise ValueError(f"{plane} slice {index} is out of range 0..{count - 1}")
    from ..io.volume_prep import window_function  # lazy: render/ imports no io at module level

    win, win_label = window_function(window, volume.units, data)

    def cut(arr: np.ndarray) -> np.ndarray:
        if not mip:
            return plane_slice(arr, plane, index)
        with np.errstate(invalid="ignore"):
            proj = np.nanmax(arr, axis=axis, keepdims=True) if np.isnan(arr).any() else arr.max(axis=axis, keepdims=True)
        return plane_slice(proj, plane, 0)

    gray = cut(data)
    extents_mm = [n * s for n, s in zip(volume.shape, volume.spacing)]
    mm_per_px = min(max(max(extents_mm) / size, 1e-9), min(volume.spacing))
    row_mm, col_mm = plane_spacing(volume.spacing, plane)
    rows = max(1, int(round(gray.shape[0] * row_mm / mm_per_px)))
    cols = max(1, int(round(gray.shape[1] * col_mm / mm_per_px)))
    grid = np.ix_(_nearest(gray.shape[0], rows), _nearest(gray.shape[1], cols))
    unit = win(gray)[grid]
    rgb = np.repeat((unit[..., None] * 255.0 + 0.5).astype(np.uint8), 3, axis=-1)
    meta: dict[str, Any] = {"plane": plane, "index": int(index), "mip": bool(mip), "rows": int(gray.shape[0]),
                            "cols": int(gray.shape[1]), "mm_per_pixel": mm_per_px, "edges": dict(PLANE_EDGES[plane]),
                            "window": win_label}
    if overlay is not None:
        finite = overlay[np.isfinite(overlay)]
        if finite.size and float(finite.max()) > float(finite.min()):
            lo, hi = float(finite.min()), float(finite.max())
            ov = cut(overlay)[grid]
            ok = np.isfinite(ov)
            u = np.where(ok, (ov - lo) / (hi - lo), 0.0).astype(np.float32)
            colors = apply_colormap(np.clip(u, 0, 1), overlay_cmap)[..., :3].astype(np.float32)
            alpha = (overlay_alpha * u * ok)[..., None]
            rgb = (rgb.astype(np.float32) * (1 - alpha) + colors * alpha + 0.5).astype(np.uint8)
            meta["overlay_range"] = [lo, hi]
    return Picture(np.ascontiguousarray(rgb), meta=meta)


def render_plane_stack(
    volume: Volume,
    plane: str,
    indices: Sequence[int],
    *,
    window: str | None = None,
    channel: int = 0,
    size: int = 256,
) -> tuple[list[Picture], Picture]:
    """Slices ``indices`` of one plane and its maximum projection, as bare images (for the report's
    linked planes), drawn as :func:`render_plane` draws them but with the display window computed
    once for the whole stack (a percentile window is not recomputed per slice).

    Returns ``(slices, mip)``: one :class:`Picture` per index (``meta`` as :func:`render_plane`'s)
    and the maximum projection along the plane's normal.
    """
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {', '.join(PLANES)}; got {plane!r}")
    axis = _SLICE_AXIS[plane]
    data = volume.data[channel]
    count = data.shape[axis]
    from ..io.volume_prep import window_function  # lazy: render/ imports no io at module level

    win, win_label = window_function(window, volume.units, data)
    extents_mm = [n * s for n, s in zip(volume.shape, volume.spacing)]
    mm_per_px = min(max(max(extents_mm) / size, 1e-9), min(volume.spacing))
    row_mm, col_mm = plane_spacing(volume.spacing, plane)

    def draw(gray: np.ndarray, index: int, mip: bool) -> Picture:
        rows = max(1, int(round(gray.shape[0] * row_mm / mm_per_px)))
        cols = max(1, int(round(gray.shape[1] * col_mm / mm_per_px)))
        grid = np.ix_(_nearest(gray.shape[0], rows), _nearest(gray.shape[1], cols))
        unit = win(gray)[grid]
        rgb = np.repeat((unit[..., None] * 255.0 + 0.5).astype(np.uint8), 3, axis=-1)
        return Picture(np.ascontiguousarray(rgb), meta={
            "plane": plane, "index": int(index), "mip": mip, "rows": int(gray.shape[0]), "cols": int(gray.shape[1]),
            "mm_per_pixel": mm_per_px, "edges": dict(PLANE_EDGES[plane]), "window": win_label})

    slices = []
    for index in indices:
        if not 0 <= int(index) < count:
            raise ValueError(f"{plane} slice {index} is out of range 0..{count - 1}")
        slices.append(draw(plane_slice(data, plane, int(index)), int(index), False))
    with np.errstate(invalid="ignore"):
        proj = np.nanmax(data, axis=axis, keepdims=True) if np.isnan(data).any() else data.max(axis=axis, keepdims=True)
    return slices, draw(plane_slice(proj, plane, 0), 0, True)
