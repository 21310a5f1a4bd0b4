"""DICOM Segmentation objects (SEG) as label maps on a scan's grid, read with pydicom only.

A SEG (SOP Class 1.2.840.10008.5.1.4.1.1.66.4, Modality ``SEG``) is a multi-frame file: each frame is
one segment on one source slice. This module turns it into an ``(X, Y, Z)`` int32 label map on the
RAS+ grid of the scan it was drawn on (:class:`~convscope.core.volume.Volume`), label value =
SegmentNumber:

- ``SegmentationType`` BINARY (1-bit, bit-packed pixel data; pydicom unpacks it) or FRACTIONAL
  (8-bit values; a voxel is inside when ``value >= 0.5 * MaximumFractionalValue``, stated in the notes);
- each frame's segment from ``PerFrameFunctionalGroupsSequence`` ->
  ``SegmentIdentificationSequence.ReferencedSegmentNumber``;
- each frame's place from ``PlanePositionSequence.ImagePositionPatient``: its pixel grid (with
  ``PlaneOrientationSequence`` and ``PixelMeasuresSequence``, shared or per frame) is mapped into the
  scan's voxel grid through the scan's affine; the row and column steps must be the scan's voxel
  steps (same orientation and spacing, any flips: the scan is RAS+ and the SEG as stored), the
  frame must cover a whole slice, and its position projected on the slice normal must match one of
  the scan's slice positions within :data:`POSITION_TOLERANCE` of a slice step;
- refused with one line: not a SEG, LABELMAP or unknown types, a SEG for another grid (size,
  orientation, spacing), a frame that matches no slice, a frame of an unknown segment, overlapping
  segments (one label per voxel).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.volume import LPS_TO_RAS, Volume
from ..errors import ImageInputError

__all__ = ["SEG_SOP_CLASS", "POSITION_TOLERANCE", "SegLabels", "is_dicom_seg", "read_dicom_seg"]

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
"""Segmentation Storage."""

POSITION_TOLERANCE = 0.05
"""A frame matches a slice when its position is within this fraction of a voxel step (and 1e-3 mm)."""

_DIRECTION_TOLERANCE = 1e-3  # voxel units: a frame's row/column step must be a voxel step of the scan


@dataclass(frozen=True, eq=False)
class SegLabels:
    """A SEG read onto a scan's grid.

    Attributes:
        labels: ``(X, Y, Z)`` int32, 0 outside every segment, else the SegmentNumber.
        names: SegmentNumber -> SegmentLabel (every segment the file defines).
        notes: how the file was read (type, threshold, frames), for the manifest.
    """

    labels: np.ndarray
    names: dict[int, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def is_dicom_seg(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is a DICOM file whose SOP Class is Segmentation Storage (or Modality SEG)."""
    p = Path(path)
    if not p.is_file():
        return False
    try:
        with open(p, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    if len(head) < 132 or head[128:132] != b"DICM":
        return False
    from .volumes import _need

    pydicom = _need("pydicom")

    try:
        ds = pydicom.dcmread(str(p), stop_before_pixels=True, specific_tags=["SOPClassUID", "Modality"])
    except Exception:  # noqa: BLE001 - not readable: not a SEG
        return False
    return str(getattr(ds, "SOPClassUID", "")) == SEG_SOP_CLASS or str(getattr(ds, "Modality", "")).upper() == "SEG"


def _first(group: Any, seq: str, attr: str) -> Any:
    if group is not None and seq in group and len(getattr(group, seq)) and attr in getattr(group, seq)[0]:
        return getattr(getattr(group, seq)[0], attr)
    return None


def _floats(value: Any, count: int, what: str, name: str) -> np.ndarray:
    from .volumes import _floats as dicom_floats

    return dicom_floats(value, count, what, name, " in the segmentation; its geometry cannot be known")


def _axis_step(step: np.ndarray) -> tuple[int, int] | None:
    """A voxel-space step that is one voxel along one axis -> (axis, +1 | -1); None otherwise."""
    axis = int(np.argmax(np.abs(step)))
    unit = np.zeros(3)
    unit[axis] = np.sign(step[axis])
    if np.max(np.abs(step - unit)) > _DIRECTION_TOLERANCE:
        return None
    return axis, int(unit[axis])


def read_dicom_seg(path: str | os.PathLike[str], volume: Volume, *, what: str = "--label-map") -> SegLabels:
    """The SEG file ``path`` as a label map on ``volume``'s grid (see the module docstring).

    Raises:
        ImageInputError: one line naming what does not fit (another grid, a frame on no slice,
            overlapping segments, an unsupported segmentation type).
    """
    import pydicom

    p = Path(path)
    name = f"{what} {p.name}"
    try:
        ds = pydicom.dcmread(str(p))
    except Exception as exc:  # noqa: BLE001
        raise ImageInputError(f"cannot read {name} as DICOM ({type(exc).__name__}: {exc})") from None
    if str(getattr(ds, "SOPClassUID", "")) != SEG_SOP_CLASS and str(getattr(ds, "Modality", "")).upper() != "SEG":
        raise ImageInputError(f"{name} is not a DICOM Segmentation (SOP Class {getattr(ds, 'SOPClassUID', '?')})")
    kind = str(getattr(ds, "SegmentationType", "") or "").upper()
    if kind not in ("BINARY", "FRACTIONAL"):
        raise ImageInputError(f"{name} has SegmentationType {kind or '(none)'}; convscope reads BINARY and FRACTIONAL "
                              "segmentations (convert it to a NIfTI label map)")
    names: dict[int, str] = {}
    for item in getattr(ds, "SegmentSequence", []) or []:
        number = int(item.SegmentNumber)
        names[number] = str(getattr(item, "SegmentLabel", "") or f"segment {number}")
    if not names:
        raise ImageInputError(f"{name} defines no segments (SegmentSequence is empty)")
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if "PixelData" not in ds:
        raise ImageInputError(f"{name} has no pixel data")
    from .volumes import _pixels

    pixels = _pixels(ds, name)  # BINARY: pydicom unpacks the 1-bit, bit-packed frames to 0/1 uint8
    pixels = pixels.reshape(frames, int(ds.Rows), int(ds.Columns))
    if kind == "BINARY":
        inside = pixels != 0
        rule = "BINARY"
    else:
        top = float(getattr(ds, "MaximumFractionalValue", 255) or 255)
        inside = pixels.astype(np.float32) >= np.float32(0.5 * top)
        rule = f"FRACTIONAL ({getattr(ds, 'SegmentationFractionalType', 'PROBABILITY')}), inside where value >= 0.5 x " \
               f"MaximumFractionalValue ({top:g})"
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    per = list(ds.PerFrameFunctionalGroupsSequence) if "PerFrameFunctionalGroupsSequence" in ds else []
    if len(per) != frames:
        raise ImageInputError(f"{name} has {frames} frames but {len(per)} per-frame functional groups; the frames cannot be placed")

    def attr(index: int, seq: str, key: str) -> Any:
        value = _first(per[index], seq, key)
        return value if value is not None else _first(shared, seq, key)

    to_voxel = np.linalg.inv(volume.affine)
    lps_to_ras = LPS_TO_RAS[:3, :3]
    labels = np.zeros(volume.shape, dtype=np.int32)
    spacing_steps = np.asarray(volume.spacing, dtype=np.float64)
    geometry: tuple[Any, ...] | None = None
    for index in range(frames):
        iop = _floats(attr(index, "PlaneOrientationSequence", "ImageOrientationPatient"), 6, "ImageOrientationPatient", name)
        spacing = _floats(attr(index, "PixelMeasuresSequence", "PixelSpacing"), 2, "PixelSpacing", name)
        ipp = _floats(attr(index, "PlanePositionSequence", "ImagePositionPatient"), 3,
                      f"frame {index + 1}'s ImagePositionPatient", name)
        segment = attr(index, "SegmentIdentificationSequence", "ReferencedSegmentNumber")
        if segment is None or int(segment) not in names:
            raise ImageInputError(f"{name}: frame {index + 1} refers to segment {segment}, which SegmentSequence does not define")
        key = (tuple(np.round(iop, 6)), tuple(np.round(spacing, 6)))
        if geometry is None or geometry[0] != key:
            # the frame's column step (next column: along the row direction) and row step, in scan voxels
            col_step = to_voxel[:3, :3] @ (lps_to_ras @ iop[:3]) * spacing[1]
            row_step = to_voxel[:3, :3] @ (lps_to_ras @ iop[3:]) * spacing[0]
            c_axis, r_axis = _axis_step(col_step), _axis_step(row_step)
            if c_axis is None or r_axis is None or c_axis[0] == r_axis[0]:
                raise ImageInputError(
                    f"{name}: its orientation/pixel spacing (ImageOrientationPatient {', '.join(f'{v:g}' for v in iop)}, "
                    f"PixelSpacing {spacing[0]:g}x{spacing[1]:g} mm) is not that of {volume.source} "
                    f"(spacing {'x'.join(f'{v:g}' for v in spacing_steps)} mm); the segmentation is for another grid"
                )
            slice_axis = 3 - c_axis[0] - r_axis[0]
            geometry = (key, c_axis, r_axis, slice_axis)
        _key, (c_ax, c_sign), (r_ax, r_sign), s_ax = geometry
        rows, cols = inside.shape[1:]
        if cols != volume.shape[c_ax] or rows != volume.shape[r_ax]:
            raise ImageInputError(
                f"{name}: frames are {rows}x{cols} pixels but the slices of {volume.source} are "
                f"{volume.shape[r_ax]}x{volume.shape[c_ax]}; the segmentation is for another grid"
            )
        origin = to_voxel @ np.append(LPS_TO_RAS[:3, :3] @ ipp, 1.0)  # LPS -> RAS (no translation) -> voxel
        origin = origin[:3]
        k = int(np.rint(origin[s_ax]))
        in_plane = [origin[c_ax], origin[r_ax]]
        expect = [0 if c_sign > 0 else volume.shape[c_ax] - 1, 0 if r_sign > 0 else volume.shape[r_ax] - 1]
        tol = max(POSITION_TOLERANCE, 1e-3 / float(spacing_steps[s_ax]))
        if abs(origin[s_ax] - k) > tol or not 0 <= k < volume.shape[s_ax]:
            mm = float(origin[s_ax] * spacing_steps[s_ax])
            raise ImageInputError(
                f"{name}: frame {index + 1} (segment {int(segment)}, ImagePositionPatient "
                f"{', '.join(f'{v:g}' for v in ipp)}) lies {mm:.3f} mm along the slice normal from the first slice, "
                f"matching no slice of {volume.source} ({volume.shape[s_ax]} slices, step {spacing_steps[s_ax]:g} mm)"
            )
        if max(abs(a - b) for a, b in zip(in_plane, expect)) > POSITION_TOLERANCE:
            raise ImageInputError(
                f"{name}: frame {index + 1} is shifted in the slice plane against {volume.source}; the segmentation is for another grid"
            )
        frame = inside[index]  # (rows, cols) -> voxel axes: columns along c_ax, rows along r_ax
        if c_sign < 0:
            frame = frame[:, ::-1]
        if r_sign < 0:
            frame = frame[::-1, :]
        plane = frame.T if c_ax < r_ax else frame  # (first in-plane axis, second in-plane axis)
        target = np.take(labels, k, axis=s_ax)  # a view of slice k (X, Y, Z order without s_ax)
        value = int(segment)
        clash = plane & (target != 0) & (target != value)
        if clash.any():
            other = int(target[clash][0])
            raise ImageInputError(
                f"{name}: segments {other} ({names.get(other, '?')}) and {value} ({names[value]}) overlap at "
                f"{int(clash.sum())} voxel(s) of slice {k}; convscope draws one label per voxel: give non-overlapping "
                "segments (or one segment per file)"
            )
        slicer: list[Any] = [slice(None)] * 3
        slicer[s_ax] = k
        labels[tuple(slicer)] = np.where(plane, value, target)
    notes = (f"DICOM SEG {p.name}: {rule}; {frames} frames, {len(names)} segments "
             f"({', '.join(f'{n}: {label}' for n, label in sorted(names.items()))}); label value = SegmentNumber",)
    return SegLabels(labels=labels, names=names, notes=notes)
