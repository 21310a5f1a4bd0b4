"""A digest of a model's weights: tells whether two runs saw the same model.

A scan records it, so ``--resume`` refuses a checkpoint made with other weights (a model retrained
under the same file name), merging refuses scans of different models, and ``report --scan`` /
``serve --scan`` refuse a scan of another model instead of showing its channels as this one's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

__all__ = ["digest_arrays", "DIGEST_PREFIX"]

DIGEST_PREFIX = "blake2b-128:"
"""What every digest starts with (the algorithm, so a later change of it is never a false mismatch)."""


def digest_arrays(named: Iterable[tuple[str, np.ndarray]]) -> str:
    """``"blake2b-128:<hex>"`` over each array's name, dtype, shape and bytes, in the order given.

    Args:
        named: ``(name, array)`` pairs, any dtype and shape (C order is taken; a non-contiguous
            array is copied once). The order is part of the digest: give the framework's own order
            (a ``state_dict``, ``model.weights``, the ONNX initializers).
    Returns:
        32 hex digits after :data:`DIGEST_PREFIX`; equal arrays under equal names give equal digests
        on every machine (the bytes are hashed in little-endian order).
    """
    hasher = hashlib.blake2b(digest_size=16)
    for name, array in named:
        data = np.ascontiguousarray(array)
        if data.dtype.byteorder == ">" or (data.dtype.byteorder == "=" and np.little_endian is False):
            data = data.astype(data.dtype.newbyteorder("<"))
        header = f"{name}\0{data.dtype.str}\0{','.join(str(s) for s in data.shape)}\0"
        hasher.update(len(header).to_bytes(8, "little"))
        hasher.update(header.encode("utf-8"))
        hasher.update(data.reshape(-1).view(np.uint8).data if data.size else b"")
    return DIGEST_PREFIX + hasher.hexdigest()
