"""Volumes written in the tests with nibabel and pydicom (nothing is downloaded).

The ground truth is a canonical RAS+ array ``(X, Y, Z)``: index ``x`` grows towards the patient's
right, ``y`` anterior, ``z`` superior. :func:`marked_volume` plants a bright block in the patient's
left-anterior-superior corner (low x, high y, high z), reaching the centre slices so planes drawn
through the centre cut it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHAPE = (12, 10, 8)
SPACING = (0.8, 1.0, 2.5)  # anisotropic: thick slices
MARK = 1000.0


def marked_volume(shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    x, y, z = shape
    vol = np.zeros(shape, dtype=np.float32)
    vol += np.arange(x, dtype=np.float32)[:, None, None]  # a gentle R-L ramp, so flips are visible
    vol[: x // 2 + 1, y // 2 :, z // 2 :] = MARK  # left (low x), anterior (high y), superior (high z), incl. the centre
    return vol


def ras_affine(spacing: tuple[float, float, float] = SPACING, origin: tuple[float, float, float] = (-10.0, 5.0, 30.0)) -> np.ndarray:
    aff = np.diag([*spacing, 1.0])
    aff[:3, 3] = origin
    return aff


def write_nifti(path: Path, canonical: np.ndarray, codes: str = "RAS", *, dtype: str = "float32", big_endian: bool = False,
                slope: float | None = None, inter: float = 0.0, rotate_deg: float = 0.0,
                spacing: tuple[float, float, float] = SPACING) -> Path:
    """Store ``canonical`` (RAS+ truth) in orientation ``codes`` (e.g. "LAS", "PSR"), optionally rotated."""
    import nibabel as nib
    from nibabel.orientations import axcodes2ornt, ornt_transform

    affine = ras_affine(spacing)
    if rotate_deg:
        t = np.deg2rad(rotate_deg)
        rot = np.eye(4)
        rot[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
        affine = rot @ affine
    img = nib.Nifti1Image(canonical.astype(np.float32), affine)
    img = img.as_reoriented(ornt_transform(axcodes2ornt("RAS"), axcodes2ornt(tuple(codes))))
    data = np.asarray(img.dataobj)
    header = nib.Nifti1Header()
    if big_endian:
        header = header.as_byteswapped(">")
    header.set_data_dtype(np.dtype(dtype))
    if slope is not None:
        data = np.round((data - inter) / slope).astype(dtype)
    else:
        data = data.astype(dtype)
    out = nib.Nifti1Image(data, img.affine, header=header)
    if slope is not None:
        out.header.set_slope_inter(slope, inter)
    nib.save(out, str(path))
    return path


def _dataset(path: Path, pixels: np.ndarray, *, series_uid: str, instance: int, position: list[float],
             orientation: list[float], spacing: tuple[float, float], slope: float = 1.0, intercept: float = 0.0,
             modality: str = "CT", photometric: str = "MONOCHROME2", thickness: float = 5.0,
             transfer_syntax: str | None = None, frames: int = 1, extra=None) -> Path:
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax or ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in orientation]
    ds.PixelSpacing = [f"{v:.6f}" for v in spacing]
    ds.SliceThickness = f"{thickness:.3f}"  # deliberately NOT the slice spacing
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = int(pixels.shape[-2]), int(pixels.shape[-1])
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if pixels.dtype == np.int16 else 0
    ds.RescaleSlope = f"{slope:g}"
    ds.RescaleIntercept = f"{intercept:g}"
    if frames > 1:
        ds.NumberOfFrames = frames
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    if transfer_syntax is not None and pydicom.uid.UID(transfer_syntax).is_compressed:
        from pydicom.encaps import encapsulate

        ds.PixelData = encapsulate([b"\xff\xd8not-really-compressed\xff\xd9"])
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def write_dicom_series(folder: Path, canonical_hu: np.ndarray, *, spacing=SPACING, series_uid: str = "1.2.3.4.100",
                       slope: float = 2.0, intercept: float = -1024.0, seed: int = 0, positions_override=None,
                       photometric: str = "MONOCHROME2", transfer_syntax: str | None = None) -> Path:
    """An axial CT series in the usual LPS orientation (IOP 1,0,0,0,1,0) with shuffled file names and
    InstanceNumbers that disagree with the slice positions; values stored as int16 with rescale."""
    folder.mkdir(parents=True, exist_ok=True)
    x, y, z = canonical_hu.shape
    sx, sy, sz = spacing
    rng = np.random.default_rng(seed)
    names = rng.permutation(z)
    instances = rng.permutation(z) + 1
    for k in range(z):
        pixels = canonical_hu[::-1, ::-1, k].T  # rows posterior-going (A->P), cols R->L: the DICOM axial layout
        stored = np.round((pixels - intercept) / slope).astype(np.int16)
        pos = [-(x - 1) * sx, -(y - 1) * sy, k * sz] if positions_override is None else positions_override[k]
        _dataset(folder / f"img{names[k]:03d}.dcm", stored, series_uid=series_uid, instance=int(instances[k]),
                 position=pos, orientation=[1, 0, 0, 0, 1, 0], spacing=(sy, sx), slope=slope, intercept=intercept,
                 photometric=photometric, transfer_syntax=transfer_syntax)
    return folder


def write_multiframe(path: Path, canonical_hu: np.ndarray, *, spacing=SPACING, slope: float = 2.0,
                     intercept: float = -1024.0, seed: int = 1) -> Path:
    """An enhanced (multi-frame) CT file: per-frame positions and rescale in functional groups, frames
    stored in shuffled order."""
    from pydicom.dataset import Dataset

    x, y, z = canonical_hu.shape
    sx, sy, sz = spacing
    order = np.random.default_rng(seed).permutation(z)
    frames = np.stack([canonical_hu[::-1, ::-1, k].T for k in order])
    stored = np.round((frames - intercept) / slope).astype(np.int16)

    def seq(**values):
        item = Dataset()
        for key, value in values.items():
            setattr(item, key, value)
        return [item]

    shared = Dataset()
    shared.PlaneOrientationSequence = seq(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])
    shared.PixelMeasuresSequence = seq(PixelSpacing=[sy, sx], SliceThickness=9.0)
    per = []
    for k in order:
        item = Dataset()
        item.PlanePositionSequence = seq(ImagePositionPatient=[-(x - 1) * sx, -(y - 1) * sy, float(k) * sz])
        item.PixelValueTransformationSequence = seq(RescaleSlope=slope, RescaleIntercept=intercept, RescaleType="HU")
        per.append(item)
    extra = {"SharedFunctionalGroupsSequence": [shared], "PerFrameFunctionalGroupsSequence": per}
    return _dataset(path, stored, series_uid="1.2.3.4.200", instance=1, position=[0, 0, 0],
                    orientation=[1, 0, 0, 0, 1, 0], spacing=(sy, sx), frames=z, extra=extra)


def write_seg(path: Path, canonical_labels: np.ndarray, segments: dict[int, str], *, spacing=SPACING,
              kind: str = "BINARY", fractions: np.ndarray | None = None, seed: int = 2, z_shift_mm: float = 0.0,
              frame_size: tuple[int, int] | None = None, pixel_spacing: tuple[float, float] | None = None) -> Path:
    """A DICOM Segmentation (SEG) drawn on the series :func:`write_dicom_series` writes for a volume of
    ``canonical_labels``' shape: one frame per (segment, slice) where the segment is present, frames in
    shuffled order, positions and segment numbers in the per-frame functional groups, orientation and
    spacing in the shared ones. BINARY frames are bit-packed (1 bit per pixel, LSB first, frames not
    byte-aligned when rows x cols is not a multiple of 8); FRACTIONAL frames are 8-bit
    ``round(fractions * 255)`` (``fractions``: ``(X, Y, Z)`` in [0, 1], used where the label is the segment).

    A segment's mask may overlap another's when ``canonical_labels`` is a dict ``{segment: (X, Y, Z) bool}``.
    """
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    masks = canonical_labels if isinstance(canonical_labels, dict) else {s: canonical_labels == s for s in segments}
    shape = next(iter(masks.values())).shape
    x, y, z = shape
    sx, sy, sz = spacing
    frames, items = [], []
    for number in sorted(masks):
        for k in range(z):
            mask = masks[number][::-1, ::-1, k].T  # the DICOM axial layout: rows A->P, columns R->L
            if not mask.any():
                continue
            if kind == "FRACTIONAL":
                frac = np.ones(shape) if fractions is None else fractions
                frame = np.where(mask, np.round(frac[::-1, ::-1, k].T * 255), 0).astype(np.uint8)
            else:
                frame = mask.astype(np.uint8)
            if frame_size is not None:
                frame = np.zeros(frame_size, dtype=np.uint8)
                frame[: min(frame_size[0], mask.shape[0]), : min(frame_size[1], mask.shape[1])] = 1
            frames.append(frame)
            items.append((number, [-(x - 1) * sx, -(y - 1) * sy, k * sz + z_shift_mm]))
    order = np.random.default_rng(seed).permutation(len(frames))
    frames = [frames[i] for i in order]
    items = [items[i] for i in order]

    def seq(**values):
        item = Dataset()
        for key, value in values.items():
            setattr(item, key, value)
        return [item]

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "SEG"
    ds.SegmentationType = kind
    if kind == "FRACTIONAL":
        ds.SegmentationFractionalType = "PROBABILITY"
        ds.MaximumFractionalValue = 255
    ds.SegmentSequence = [seq(SegmentNumber=n, SegmentLabel=label, SegmentAlgorithmType="MANUAL")[0]
                          for n, label in sorted(segments.items())]
    rows, cols = frames[0].shape
    shared = Dataset()
    shared.PlaneOrientationSequence = seq(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])
    shared.PixelMeasuresSequence = seq(PixelSpacing=list(pixel_spacing or (sy, sx)), SliceThickness=sz)
    ds.SharedFunctionalGroupsSequence = [shared]
    per = []
    for number, position in items:
        item = Dataset()
        item.PlanePositionSequence = seq(ImagePositionPatient=position)
        item.SegmentIdentificationSequence = seq(ReferencedSegmentNumber=number)
        per.append(item)
    ds.PerFrameFunctionalGroupsSequence = per
    ds.NumberOfFrames = len(frames)
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelRepresentation = 0
    stack = np.stack(frames)
    if kind == "BINARY":
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 1, 0
        packed = np.packbits(stack.reshape(-1), bitorder="little").tobytes()  # DICOM PS3.5 8.1.1: LSB first
        ds.PixelData = packed + b"\0" * (len(packed) % 2)
    else:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        raw = stack.tobytes()
        ds.PixelData = raw + b"\0" * (len(raw) % 2)
    ds.save_as(str(path), enforce_file_format=True)
    return path
