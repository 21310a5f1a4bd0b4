"""Reading images for the live viewer: uploads and the ``--images`` folder, with size limits.

Every image (uploaded or from the folder) is decoded from bytes here, after three checks:
byte size, declared content type / actual format, and pixel count read from the header *before*
the pixels are decoded (decompression bombs). ``.npy`` arrays are read with
``allow_pickle=False`` and their header shape is checked before any allocation.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io import images as _images  # noqa: F401 - registers the picture and .npy readers
from ..io.readers import Reader, reader_for_bytes, reader_suffixes
from .security import contained_path

__all__ = [
    "ImageRejected",
    "IMAGE_CONTENT_TYPES",
    "FOLDER_SUFFIXES",
    "decode_image",
    "scan_image_folder",
    "read_folder_image",
    "FolderImage",
]

IMAGE_CONTENT_TYPES: dict[str, str] = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/jpg": "JPEG",
    "image/tiff": "TIFF",
    "image/bmp": "BMP",
    "image/x-ms-bmp": "BMP",
    "image/gif": "GIF",
    "image/webp": "WEBP",
    "application/x-npy": "NPY",
    "application/octet-stream": "*",  # accepted only when the bytes are an image, a .npy array or a volume
    "application/dicom": "VOLUME",
    "application/x-nifti": "VOLUME",
    "application/gzip": "VOLUME",  # .nii.gz
    "application/x-gzip": "VOLUME",
}
"""Content types accepted for uploads, and the decoded format each promises."""

FOLDER_SUFFIXES = tuple(s for s in dict.fromkeys(reader_suffixes()) if s != ".npz")
"""Every file ending a registered reader reads (:mod:`convscope.io.readers`): pictures, ``.npy``, volumes."""

VOXELS_PER_PIXEL_LIMIT = 8
"""A volume may hold this many times ``max_pixels`` voxels (a 512x512x300 CT is 79M voxels)."""

_NPY_MAGIC = b"\x93NUMPY"


class ImageRejected(ValueError):
    """An image was refused; ``status`` is the HTTP status to answer (400, 413, 415, 422)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _decode_npy(data: bytes, max_pixels: int) -> np.ndarray:
    buf = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buf)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(buf)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(buf)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except ValueError as exc:
        raise ImageRejected(400, "broken_image", f"not a readable .npy array ({exc})") from None
    if dtype.hasobject:
        raise ImageRejected(415, "unsupported_type", ".npy arrays of Python objects are not accepted")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if count > 4 * max_pixels:
        raise ImageRejected(413, "too_many_pixels", f"the array has {count:,} values; the limit is {4 * max_pixels:,}")
    if len(data) - buf.tell() < count * dtype.itemsize:
        raise ImageRejected(400, "broken_image", "the .npy array is truncated")
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ImageRejected(400, "broken_image", f"not a readable .npy array ({exc})") from None


def decode_image(
    data: bytes,
    *,
    content_type: str | None = None,
    max_bytes: int,
    max_pixels: int,
) -> Any:
    """Decode image bytes into something :meth:`Scope.prepare` accepts (a numpy array or a PIL image).

    Args:
        data: the file's bytes.
        content_type: the declared type (upload part header); None to trust the bytes (folder files).
        max_bytes: refuse larger payloads (413).
        max_pixels: refuse images whose header declares more pixels (413), before decoding.

    Raises:
        ImageRejected: 413 too large, 415 wrong content type / format, 400 broken image.
    """
    if len(data) > max_bytes:
        raise ImageRejected(413, "too_large", f"the file is {len(data):,} bytes; the limit is {max_bytes:,}")
    if not data:
        raise ImageRejected(400, "broken_image", "the file is empty")
    expected = "*"
    if content_type is not None:
        ctype = content_type.split(";", 1)[0].strip().lower()
        if ctype not in IMAGE_CONTENT_TYPES:
            raise ImageRejected(
                415, "unsupported_type",
                f"content type {ctype or 'none'!r} is not an image; upload PNG, JPEG, TIFF, BMP, GIF, WebP or .npy",
            )
        expected = IMAGE_CONTENT_TYPES[ctype]
    if data.startswith(_NPY_MAGIC):
        if expected not in ("*", "NPY"):
            raise ImageRejected(415, "unsupported_type", f"the file is a .npy array, not {content_type}")
        return _decode_npy(data, max_pixels)
    if expected == "NPY":
        raise ImageRejected(400, "broken_image", "the file is not a .npy array")
    volume_reader = reader_for_bytes(data[:1024])
    if volume_reader is not None and volume_reader.read_bytes is not None:
        if expected not in ("*", "VOLUME"):
            raise ImageRejected(415, "unsupported_type", f"the file is a {volume_reader.name} volume, not {content_type}")
        return _decode_volume(volume_reader, data, max_pixels)
    if expected == "VOLUME":
        raise ImageRejected(415, "unsupported_type", "the file is not a NIfTI or DICOM volume")

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img: Image.Image = Image.open(io.BytesIO(data))
            fmt = (img.format or "").upper()
            allowed = {"PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP", "MPO"}
            if fmt not in allowed:
                raise ImageRejected(415, "unsupported_type", f"image format {fmt or 'unknown'} is not accepted")
            if expected != "*" and fmt != expected and not (expected == "JPEG" and fmt == "MPO"):
                raise ImageRejected(415, "unsupported_type", f"the file is {fmt}, but was sent as {content_type}")
            width, height = img.size
            if width < 1 or height < 1:
                raise ImageRejected(400, "broken_image", "the image has no pixels")
            if width * height > max_pixels:
                raise ImageRejected(
                    413, "too_many_pixels", f"the image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}"
                )
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(img, dtype=np.float32) / 65535.0
            if img.mode in ("I", "F"):
                return np.asarray(img, dtype=np.float32)
            if img.mode not in ("L", "RGB", "RGBA"):
                img = img.convert("RGBA" if "A" in img.mode or ("transparency" in img.info) else "RGB")
            return np.asarray(img)
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(413, "too_many_pixels", f"the image has more than {max_pixels:,} pixels") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise ImageRejected(400, "broken_image", f"cannot read the file as an image ({type(exc).__name__})") from None


def _decode_volume(reader: Reader, data: bytes, max_pixels: int) -> Any:
    from ..io.volumes import VolumeTooLarge

    try:
        return reader.read_bytes(data, VOXELS_PER_PIXEL_LIMIT * max_pixels)  # type: ignore[misc]
    except VolumeTooLarge as exc:
        raise ImageRejected(413, "too_many_pixels", str(exc)) from None
    except ValueError as exc:  # ImageInputError: one line saying what is wrong
        raise ImageRejected(400, "broken_image", str(exc)) from None


@dataclass(frozen=True)
class FolderImage:
    """A file of the ``--images`` folder: ``name`` (relative, for display) and its real path."""

    name: str
    path: Path


def scan_image_folder(root: str | os.PathLike[str], *, max_files: int = 2000) -> list[FolderImage]:
    """Image files under ``root`` (recursively, symlinked folders not followed), sorted by name.

    A file (or symlink) whose real path is outside the real path of ``root`` is skipped.
    """
    real_root = Path(os.path.realpath(root))
    if not real_root.is_dir():
        raise ValueError(f"--images {root} is not a folder")
    found: list[FolderImage] = []
    for dirpath, dirnames, filenames in os.walk(real_root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if Path(dirpath) != real_root and _is_dicom_folder(Path(dirpath), filenames):
            real = _contained_folder(real_root, Path(dirpath))
            if real is not None:  # a DICOM series: one entry, read as a volume
                found.append(FolderImage(name=Path(dirpath).relative_to(real_root).as_posix() + "/", path=real))
            dirnames[:] = []
            if len(found) >= max_files:
                return found
            continue
        for filename in sorted(filenames):
            if filename.startswith(".") or not filename.lower().endswith(FOLDER_SUFFIXES):
                continue
            real = contained_path(real_root, Path(dirpath) / filename)
            if real is None:
                continue
            name = (Path(dirpath) / filename).relative_to(real_root).as_posix()
            found.append(FolderImage(name=name, path=real))
            if len(found) >= max_files:
                return found
    return found


def _is_dicom_folder(folder: Path, filenames: list[str]) -> bool:
    from ..io.volumes import DICOM_SUFFIXES, has_suffix

    return any(has_suffix(name, DICOM_SUFFIXES) for name in filenames if not name.startswith("."))


def _contained_folder(root: str | os.PathLike[str], candidate: Path) -> Path | None:
    """The real path of folder ``candidate`` if it is inside the real path of ``root`` and every file
    under it (links resolved) is too; else None."""
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(candidate))
    if real == real_root or real_root not in real.parents or not real.is_dir():
        return None
    for dirpath, _, filenames in os.walk(real, followlinks=False):
        for name in filenames:
            if contained_path(real, Path(dirpath) / name) is None and not name.startswith("."):
                return None
    return real


def _read_series_folder(root: str | os.PathLike[str], folder: Path, max_bytes: int, max_pixels: int) -> Any:
    """A DICOM series folder of ``--images`` (containment, total size and voxel count checked first)."""
    from ..io.volumes import VolumeTooLarge, read_dicom

    real = _contained_folder(root, folder)
    if real is None:
        raise ImageRejected(404, "not_found", "the series folder is gone or has files outside the images folder")
    total = sum(f.stat().st_size for f in real.rglob("*") if f.is_file())
    if total > 8 * max_bytes:
        raise ImageRejected(413, "too_large", f"the series is {total:,} bytes; the limit is {8 * max_bytes:,}")
    try:
        return read_dicom(real, max_voxels=VOXELS_PER_PIXEL_LIMIT * max_pixels)
    except VolumeTooLarge as exc:
        raise ImageRejected(413, "too_many_pixels", str(exc)) from None
    except ValueError as exc:
        raise ImageRejected(400, "broken_image", str(exc)) from None


def read_folder_image(root: str | os.PathLike[str], image: FolderImage, *, max_bytes: int, max_pixels: int) -> Any:
    """Decode a folder image, re-checking containment at read time (the file may have changed)."""
    if image.name.endswith("/"):  # a DICOM series folder
        return _read_series_folder(root, image.path, max_bytes, max_pixels)
    real = contained_path(root, image.path)
    if real is None:
        raise ImageRejected(404, "not_found", "the image file is gone or now points outside the images folder")
    try:
        size = real.stat().st_size
        if size > max_bytes:
            raise ImageRejected(413, "too_large", f"the file is {size:,} bytes; the limit is {max_bytes:,}")
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(real, flags)
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise ImageRejected(404, "not_found", f"cannot read the image file ({type(exc).__name__})") from None
    return decode_image(data, content_type=None, max_bytes=max_bytes, max_pixels=max_pixels)
