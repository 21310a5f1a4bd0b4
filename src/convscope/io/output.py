"""An output folder: files written atomically (PNG encoding on a thread pool) plus ``manifest.json``."""

from __future__ import annotations

import io
import os
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._version import __version__
from .files import atomic_write_bytes, atomic_write_json

if TYPE_CHECKING:
    from ..render.picture import Picture

__all__ = ["OutputDir", "safe_filename", "MANIFEST_NAME"]

MANIFEST_NAME = "manifest.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_filename(name: str, max_len: int = 120) -> str:
    """A file-name-safe version of a layer name: ``"enc1.conv"`` stays, ``"model/conv 1:0"`` -> ``"model_conv_1_0"``."""
    cleaned = _UNSAFE.sub("_", name).strip("._") or "layer"
    if cleaned in (".", ".."):
        cleaned = "layer"
    return cleaned[:max_len]


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


DEFAULT_MAX_PENDING_BYTES = 64 * 2**20
"""Default bound on the bytes held by queued rendering jobs (``add_rendered(..., nbytes=...)``)."""


class OutputDir:
    """Collects the files of one run in ``path`` and writes ``manifest.json`` listing them.

    Every file is written atomically (temporary file + rename). Files not written by this run are
    never touched, so re-running into the same folder is idempotent. PNG encoding runs on a thread
    pool (Pillow's encoder releases the GIL), so it overlaps with whatever the caller does next.

    Use as a context manager; ``close()`` waits for pending writes and writes the manifest. If the
    block raises, pending writes finish but the manifest is not rewritten.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        workers: int | None = None,
        max_pending: int | None = None,
        max_pending_bytes: int | None = None,
        info: dict[str, Any] | None = None,
        formats: Sequence[str] = ("png",),
    ) -> None:
        self.path = Path(path)
        self.formats = _check_formats(formats)
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"output path {self.path} exists and is not a folder; choose another -o/--out")
        self.path.mkdir(parents=True, exist_ok=True)
        self.info = dict(info or {})
        self._entries: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.workers = workers or _default_workers()
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="convscope-png")
        self._futures: list[Future[Path]] = []
        self._closed = False
        # bounds the rendering jobs in flight (their number and the bytes they hold), so streamed
        # activations are freed as they are drawn
        self._max_pending = max_pending or 2 * (workers or _default_workers())
        self._max_pending_bytes = DEFAULT_MAX_PENDING_BYTES if max_pending_bytes is None else max_pending_bytes
        self._pending = 0
        self._pending_bytes = 0
        self._room = threading.Condition()

    # -- naming -------------------------------------------------------------------------------
    def unique_name(self, stem: str, suffix: str, folder: str = "") -> str:
        """A relative path ``folder/safe(stem)suffix`` not yet used in this run."""
        base = safe_filename(stem)
        rel = f"{folder}/{base}{suffix}" if folder else f"{base}{suffix}"
        counter = 1
        with self._lock:
            while rel in self._entries:
                counter += 1
                rel = f"{folder}/{base}-{counter}{suffix}" if folder else f"{base}-{counter}{suffix}"
            self._entries[rel] = {}
        return rel

    def _record(self, rel: str, meta: dict[str, Any]) -> None:
        entry = {"file": rel}
        entry.update({k: _jsonable(v) for k, v in meta.items() if v is not None})
        with self._lock:
            self._entries[rel] = entry

    def _target(self, rel: str) -> Path:
        target = (self.path / rel).resolve()
        root = self.path.resolve()
        if root != target and root not in target.parents:
            raise ValueError(f"refusing to write outside the output folder: {rel!r}")
        return target

    # -- writers ------------------------------------------------------------------------------
    def add_picture(self, rel: str, picture: Picture, **meta: Any) -> Future[Path]:
        """Queue ``picture`` to be PNG-encoded and written to ``rel``; returns the future."""
        if self._closed:
            raise RuntimeError("output folder already closed")
        files = self._picture_files(rel)
        for rel_f, _ in files:
            self._record(rel_f, meta)
        future = self._pool.submit(self._write_picture, files, picture, meta)
        self._futures.append(future)
        return future

    def _picture_files(self, rel: str) -> list[tuple[str, str]]:
        """``(relative path, format)`` of each file a picture named ``rel`` (``x.png``) is written as."""
        stem = rel[: -len(".png")] if rel.lower().endswith(".png") else rel
        files = [(rel if fmt == "png" else f"{stem}.{fmt}", fmt) for fmt in self.formats]
        for rel_f, _ in files:
            self._target(rel_f)
        return files

    def _write_picture(self, files: list[tuple[str, str]], picture: Picture, meta: dict[str, Any]) -> Path:
        """Encode ``picture``'s figure in every format of this folder and write the files atomically."""
        merged = dict(picture.meta)
        merged.update(meta)
        figure = picture.figure
        merged.setdefault("width", figure.width)
        merged.setdefault("height", figure.height)
        first: Path | None = None
        for rel_f, fmt in files:
            self._record(rel_f, dict(merged, format=fmt))
            path = atomic_write_bytes(self._target(rel_f), picture.encode(fmt))
            first = first or path
        assert first is not None
        return first

    @property
    def pending_bytes(self) -> int:
        """Bytes declared (``nbytes``) by the rendering jobs queued or running now."""
        return self._pending_bytes

    def _admit(self, nbytes: int) -> None:
        """Wait until a job holding ``nbytes`` fits: at most ``max_pending`` jobs and, unless no job
        is pending at all, at most ``max_pending_bytes`` held by them together."""
        with self._room:
            while self._pending and (
                self._pending >= self._max_pending or self._pending_bytes + nbytes > self._max_pending_bytes
            ):
                self._room.wait()
            self._pending += 1
            self._pending_bytes += nbytes

    def _release(self, nbytes: int) -> None:
        with self._room:
            self._pending -= 1
            self._pending_bytes -= nbytes
            self._room.notify_all()

    def add_rendered(self, rel: str, render: Callable[[], Picture], *, nbytes: int = 0, **meta: Any) -> Future[Path]:
        """Render (``render()`` -> Picture) *and* encode on the pool, so drawing overlaps the caller.

        Blocks while too many jobs are in flight (``max_pending``) or while the jobs in flight hold
        more than ``max_pending_bytes`` (each job declares what it holds in ``nbytes``, e.g. the
        activation it draws): memory stays bounded by a few activations however many layers are
        streamed, and by about two of the largest when activations are big. The picture's ``meta``
        goes into the manifest entry, overridden by ``meta``.
        """
        if self._closed:
            raise RuntimeError("output folder already closed")
        files = self._picture_files(rel)
        for rel_f, _ in files:
            self._record(rel_f, meta)
        cost = max(0, int(nbytes))
        self._admit(cost)

        def job() -> Path:
            try:
                return self._write_picture(files, render(), meta)
            finally:
                self._release(cost)

        future = self._pool.submit(job)
        self._futures.append(future)
        return future

    def add_arrays(self, rel: str, arrays: dict[str, np.ndarray], **meta: Any) -> Path:
        """Write arrays as an uncompressed ``.npz`` (readable with ``np.load(allow_pickle=False)``)."""
        buf = io.BytesIO()
        np.savez(buf, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
        meta.setdefault("arrays", {k: list(v.shape) for k, v in arrays.items()})
        self._record(rel, meta)
        return atomic_write_bytes(self._target(rel), buf.getvalue())

    def add_bytes(self, rel: str, data: bytes, **meta: Any) -> Path:
        self._record(rel, meta)
        return atomic_write_bytes(self._target(rel), data)

    def add_text(self, rel: str, text: str, **meta: Any) -> Path:
        return self.add_bytes(rel, text.encode("utf-8"), **meta)

    def add_json(self, rel: str, obj: Any, **meta: Any) -> Path:
        self._record(rel, meta)
        return atomic_write_json(self._target(rel), obj)

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._entries.values() if e]

    def wait(self) -> None:
        """Wait for every queued write; re-raise the first failure."""
        futures, self._futures = self._futures, []
        errors = []
        for future in futures:
            try:
                future.result()
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
        if errors:
            raise errors[0]

    def close(self) -> Path:
        """Finish writes, write ``manifest.json`` and return its path."""
        if self._closed:
            return self.path / MANIFEST_NAME
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)
            self._closed = True
        manifest = {"convscope": __version__, **self.info, "files": self.entries}
        return atomic_write_json(self.path / MANIFEST_NAME, manifest)

    def __enter__(self) -> OutputDir:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            try:
                self.wait()
            finally:
                self._pool.shutdown(wait=True)
                self._closed = True


def _check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """Validated picture formats (``png``, ``svg``, ``pdf``), in order, without duplicates."""
    from ..render.scene import parse_formats

    return parse_formats(list(formats))


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value
