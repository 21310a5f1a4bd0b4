"""How a 3D array of one model input becomes its 2D "middle view" (numpy only).

A 3D model's batch is ``(N, C, a, b, c)``. What its pictures show (the U-Net flow's thumbnails and
input/output blocks, the input's display picture, CAM and activation overlays) is one 2D slice of
every ``(..., a, b, c)`` array, chosen by one :class:`MiddleView`:

- a **volume** input (NIfTI, DICOM, ITK: the batch's axes are ``(X, Y, Z)`` of the RAS+ volume,
  after the ROI crop and the zero padding of :class:`~convscope.io.volume_prep.VolumeInput`): the
  **axial** plane through the middle of the region fed to the model, in radiological view (rows
  anterior -> posterior, columns patient right -> left: the patient's left is on the image's right,
  anterior at the top), the padding cropped off. Maps at a lower resolution (a U-Net's deeper
  levels) take the slice holding that plane's voxels (the nearest-neighbour mapping
  :meth:`~convscope.io.volume_prep.VolumeInput.to_volume` uses). Anisotropic voxels: the pictures
  are stretched (nearest neighbour, a drawing choice) to the physical aspect by :meth:`MiddleView.stretch`.
- any other 3D array (a ``.npy``, a tensor): its axes mean nothing known, so the view is the
  middle slice along the first spatial axis, with the array's own two remaining axes as rows and
  columns, and says so.

:func:`plane_slice` / :func:`plane_spacing` live here (re-exported by :mod:`convscope.io.volume_prep`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ImageInputError

__all__ = ["PLANES", "plane_slice", "plane_spacing", "MiddleView", "FIRST_AXIS"]

PLANES = ("axial", "coronal", "sagittal")
_MAX_STRETCH = 8.0
"""Anisotropy beyond this ratio is drawn at this ratio (and said so in :meth:`MiddleView.describe`)."""


def plane_slice(data: np.ndarray, plane: str, index: int) -> np.ndarray:
    """``(..., X, Y, Z)`` RAS+ data -> ``(..., rows, cols)`` slice ``index`` of ``plane`` in radiological view.

    axial (index along Z): rows A->P, cols R->L. coronal (index along Y): rows S->I, cols R->L.
    sagittal (index along X): rows S->I, cols A->P. Permutes and flips only (a view).
    """
    if plane == "axial":
        sl = data[..., :, :, index]  # (..., X, Y)
        return np.swapaxes(sl[..., ::-1, ::-1], -1, -2)
    if plane == "coronal":
        sl = data[..., :, index, :]  # (..., X, Z)
        return np.swapaxes(sl[..., ::-1, ::-1], -1, -2)
    if plane == "sagittal":
        sl = data[..., index, :, :]  # (..., Y, Z)
        return np.swapaxes(sl[..., ::-1, ::-1], -1, -2)
    raise ImageInputError(f"plane must be one of {', '.join(PLANES)}; got {plane!r}")


def plane_spacing(spacing: tuple[float, float, float], plane: str) -> tuple[float, float]:
    """(row height, column width) in mm of a :func:`plane_slice` view."""
    sx, sy, sz = spacing
    return {"axial": (sy, sx), "coronal": (sz, sx), "sagittal": (sz, sy)}[plane]


def _nearest(voxel: int, size: int, full: int) -> int:
    """The index, in an axis of ``size`` covering ``full`` voxels, that holds voxel ``voxel`` (nearest)."""
    if size == full:
        return voxel
    return int(min(int((voxel + 0.5) * size / full), size - 1))


@dataclass(frozen=True)
class MiddleView:
    """How ``(..., a, b, c)`` arrays of one 3D model input are turned into ``(..., rows, cols)`` pictures.

    Attributes:
        plane: ``"axial"`` for a volume input (axes ``(X, Y, Z)`` RAS+), None for an array whose axes
            are unknown (the middle slice along the first spatial axis).
        spatial: the batch's spatial shape ``(a, b, c)`` (padded); maps of another shape are mapped
            onto it proportionally (nearest). None: each array's own shape.
        region: voxels of ``spatial`` holding data (the fed region; the zero padding lies beyond it,
            at the high end of each axis); None: all of ``spatial``.
        origin: the region's first voxel in the volume (to name the slice in the volume's indices).
        spacing: voxel size in mm along ``(X, Y, Z)`` of the batch, or None.
    """

    plane: str | None = None
    spatial: tuple[int, int, int] | None = None
    region: tuple[int, int, int] | None = None
    origin: tuple[int, int, int] = (0, 0, 0)
    spacing: tuple[float, float, float] | None = None

    @classmethod
    def of_volume(cls, record: Any) -> MiddleView:
        """The axial view of a volume fed to a 3D model (``record``: a
        :class:`~convscope.io.volume_prep.VolumeInput`). After a ``--size`` resize (``padded_shape``
        no longer holds the region) the whole batch is shown, resized spacing included."""
        spatial = tuple(int(v) for v in record.padded_shape)
        roi = tuple(int(v) for v in record.roi_shape)
        spacing = tuple(float(v) for v in record.volume.spacing)
        origin = tuple(int(v) for v in record.roi_start)
        resized = any(str(n).startswith("resized to") for n in record.notes)  # --size: no padding, the ROI resized
        region: tuple[int, ...] | None = None if resized else roi
        if resized:
            spacing = tuple(s * r / p for s, r, p in zip(spacing, roi, spatial))
        return cls(plane="axial", spatial=_triple(spatial), region=_triple(region) if region else None,
                   origin=_triple(origin), spacing=_triple(spacing))

    # -- geometry --------------------------------------------------------------------------------
    def _full(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        return self.spatial if self.spatial is not None else _triple(shape[-3:])

    def depth(self, shape: tuple[int, ...]) -> int:
        """How many slices the view can show of an array whose last three axes are ``shape[-3:]``
        (along Z for the axial view, along the first axis otherwise)."""
        return int(shape[-3] if self.plane is None else shape[-1])

    def index(self, shape: tuple[int, ...]) -> int:
        """The slice index (along Z for the axial view, the first axis otherwise) in an array whose
        last three axes are ``shape[-3:]``."""
        a, b, c = (int(v) for v in shape[-3:])
        if self.plane is None:
            return a // 2
        full = self._full(shape)
        region = self.region or full
        return _nearest(region[2] // 2, c, full[2])

    def volume_index(self) -> int | None:
        """The axial slice's z in the volume's voxel indices (None for the first-axis view)."""
        if self.plane is None:
            return None
        full = self.spatial or (0, 0, 0)
        region = self.region or full
        return int(self.origin[2] + region[2] // 2)

    def _crop(self, shape: tuple[int, ...]) -> tuple[slice, slice]:
        """The (X, Y) extent of the fed region in an array of ``shape`` (padding cut off)."""
        if self.region is None or self.spatial is None:
            return slice(None), slice(None)
        a, b = (int(v) for v in shape[-3:-1])
        ex = _nearest(self.region[0] - 1, a, self.spatial[0]) + 1
        ey = _nearest(self.region[1] - 1, b, self.spatial[1]) + 1
        return slice(0, ex), slice(0, ey)

    def take(self, arr: np.ndarray, index: int | None = None) -> np.ndarray:
        """``(..., a, b, c)`` -> ``(..., rows, cols)``: the view's slice (a numpy view, not a copy).

        ``index``: another slice of the same plane (``0 <= index <`` :meth:`depth`), e.g. a viewer's
        slider; default the middle of the fed region (:meth:`index`)."""
        data = np.asarray(arr)
        if data.ndim < 3:
            raise ValueError(f"a middle view needs an array with 3 spatial axes, got shape {data.shape}")
        k = self.index(data.shape) if index is None else int(index)
        if self.plane is None:
            return data[..., k, :, :]
        sx, sy = self._crop(data.shape)
        return plane_slice(data[..., sx, sy, :], "axial", k)

    def pixel_mm(self, shape: tuple[int, ...]) -> tuple[float, float] | None:
        """(row height, column width) in mm of :meth:`take` of an array of ``shape`` (None: unknown)."""
        if self.plane is None or self.spacing is None:
            return None
        full = self._full(shape)
        a, b, c = (int(v) for v in shape[-3:])
        scaled = (self.spacing[0] * full[0] / a, self.spacing[1] * full[1] / b, self.spacing[2] * full[2] / c)
        return plane_spacing(_triple(scaled), "axial")

    def stretch(self, picture: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """``(h, w[, 3])`` picture of :meth:`take` -> the same picture at the physical aspect: rows or
        columns repeated (nearest neighbour; a drawing choice, no value interpolated), at most
        8 times. ``shape``: the array the picture was taken from (default: the batch)."""
        mm = self.pixel_mm(shape or self.spatial or (1, 1, 1))
        if mm is None or mm[0] <= 0 or mm[1] <= 0 or abs(mm[0] / mm[1] - 1.0) < 1e-3:
            return picture
        h, w = picture.shape[:2]
        ratio = float(np.clip(mm[0] / mm[1], 1 / _MAX_STRETCH, _MAX_STRETCH))
        if ratio > 1:  # rows are taller than columns are wide: repeat rows
            rows = np.minimum((np.arange(max(1, round(h * ratio))) / ratio).astype(np.int64), h - 1)
            return np.ascontiguousarray(picture[rows])
        cols = np.minimum((np.arange(max(1, round(w / ratio))) * ratio).astype(np.int64), w - 1)
        return np.ascontiguousarray(picture[:, cols])

    # -- words -----------------------------------------------------------------------------------
    def axis_text(self) -> str:
        """What a slice index of this view counts: ``"z (axial, radiological)"`` or ``"D (first axis)"``."""
        return "z (axial, radiological)" if self.plane == "axial" else "D (first spatial axis)"

    def label(self, shape: tuple[int, ...] | None = None) -> str:
        """What :meth:`take` of an array of ``shape`` shows, e.g. ``"axial slice z=40 of the input"``."""
        if self.plane is None:
            if shape is None:
                return "middle slice along the first spatial axis"
            a = int(shape[-3])
            return f"middle slice {a // 2} of {a} along the first spatial axis"
        text = f"axial slice z={self.volume_index()} of the input"
        if shape is not None:
            full = self._full(shape)
            c = int(shape[-1])
            if c != full[2]:
                text += f" (map slice {self.index(shape)} of {c})"
        return text

    def describe(self) -> dict[str, Any]:
        """JSON-ready: plane, slice, convention, pixel size and aspect handling."""
        if self.plane is None:
            return {"plane": None, "slice": "middle slice along the first spatial axis",
                    "convention": "array axes as given (rows: second spatial axis, columns: third)"}
        out: dict[str, Any] = {
            "plane": "axial", "z": self.volume_index(), "batch_z": self.index(self.spatial or (1, 1, 1)),
            "label": self.label(),
            "convention": "radiological: rows anterior->posterior, columns patient right->left "
                          "(patient left on the image's right)",
            "region": "the region fed to the model, zero padding cropped",
        }
        mm = self.pixel_mm(self.spatial) if self.spatial is not None else None
        if mm is not None:
            ratio = mm[0] / mm[1]
            out["pixel_mm"] = [round(mm[0], 6), round(mm[1], 6)]
            out["aspect"] = ("isotropic pixels" if abs(ratio - 1) < 1e-3 else
                             "physical aspect: rows/columns repeated (nearest neighbour) in the figures"
                             + (f", capped at {_MAX_STRETCH:g}:1" if max(ratio, 1 / ratio) > _MAX_STRETCH else ""))
        return out


FIRST_AXIS = MiddleView()
"""The view of a 3D array whose axes are unknown: the middle slice along the first spatial axis."""


def _triple(values: Any) -> tuple[Any, Any, Any]:
    x, y, z = values
    return x, y, z
