"""Linked orthogonal planes of a 3D scan input for the static report.

Per plane (axial, coronal, sagittal) one small PNG per slice index of the input, in its display
window (radiological convention, physical aspect; :func:`convscope.render.planes.render_plane_stack`),
and one maximum-projection PNG. Above :data:`MAX_SLICES` slices a plane is sampled evenly (stated on
the page). ``report.js`` shows them with sliders, a shared crosshair and click-to-move, loading
each slice only when it is shown.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MAX_SLICES", "sampled_indices", "write_linked_planes"]

MAX_SLICES = 256
"""At most this many slice PNGs per plane; more slices are sampled evenly."""

_COUNT_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}


def sampled_indices(count: int, cap: int = MAX_SLICES) -> list[int]:
    """Slice indices written for a plane of ``count`` slices: all of them, or ``cap`` evenly spaced
    (first and last included)."""
    if count <= cap:
        return list(range(count))
    return [int(v) for v in np.unique(np.round(np.linspace(0, count - 1, cap)).astype(np.int64))]


def write_linked_planes(folder: Any, record: Any, image_index: int, *, cap: int = MAX_SLICES,
                        size: int = 256) -> dict[str, Any]:
    """Write ``planes/image-N/{plane}-{index}.png`` and ``{plane}-mip.png`` for a volume input
    (``record``: :class:`~convscope.io.volume_prep.VolumeInput`, channel 0 in its display window);
    returns the JSON-ready description the page embeds (shape, spacing, counts, edges, files)."""
    from ..io.volume_prep import channel_window
    from ..render.planes import PLANE_EDGES, render_plane_stack

    vol = record.volume
    shape = [int(n) for n in vol.shape]
    window = channel_window(record.window, 0)
    planes: dict[str, Any] = {}
    sampled = False
    for plane in ("axial", "coronal", "sagittal"):
        count = shape[_COUNT_AXIS[plane]]
        indices = sampled_indices(count, cap)
        sampled = sampled or len(indices) < count
        slices, mip = render_plane_stack(vol, plane, indices, window=window, size=size)
        base = f"planes/image-{image_index}/{plane}"
        files = []
        for index, pic in zip(indices, slices):
            rel = f"{base}-{index:04d}.png"
            folder.add_bytes(rel, pic.to_png(), kind="plane-slice", plane=plane, index=index, width=pic.width,
                             height=pic.height)
            files.append(rel)
        mip_rel = f"{base}-mip.png"
        folder.add_bytes(mip_rel, mip.to_png(), kind="plane-mip", plane=plane, width=mip.width, height=mip.height)
        planes[plane] = {"count": count, "indices": indices, "files": files, "mip": mip_rel,
                         "width": slices[0].width if slices else mip.width,
                         "height": slices[0].height if slices else mip.height,
                         "edges": dict(PLANE_EDGES[plane])}
    return {
        "shape": shape, "spacing_mm": [float(f"{s:.6g}") for s in vol.spacing],
        "counts": {p: planes[p]["count"] for p in planes}, "point": [n // 2 for n in shape],
        "window": slices[0].meta["window"] if slices else "", "cap": cap, "sampled": sampled, "planes": planes,
        "convention": "radiological: patient right on the image's left (axial, coronal)",
    }
