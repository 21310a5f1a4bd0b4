"""Reading medical volumes (NIfTI, DICOM, and ``.mha``/``.nrrd`` through SimpleITK) into a :class:`Volume`.

Every reader returns a :class:`~convscope.core.volume.Volume` in canonical RAS+ orientation
(``(C, X, Y, Z)`` float32, axes towards patient Right, Anterior, Superior), reached by permuting
and flipping voxel axes only. nibabel, pydicom and SimpleITK are imported only when a file of
theirs is read (extras ``convscope[volumes]`` and ``convscope[itk]``).

DICOM series (a folder) are assembled the robust way:

- files are grouped by SeriesInstanceUID; several series in one folder are listed and one must be
  chosen (``--series UID``);
- slices are sorted by their position along the slice normal, ``cross(row, col) . IPP``, never by
  InstanceNumber or SliceLocation;
- the slice step comes from those positions, never from SliceThickness; duplicate or irregular
  positions are refused (convscope does not resample);
- RescaleSlope/Intercept is applied (CT values in HU), MONOCHROME1 is inverted so that brighter
  always means a larger value;
- compressed transfer syntaxes whose decoder is missing are refused naming the package to install.
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.volume import LPS_TO_RAS, Volume
from ..errors import ImageInputError, close_matches

__all__ = [
    "NIFTI_SUFFIXES",
    "DICOM_SUFFIXES",
    "ITK_SUFFIXES",
    "MAX_VOXELS",
    "read_volume",
    "read_nifti",
    "read_dicom",
    "read_itk",
    "nifti_from_bytes",
    "dicom_from_bytes",
    "is_nifti_bytes",
    "is_dicom_bytes",
    "is_volume_path",
    "stack_channels",
    "list_dicom_series",
    "VolumeTooLarge",
]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom")
ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
MAX_VOXELS = 512_000_000
"""Refuse larger volumes (2 GiB as float32) before reading their voxels."""

_POSITION_TOLERANCE_MM = 1e-3
_SPACING_TOLERANCE = 0.01  # relative deviation of a slice step from the median step


class VolumeTooLarge(ImageInputError):
    """The volume has more voxels than the limit (checked from headers, before the voxels are read)."""


def _need(module: str, extra: str = "volumes") -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImageInputError(
            f"reading this file needs the {module} package: pip install 'convscope[{extra}]' (or pip install {module})"
        ) from None


def _check_voxels(shape: Sequence[int], name: str, limit: int = MAX_VOXELS) -> None:
    count = int(np.prod([int(s) for s in shape], dtype=np.int64))
    if count > limit:
        raise VolumeTooLarge(f"{name} has {count:,} voxels (limit {limit:,}); crop it or choose a smaller series")


def has_suffix(name: str, suffixes: Sequence[str]) -> bool:
    low = name.lower()
    return any(low.endswith(s) for s in suffixes)


def is_volume_path(path: str | os.PathLike[str]) -> bool:
    """True for NIfTI/DICOM/ITK file names and for folders (a DICOM series)."""
    p = Path(path)
    return p.is_dir() or has_suffix(p.name, NIFTI_SUFFIXES + DICOM_SUFFIXES + ITK_SUFFIXES) or (p.is_file() and file_is_dicom(p))


# ------------------------------------------------------------------------------------------------
# NIfTI
# ------------------------------------------------------------------------------------------------


def _nifti_volume(img: Any, name: str) -> Volume:
    shape = tuple(int(s) for s in img.shape)
    _check_voxels(shape, name)
    if len(shape) > 5 or (len(shape) == 5 and shape[3] != 1):
        raise ImageInputError(f"{name} has shape {shape}; convscope reads 3D volumes and 4D ones whose last axis is channels")
    data = np.asarray(img.get_fdata(caching="unchanged", dtype=np.float32))
    if data.ndim == 5:
        data = data[:, :, :, 0, :]
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim == 4:  # (X, Y, Z, C): last axis is channels
        data = np.moveaxis(data, -1, 0)
    header = img.header
    info: dict[str, Any] = {"format": type(img).__name__}
    slope, inter = getattr(img.dataobj, "slope", 1.0), getattr(img.dataobj, "inter", 0.0)
    if np.isfinite(slope) and (slope != 1 or inter != 0):  # applied by get_fdata
        info["scl_slope"], info["scl_inter"] = float(slope), float(inter)
    endian = getattr(header, "endianness", "<")
    info["stored_dtype"] = f"{'big' if endian == '>' else 'little'}-endian {header.get_data_dtype().name}"
    return Volume.from_array(data, np.asarray(img.affine, dtype=np.float64), source=name, info=info)


def read_nifti(path: str | os.PathLike[str]) -> Volume:
    """A ``.nii`` / ``.nii.gz`` file (NIfTI-1 or -2, any endianness, scl_slope applied) as a RAS+ volume."""
    nib = _need("nibabel")
    p = Path(path)
    try:
        img = nib.load(str(p))
    except Exception as exc:  # noqa: BLE001 - one line, whatever nibabel raised
        raise ImageInputError(f"cannot read {p.name} as NIfTI ({type(exc).__name__}: {exc})") from None
    return _nifti_volume(img, p.name)


def is_nifti_bytes(head: bytes) -> bool:
    """True if ``head`` (the first bytes, uncompressed) is a single-file NIfTI-1 or NIfTI-2 header."""
    if len(head) >= 348 and head[344:348] in (b"n+1\x00",):
        return int.from_bytes(head[:4], "little") == 348 or int.from_bytes(head[:4], "big") == 348
    if len(head) >= 540 and head[4:8] == b"n+2\x00":
        return int.from_bytes(head[:4], "little") == 540 or int.from_bytes(head[:4], "big") == 540
    return False


def _gunzip_head(data: bytes, size: int) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as handle:
            return handle.read(size)
    except (OSError, EOFError):
        return b""


def nifti_from_bytes(data: bytes, *, name: str = "upload", max_voxels: int = MAX_VOXELS) -> Volume:
    """A NIfTI file's bytes (optionally gzipped) as a volume; the header's voxel count is checked first."""
    nib = _need("nibabel")
    raw = data
    if data[:2] == b"\x1f\x8b":
        head = _gunzip_head(data, 540)
        if not is_nifti_bytes(head):
            raise ImageInputError(f"{name} is gzip-compressed but not a NIfTI file")
        klass = nib.Nifti2Image if head[4:8] == b"n+2\x00" else nib.Nifti1Image
        header = klass.header_class.from_fileobj(io.BytesIO(head))
        _check_voxels(header.get_data_shape(), name, max_voxels)
        limit = int(header.get_data_offset()) + int(np.prod(header.get_data_shape(), dtype=np.int64)) * header.get_data_dtype().itemsize
        raw = _gunzip_head(data, limit + 1)
    head = raw[:540]
    if not is_nifti_bytes(head):
        raise ImageInputError(f"{name} is not a single-file NIfTI (.nii) file")
    klass = nib.Nifti2Image if head[4:8] == b"n+2\x00" else nib.Nifti1Image
    try:
        header = klass.header_class.from_fileobj(io.BytesIO(head))
        _check_voxels(header.get_data_shape(), name, max_voxels)
        img = klass.from_bytes(raw)
    except ImageInputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ImageInputError(f"cannot read {name} as NIfTI ({type(exc).__name__}: {exc})") from None
    return _nifti_volume(img, name)


# ------------------------------------------------------------------------------------------------
# DICOM
# ------------------------------------------------------------------------------------------------


def is_dicom_bytes(head: bytes) -> bool:
    """True if ``head`` has the DICOM Part 10 preamble marker (``DICM`` at byte 128)."""
    return len(head) >= 132 and head[128:132] == b"DICM"


def file_is_dicom(path: Path) -> bool:
    """True if the file at ``path`` starts with the DICOM Part 10 preamble and marker (reads 132 bytes)."""
    try:
        with open(path, "rb") as handle:
            return is_dicom_bytes(handle.read(132))
    except OSError:
        return False


def _floats(value: Any, count: int, what: str, name: str,
            consequence: str = "; the slice geometry cannot be known") -> np.ndarray:
    """``count`` finite floats of a DICOM attribute (``what`` of file ``name``), or one clear error."""
    try:
        arr = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.zeros(0)
    if arr.size != count or not np.all(np.isfinite(arr)):
        raise ImageInputError(f"{name}: {what} is missing or malformed{consequence}")
    return arr


def _decoder_message(ds: Any, name: str) -> str | None:
    """A one-line message if the pixel data is compressed with a syntax pydicom cannot decode here."""
    meta = getattr(ds, "file_meta", None)
    uid = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if uid is None or not getattr(uid, "is_compressed", False):
        return None
    try:
        from pydicom.pixels import get_decoder

        decoder = get_decoder(uid)
    except Exception:  # noqa: BLE001 - an unknown syntax
        return f"{name}: pixel data uses transfer syntax {uid} which pydicom cannot decode; convert the series to uncompressed DICOM (e.g. gdcmconv --raw)"
    if decoder.is_available:
        return None
    options = []
    for text in decoder.missing_dependencies:
        plugin, _, needs = text.partition(" - requires ")
        packages = [part.strip().split(">")[0].split("=")[0] for part in needs.replace(" and ", ",").split(",") if part.strip()]
        packages = ["python-gdcm" if p == "gdcm" else p for p in packages]
        options.append(f"pip install {' '.join(packages)}")
    hint = " or ".join(options) if options else "install a pydicom pixel-data plugin"
    return f"{name}: pixel data is compressed ({uid.name}) and no decoder for it is installed; {hint}"


def _pixels(ds: Any, name: str) -> np.ndarray:
    message = _decoder_message(ds, name)
    if message:
        raise ImageInputError(message)
    try:
        return np.asarray(ds.pixel_array)
    except Exception as exc:  # noqa: BLE001 - one line, whatever the decoder raised
        raise ImageInputError(f"{name}: cannot decode the pixel data ({type(exc).__name__}: {exc})") from None


def _rescale(pixels: np.ndarray, ds: Any, slope: float | None = None, intercept: float | None = None) -> tuple[np.ndarray, bool]:
    """Stored values -> modality values (RescaleSlope/Intercept; HU for CT). Returns (values, rescaled)."""
    if slope is None and intercept is None and ("ModalityLUTSequence" in ds or "RescaleSlope" in ds or "RescaleIntercept" in ds):
        from pydicom.pixels import apply_modality_lut

        return np.asarray(apply_modality_lut(pixels, ds), dtype=np.float32), True
    s = 1.0 if slope is None else float(slope)
    b = 0.0 if intercept is None else float(intercept)
    return pixels.astype(np.float32) * np.float32(s) + np.float32(b), slope is not None or intercept is not None


def _stored_range(ds: Any) -> tuple[float, float]:
    bits = int(getattr(ds, "BitsStored", 0) or getattr(ds, "BitsAllocated", 16))
    if int(getattr(ds, "PixelRepresentation", 0)) == 1:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def _monochrome1_invert(stored: np.ndarray, ds: Any) -> np.ndarray:
    """MONOCHROME1 (minimum shown white): mirror the stored values within their possible range."""
    lo, hi = _stored_range(ds)
    return (np.float64(lo + hi) - stored.astype(np.float64)).astype(np.float32)


def _geometry(ds: Any, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row direction, column direction, (row spacing, column spacing)) of a classic DICOM image."""
    iop = _floats(getattr(ds, "ImageOrientationPatient", None), 6, "ImageOrientationPatient", name)
    spacing = _floats(getattr(ds, "PixelSpacing", None) or [1.0, 1.0], 2, "PixelSpacing", name)
    return iop[:3], iop[3:], spacing


def _sort_positions(positions: np.ndarray, normal: np.ndarray, what: str) -> tuple[np.ndarray, float]:
    """Order of the slices along ``normal`` and the regular step (mm); refuses duplicates and gaps."""
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    if len(order) < 2:
        return order, 0.0
    steps = np.diff(along[order])
    dup = np.flatnonzero(steps < _POSITION_TOLERANCE_MM)
    if dup.size:
        at = float(along[order][dup[0]])
        raise ImageInputError(
            f"{what} has {dup.size + 1 if dup.size == 1 else dup.size + 1} slices at duplicate positions (e.g. {at:.3f} mm "
            "along the slice normal): several phases, echoes or acquisitions are mixed; split the series "
            "(e.g. by TemporalPositionIdentifier or EchoNumbers) and give one"
        )
    median = float(np.median(steps))
    worst = float(np.max(np.abs(steps - median)))
    if worst > max(_SPACING_TOLERANCE * median, 1e-3):
        raise ImageInputError(
            f"{what} has irregular slice spacing (steps from {steps.min():.3f} to {steps.max():.3f} mm, missing or "
            "extra slices?); convscope does not resample: give a complete, evenly spaced series"
        )
    return order, median


def _dicom_affine(row: np.ndarray, col: np.ndarray, spacing: np.ndarray, first: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Voxel (column i, row j, slice k) -> RAS+ mm. ``spacing`` is DICOM PixelSpacing (row, column)."""
    lps = np.eye(4)
    lps[:3, 0] = row * spacing[1]  # along a row: the next column
    lps[:3, 1] = col * spacing[0]  # along a column: the next row
    lps[:3, 2] = step
    lps[:3, 3] = first
    return LPS_TO_RAS @ lps


def _series_info(ds: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"format": "DICOM"}
    for key in ("Modality", "SeriesInstanceUID", "SeriesDescription", "PhotometricInterpretation"):
        value = getattr(ds, key, None)
        if value not in (None, ""):
            info[key[0].lower() + key[1:]] = str(value)
    meta = getattr(ds, "file_meta", None)
    if meta is not None and getattr(meta, "TransferSyntaxUID", None) is not None:
        info["transferSyntax"] = str(meta.TransferSyntaxUID.name)
    return info


def _frame_values(ds: Any, name: str) -> np.ndarray:
    """(frames, rows, cols) modality values of one file, MONOCHROME1 inverted; returns float32."""
    pixels = _pixels(ds, name)
    samples = int(getattr(ds, "SamplesPerPixel", 1))
    if samples != 1:
        raise ImageInputError(f"{name} is a colour DICOM image ({ds.PhotometricInterpretation}); volumes must be grayscale")
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames == 1 and pixels.ndim == 2:
        pixels = pixels[None]
    if str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        pixels = _monochrome1_invert(pixels, ds)
    return pixels


def _units(ds: Any, rescaled: bool) -> str:
    if str(getattr(ds, "Modality", "")).upper() == "CT" and rescaled:
        return "HU"
    unit = str(getattr(ds, "RescaleType", "") or "")
    return unit if unit and unit.upper() != "US" else ""


def _read_multiframe(ds: Any, name: str) -> Volume:
    frames = int(ds.NumberOfFrames)
    _check_voxels((frames, int(ds.Rows), int(ds.Columns)), name)
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    per = list(ds.PerFrameFunctionalGroupsSequence) if "PerFrameFunctionalGroupsSequence" in ds else []

    def item(index: int, seq: str, attr: str) -> Any:
        for group in ((per[index] if index < len(per) else None), shared):
            if group is not None and seq in group and len(getattr(group, seq)) and attr in getattr(group, seq)[0]:
                return getattr(getattr(group, seq)[0], attr)
        return None

    info = _series_info(ds)
    iop = item(0, "PlaneOrientationSequence", "ImageOrientationPatient") or getattr(ds, "ImageOrientationPatient", None)
    spacing = item(0, "PixelMeasuresSequence", "PixelSpacing") or getattr(ds, "PixelSpacing", None) or [1.0, 1.0]
    iop_a = _floats(iop, 6, "ImageOrientationPatient", name)
    spacing_a = _floats(spacing, 2, "PixelSpacing", name)
    row, col = iop_a[:3], iop_a[3:]
    normal = np.cross(row, col)
    positions = [item(i, "PlanePositionSequence", "ImagePositionPatient") for i in range(frames)]
    values = _frame_values(ds, name)
    slopes = [item(i, "PixelValueTransformationSequence", "RescaleSlope") for i in range(frames)]
    inters = [item(i, "PixelValueTransformationSequence", "RescaleIntercept") for i in range(frames)]
    rescaled = any(s is not None for s in slopes) or any(b is not None for b in inters)
    if rescaled:
        values = np.stack([_rescale(values[i], ds, slopes[i], inters[i])[0] for i in range(frames)])
    else:
        values, rescaled = _rescale(values, ds)
    if all(p is not None for p in positions):
        pos = np.stack([_floats(p, 3, "ImagePositionPatient", name) for p in positions])
        order, step_mm = _sort_positions(pos, normal, name)
        values = values[order]
        pos = pos[order]
        step = (pos[-1] - pos[0]) / (frames - 1) if frames > 1 else normal * float(getattr(ds, "SliceThickness", 1.0) or 1.0)
        first = pos[0]
    else:
        gap = float(getattr(ds, "SpacingBetweenSlices", 0) or 0)
        if frames > 1 and gap <= 0:
            raise ImageInputError(f"{name}: a multi-frame file without per-frame positions or SpacingBetweenSlices; its slice spacing is unknown")
        step = normal * (gap or float(getattr(ds, "SliceThickness", 1.0) or 1.0))
        first = _floats(getattr(ds, "ImagePositionPatient", None) or [0, 0, 0], 3, "ImagePositionPatient", name)
        info["sliceSpacingFrom"] = "SpacingBetweenSlices (no per-frame positions)"
    voxels = np.transpose(values, (2, 1, 0))  # (frames, rows, cols) -> (col i, row j, slice k)
    affine = _dicom_affine(row, col, spacing_a, first, step)
    info["frames"] = frames
    return Volume.from_array(voxels, affine, source=name, units=_units(ds, rescaled), info=info)


def _read_single(ds: Any, name: str) -> Volume:
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        return _read_multiframe(ds, name)
    values = _frame_values(ds, name)
    values, rescaled = _rescale(values, ds)
    info = _series_info(ds)
    if "ImageOrientationPatient" in ds and "ImagePositionPatient" in ds:
        row, col, spacing = _geometry(ds, name)
        first = _floats(ds.ImagePositionPatient, 3, "ImagePositionPatient", name)
    else:  # secondary capture / radiograph: no patient geometry
        row, col, first = np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), np.zeros(3)
        spacing = _floats(getattr(ds, "PixelSpacing", None) or getattr(ds, "ImagerPixelSpacing", None) or [1.0, 1.0], 2, "PixelSpacing", name)
        info["geometry"] = "no ImageOrientationPatient/ImagePositionPatient: LPS axes assumed"
    thickness = float(getattr(ds, "SliceThickness", 0) or 0) or 1.0
    affine = _dicom_affine(row, col, spacing, first, np.cross(row, col) * thickness)
    return Volume.from_array(np.transpose(values, (2, 1, 0)), affine, source=name, units=_units(ds, rescaled), info=info)


def _dicom_files(folder: Path, max_files: int = 20000) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            if filename.startswith("."):
                continue
            path = Path(dirpath) / filename
            if path.is_file() and (has_suffix(filename, DICOM_SUFFIXES) or file_is_dicom(path)):
                found.append(path)
                if len(found) > max_files:
                    raise ImageInputError(f"{folder} holds more than {max_files} DICOM files; give the folder of one series")
    return found


def _headers(folder: Path) -> dict[str, list[tuple[Path, Any]]]:
    pydicom = _need("pydicom")
    from pydicom.errors import InvalidDicomError

    series: dict[str, list[tuple[Path, Any]]] = {}
    for path in _dicom_files(folder):
        try:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue
        if "Rows" not in ds or "Columns" not in ds:
            continue  # not an image (a structured report, a presentation state ...)
        uid = str(getattr(ds, "SeriesInstanceUID", "") or "(no SeriesInstanceUID)")
        series.setdefault(uid, []).append((path, ds))
    if not series:
        raise ImageInputError(f"{folder} has no DICOM images (files with the DICM marker or .dcm); give a DICOM series folder")
    return series


def list_dicom_series(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """``[{"uid", "description", "modality", "images"}]`` for the DICOM series found in ``folder``."""
    out = []
    for uid, items in sorted(_headers(Path(folder)).items()):
        ds = items[0][1]
        out.append({"uid": uid, "description": str(getattr(ds, "SeriesDescription", "") or ""),
                    "modality": str(getattr(ds, "Modality", "") or ""), "images": len(items)})
    return out


def read_dicom(path: str | os.PathLike[str], *, series: str | None = None, max_voxels: int = MAX_VOXELS) -> Volume:
    """A DICOM file (one slice or multi-frame) or a series folder as a RAS+ volume.

    Args:
        path: a ``.dcm`` file or a folder holding one or several series.
        series: SeriesInstanceUID to read when the folder holds several.

    Raises:
        ImageInputError: several series and no ``series``; duplicate/irregular slice positions;
            inconsistent slice geometry; a compressed syntax without its decoder installed.
    """
    pydicom = _need("pydicom")
    p = Path(path)
    if not p.is_dir():
        try:
            ds = pydicom.dcmread(str(p))
        except Exception as exc:  # noqa: BLE001
            raise ImageInputError(f"cannot read {p.name} as DICOM ({type(exc).__name__}: {exc})") from None
        if "PixelData" not in ds and "FloatPixelData" not in ds:
            raise ImageInputError(f"{p.name} is a DICOM file without pixel data")
        return _read_single(ds, p.name)
    groups = _headers(p)
    if series is None:
        if len(groups) > 1:
            listing = "; ".join(
                f"{uid} ({len(items)} images{', ' + str(items[0][1].get('SeriesDescription', '')) if items[0][1].get('SeriesDescription') else ''})"
                for uid, items in sorted(groups.items())
            )
            raise ImageInputError(f"{p.name} holds {len(groups)} DICOM series: {listing}; choose one with --series UID")
        uid = next(iter(groups))
    else:
        if series not in groups:
            near = close_matches(series, groups)
            raise ImageInputError(
                f"series {series} is not in {p.name}; it holds {', '.join(sorted(groups))}"
                + (f" (closest: {', '.join(near)})" if near else "")
            )
        uid = series
    items = groups[uid]
    what = f"series {uid} in {p.name}"
    if len(items) == 1:
        ds = pydicom.dcmread(str(items[0][0]))
        volume = _read_single(ds, p.name)
        return volume
    first_ds = items[0][1]
    row, col, spacing = _geometry(first_ds, what)
    shape = (int(first_ds.Rows), int(first_ds.Columns))
    for path_i, ds in items:
        r, c, s = _geometry(ds, what)
        if np.max(np.abs(np.concatenate([r - row, c - col]))) > 1e-4:
            raise ImageInputError(f"{what}: {path_i.name} has a different ImageOrientationPatient; the slices do not form one volume")
        if (int(ds.Rows), int(ds.Columns)) != shape or np.max(np.abs(s - spacing)) > 1e-4:
            raise ImageInputError(f"{what}: {path_i.name} has a different size or PixelSpacing; the slices do not form one volume")
        if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
            raise ImageInputError(f"{what}: {path_i.name} is multi-frame inside a series of files; give that file alone")
    _check_voxels((len(items), *shape), what, max_voxels)
    normal = np.cross(row, col)
    positions = np.stack([_floats(getattr(ds, "ImagePositionPatient", None), 3, "ImagePositionPatient", f"{what}: {pp.name}")
                          for pp, ds in items])
    order, _ = _sort_positions(positions, normal, what)
    out = np.empty((len(items), *shape), dtype=np.float32)
    rescaled = False
    for k, index in enumerate(order):
        file_path = items[int(index)][0]
        ds = pydicom.dcmread(str(file_path))
        values = _frame_values(ds, f"{p.name}/{file_path.name}")
        out[k], did = _rescale(values[0], ds)
        rescaled = rescaled or did
    pos = positions[order]
    step = (pos[-1] - pos[0]) / (len(items) - 1)
    affine = _dicom_affine(row, col, spacing, pos[0], step)
    info = _series_info(first_ds)
    info["images"] = len(items)
    return Volume.from_array(np.transpose(out, (2, 1, 0)), affine, source=f"{p.name} (series {uid})",
                             units=_units(first_ds, rescaled), info=info)


def dicom_from_bytes(data: bytes, *, name: str = "upload", max_voxels: int = MAX_VOXELS) -> Volume:
    """One DICOM file's bytes (a slice or a multi-frame volume) as a volume."""
    pydicom = _need("pydicom")
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001
        raise ImageInputError(f"cannot read {name} as DICOM ({type(exc).__name__})") from None
    if "PixelData" not in ds:
        raise ImageInputError(f"{name} is a DICOM file without pixel data")
    _check_voxels((int(getattr(ds, "NumberOfFrames", 1) or 1), int(ds.Rows), int(ds.Columns)), name, max_voxels)
    return _read_single(ds, name)


# ------------------------------------------------------------------------------------------------
# SimpleITK (optional)
# ------------------------------------------------------------------------------------------------


def read_itk(path: str | os.PathLike[str]) -> Volume:
    """``.mha`` / ``.mhd`` / ``.nrrd`` through SimpleITK (``convscope[itk]``), as a RAS+ volume."""
    sitk = _need("SimpleITK", extra="itk")
    p = Path(path)
    try:
        image = sitk.ReadImage(str(p))
    except Exception as exc:  # noqa: BLE001
        raise ImageInputError(f"cannot read {p.name} with SimpleITK ({exc})") from None
    if image.GetDimension() != 3:
        raise ImageInputError(f"{p.name} is {image.GetDimension()}D; convscope reads 3D volumes from ITK files")
    arr = np.asarray(sitk.GetArrayFromImage(image), dtype=np.float32)  # (z, y, x[, c])
    arr = np.moveaxis(arr, -1, 0) if arr.ndim == 4 else arr[None]
    arr = np.transpose(arr, (0, 3, 2, 1))  # (C, x, y, z)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction * np.asarray(image.GetSpacing(), dtype=np.float64)
    lps[:3, 3] = image.GetOrigin()
    return Volume.from_array(arr, LPS_TO_RAS @ lps, source=p.name, info={"format": "ITK"})


# ------------------------------------------------------------------------------------------------
# one entry point, channels
# ------------------------------------------------------------------------------------------------


def read_volume(path: str | os.PathLike[str], *, series: str | None = None) -> Volume:
    """Any supported volume path: NIfTI, DICOM file or folder, or an ITK format."""
    p = Path(path)
    if not p.exists():
        raise ImageInputError(f"file not found: {p}")
    if p.is_dir():
        return read_dicom(p, series=series)
    if has_suffix(p.name, NIFTI_SUFFIXES):
        return read_nifti(p)
    if has_suffix(p.name, ITK_SUFFIXES):
        return read_itk(p)
    return read_dicom(p, series=series)


def stack_channels(volumes: Sequence[Volume], names: Sequence[str] | None = None) -> Volume:
    """Several co-registered volumes as the channels of one (equal shape and affine are required)."""
    if not volumes:
        raise ImageInputError("--channels needs at least one file")
    first = volumes[0]
    labels = list(names) if names is not None else [v.source for v in volumes]
    for vol, label in zip(volumes[1:], labels[1:]):
        if vol.shape != first.shape:
            raise ImageInputError(
                f"--channels: {label} is {'x'.join(map(str, vol.shape))} but {labels[0]} is "
                f"{'x'.join(map(str, first.shape))}; the modalities must be resampled to one grid first"
            )
        if not np.allclose(vol.affine, first.affine, atol=1e-3):
            raise ImageInputError(
                f"--channels: {label} and {labels[0]} have different affines (orientation/position); "
                "register and resample them to one grid first"
            )
    data = np.concatenate([v.data for v in volumes], axis=0)
    names_out: list[str] = []
    for vol, label in zip(volumes, labels):
        names_out += [label] if vol.channels == 1 else [f"{label}[{c}]" for c in range(vol.channels)]
    return Volume(data=data, affine=first.affine, spacing=first.spacing, orientation=first.orientation,
                  source=", ".join(labels), units=first.units if all(v.units == first.units for v in volumes) else "",
                  channel_names=tuple(names_out), info={"channelsFrom": "files"})
