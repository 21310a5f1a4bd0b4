"""What a model file is, from its first bytes and (for zip archives) its member names; framework-free.

:func:`sniff_format` reads at most 64 bytes and, for zip archives, the central directory only:
nothing is decompressed, unpickled or imported, so a wrong extension, a truncated archive or an
unexpected format gets one clear message before any framework loads the file. Used by the torch,
ONNX and Keras loaders and by :mod:`convscope.loading`.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

__all__ = ["sniff_format", "describe_format", "suffix_for"]

_FORMAT_HINTS: dict[str, str] = {
    "torch-zip": "a PyTorch torch.save archive (.pt/.pth)",
    "torch-legacy": "a legacy PyTorch pickle (.pt/.pth)",
    "pickle": "a Python pickle",
    "torchscript": "a TorchScript archive (.pt)",
    "pt2": "a torch.export program (.pt2)",
    "keras": "a Keras model archive (.keras)",
    "zip": "a zip archive of unknown content",
    "safetensors": "a safetensors weights file (.safetensors)",
    "hdf5": "an HDF5 file (.h5)",
    "onnx": "an ONNX model (.onnx)",
    "png": "a PNG image",
    "jpeg": "a JPEG image",
    "npy": "a NumPy array (.npy)",
    "text": "a text file",
}

_SUFFIX_FOR = {
    "torch-zip": ".pt",
    "torch-legacy": ".pt",
    "torchscript": ".pt",
    "pt2": ".pt2",
    "keras": ".keras",
    "safetensors": ".safetensors",
    "hdf5": ".h5",
    "onnx": ".onnx",
}


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return "corrupt-zip"
    if any(n.endswith("constants.pkl") for n in names) and any("/code/" in n or n.startswith("code/") for n in names):
        return "torchscript"
    if any(n == "archive_format" or n.endswith("/archive_format") for n in names) or any(
        "/models/" in n and n.endswith(".json") for n in names
    ):
        return "pt2"
    if any(n.endswith("data.pkl") for n in names):
        return "torch-zip"
    if "config.json" in names and any(n.endswith(".h5") or n == "metadata.json" for n in names):
        return "keras"
    return "zip"


def _looks_like_onnx(head: bytes) -> bool:
    # ModelProto starts with field 1 (ir_version, varint, tag 0x08) and a small version number.
    return len(head) >= 2 and head[0] == 0x08 and 0 < head[1] < 0x40


def sniff_format(path: str | Path) -> str:
    """What ``path`` holds, from its first bytes (and a zip's member names); never unpickles.

    Returns:
        One of ``"empty"``, ``"torchscript"``, ``"pt2"``, ``"torch-zip"``, ``"keras"``, ``"zip"``,
        ``"corrupt-zip"`` (zip signature but no readable central directory: truncated),
        ``"torch-legacy"`` (pickle protocol 2, how old ``torch.save`` starts), ``"pickle"``,
        ``"safetensors"``, ``"hdf5"``, ``"png"``, ``"jpeg"``, ``"npy"``, ``"onnx"`` (a guess from
        the protobuf tag), ``"text"`` or ``"unknown"``.
    """
    file = Path(path)
    with open(file, "rb") as handle:
        head = handle.read(64)
    if not head:
        return "empty"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_kind(file)
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
        return "torch-legacy" if head[1] == 2 else "pickle"
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 0 < header_len < 100_000_000:
            return "safetensors"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head.startswith(b"\x89PNG"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if _looks_like_onnx(head):
        return "onnx"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "unknown"
    return "text" if all(ch.isprintable() or ch in "\r\n\t" for ch in text) else "unknown"


def describe_format(kind: str) -> str:
    """Words for a :func:`sniff_format` result, with the suffix it should have if known."""
    words = _FORMAT_HINTS.get(kind, "a file of unknown type")
    return words


def suffix_for(kind: str) -> str | None:
    """The file suffix convscope expects for a sniffed format, if it reads that format."""
    return _SUFFIX_FOR.get(kind)


