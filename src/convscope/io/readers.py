"""The one registry of input readers: every path or upload convscope accepts is read through it.

A :class:`Reader` says which names it reads (suffixes, folders), how to recognise its bytes, and
how to read a path or bytes. :func:`convscope.io.images.prepare_input` (all commands and the
API) and the viewer's uploads and ``--images`` folder (:mod:`convscope.server.images`) look
readers up here, so a format registered once is accepted everywhere.

A reader returns either ``(array, channels_last)`` (pictures, ``.npy``) or a
:class:`~convscope.core.volume.Volume` (NIfTI, DICOM, ITK).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Reader", "register_reader", "readers", "reader_for_path", "reader_for_bytes", "reader_suffixes"]


@dataclass(frozen=True)
class Reader:
    """One input format.

    Attributes:
        name: short name (``"nifti"``).
        suffixes: lower-case file name endings it reads (``(".nii", ".nii.gz")``).
        read: ``read(path, **options) -> (array, channels_last) | Volume``; options are reader
            specific (``series=`` for DICOM) and unknown ones are ignored by the caller.
        sniff: ``sniff(first_bytes) -> bool`` (the first 1024 bytes), to recognise files by content.
        read_bytes: ``read_bytes(data, max_pixels) -> array | Volume`` for uploads; None if the
            format cannot be read from one file's bytes.
        folders: True if ``read`` reads a folder (a DICOM series).
        volume: True if it returns volumes.
    """

    name: str
    suffixes: tuple[str, ...]
    read: Callable[..., Any]
    sniff: Callable[[bytes], bool] | None = None
    read_bytes: Callable[[bytes, int], Any] | None = None
    folders: bool = False
    volume: bool = False


_READERS: list[Reader] = []


def register_reader(reader: Reader, *, first: bool = False) -> Reader:
    """Add ``reader`` (replacing one of the same name); ``first`` puts it before the others."""
    global _READERS
    rest = [r for r in _READERS if r.name != reader.name]
    _READERS = [reader, *rest] if first else [*rest, reader]
    return reader


def readers() -> list[Reader]:
    _builtin()
    return list(_READERS)


def reader_suffixes() -> tuple[str, ...]:
    """Every registered file name ending (for folder scans)."""
    return tuple(s for r in readers() for s in r.suffixes)


def _head(path: Path, size: int = 1024) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except OSError:
        return b""


def reader_for_path(path: str | os.PathLike[str]) -> Reader | None:
    """The reader for ``path``: a folder reader for folders, else by name ending, else by content."""
    p = Path(path)
    found = readers()
    if p.is_dir():
        return next((r for r in found if r.folders), None)
    low = p.name.lower()
    by_suffix = [r for r in found if any(low.endswith(s) for s in r.suffixes)]
    if by_suffix:  # the longest matching ending wins (".nii.gz" over ".gz")
        return max(by_suffix, key=lambda r: max(len(s) for s in r.suffixes if low.endswith(s)))
    head = _head(p)
    return next((r for r in found if r.sniff is not None and r.sniff(head)), None)


def reader_for_bytes(head: bytes) -> Reader | None:
    """The first reader whose ``sniff`` recognises ``head`` and that can read bytes."""
    return next((r for r in readers() if r.sniff is not None and r.read_bytes is not None and r.sniff(head)), None)


_loaded = False


def _builtin() -> None:
    """Register the volume readers once (their libraries are imported only when a file is read)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from . import volumes as v

    def nifti_sniff(head: bytes) -> bool:
        if head[:2] == b"\x1f\x8b":  # gzip: look at the first decompressed bytes (a partial stream is fine)
            import zlib

            try:
                head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 540)
            except zlib.error:
                return False
        return v.is_nifti_bytes(head)

    register_reader(Reader("nifti", v.NIFTI_SUFFIXES, lambda path, **_: v.read_nifti(path), sniff=nifti_sniff,
                           read_bytes=lambda data, limit: v.nifti_from_bytes(data, max_voxels=limit), volume=True))
    register_reader(Reader("dicom", v.DICOM_SUFFIXES, lambda path, series=None, **_: v.read_dicom(path, series=series),
                           sniff=v.is_dicom_bytes, read_bytes=lambda data, limit: v.dicom_from_bytes(data, max_voxels=limit),
                           folders=True, volume=True))
    register_reader(Reader("itk", v.ITK_SUFFIXES, lambda path, **_: v.read_itk(path), volume=True))
