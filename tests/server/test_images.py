"""Decoding uploads and folder images with byte, type and pixel limits."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convscope.server.images import ImageRejected, decode_image, read_folder_image, scan_image_folder


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height pixels (a decompression-bomb header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _reject(data: bytes, **kwargs: object) -> ImageRejected:
    options = {"content_type": "image/png", "max_bytes": 1_000_000, "max_pixels": 10_000}
    options.update(kwargs)
    with pytest.raises(ImageRejected) as info:
        decode_image(data, **options)  # type: ignore[arg-type]
    return info.value


def test_decodes_a_png() -> None:
    arr = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    out = decode_image(_png(arr), content_type="image/png", max_bytes=10_000, max_pixels=100)
    np.testing.assert_array_equal(out, arr)


def test_rejects_too_many_bytes() -> None:
    err = _reject(_png(np.zeros((4, 4), np.uint8)), max_bytes=10)
    assert err.status == 413 and err.code == "too_large"


def test_rejects_a_pixel_bomb_from_its_header() -> None:
    err = _reject(_png_header_only(50_000, 50_000))
    assert err.status == 413 and err.code == "too_many_pixels"


def test_rejects_wrong_content_type() -> None:
    err = _reject(b"hello", content_type="text/plain")
    assert err.status == 415


def test_rejects_a_format_that_does_not_match_the_content_type() -> None:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(buf, format="BMP")
    err = _reject(buf.getvalue(), content_type="image/png")
    assert err.status == 415


def test_rejects_a_broken_image() -> None:
    err = _reject(_png(np.zeros((8, 8), np.uint8))[:40])
    assert err.status == 400 and err.code == "broken_image"


def test_rejects_garbage_sent_as_octet_stream() -> None:
    err = _reject(b"\x00\x01garbage" * 10, content_type="application/octet-stream")
    assert err.status in (400, 415)


def test_decodes_npy_without_pickle() -> None:
    buf = io.BytesIO()
    np.save(buf, np.ones((2, 3), np.float32))
    out = decode_image(buf.getvalue(), content_type="application/octet-stream", max_bytes=10_000, max_pixels=100)
    assert out.shape == (2, 3)


def test_rejects_object_npy() -> None:
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    err = _reject(buf.getvalue(), content_type="application/x-npy")
    assert err.status == 415


def test_rejects_npy_header_declaring_a_huge_array() -> None:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (100_000, 100_000)})
    err = _reject(buf.getvalue() + b"\x00" * 16, content_type="application/x-npy")
    assert err.status == 413


def test_folder_scan_skips_symlinks_outside_and_non_images(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / "a.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / "sub" / "b.png")
    (root / "notes.txt").write_text("x")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "outside.png")
    os.symlink(tmp_path / "outside.png", root / "link.png")
    os.symlink(tmp_path, root / "dirlink")
    names = [item.name for item in scan_image_folder(root)]
    assert names == ["a.png", "sub/b.png"]


def test_folder_read_rechecks_containment(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    root.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / "a.png")
    item = scan_image_folder(root)[0]
    (root / "a.png").unlink()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "secret.png")
    os.symlink(tmp_path / "secret.png", root / "a.png")
    with pytest.raises(ImageRejected) as info:
        read_folder_image(root, item, max_bytes=10_000, max_pixels=100)
    assert info.value.status == 404
