"""An output folder: files written atomically (PNG encoding on a thread pool) plus ``manifest.json``."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._version import __version__
from ..errors import ConvscopeError
from .files import atomic_write_bytes, atomic_write_json

if TYPE_CHECKING:
    from ..render.picture import Picture

__all__ = ["OutputDir", "OutputFolderError", "ArrayStream", "safe_filename", "MANIFEST_NAME", "STAGE_PREFIX"]

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

INTERLEAVED_MAX_JOBS = 256
"""Job-count bound of an interleaved folder (its bytes bound is what limits it in practice)."""


class OutputDir:
    """Collects the files of one run in ``path`` and writes ``manifest.json`` listing them.

    Every file is written atomically (temporary file + rename). Files not written by this run are
    never touched, so re-running into the same folder is idempotent. PNG encoding runs on a thread
    pool (Pillow's encoder releases the GIL), so it overlaps with whatever the caller does next.

    The manifest lists this run's files (each tagged with ``command``) and keeps the entries of
    *other* commands' runs into the same folder whose files are still there and were not rewritten
    (``kernels`` and ``activations`` into one ``-o`` each keep their files listed).

    ``interleave=True`` is for a producer that uses every core itself (a forward pass on the CPU):
    rendering jobs then wait while it runs, instead of competing with it for the cores. They start
    when the producer would exceed ``max_pending_bytes`` (it waits until every queued job is done,
    all workers drawing, then goes on alone) and when it is done (:meth:`run_queued`, ``wait()``,
    ``close()``). Compared with drawing beside a forward pass that gives up a core while jobs are
    queued, that keeps the forward pass on all its threads: ResNet-50 at 896x896 streams its 53
    grids about 0.2 s sooner on 2 cores, for up to ``max_pending_bytes`` held.

    Use as a context manager; ``close()`` waits for pending writes and writes the manifest. A run
    writes into a hidden staging folder inside ``path`` (``.convscope-run-PID-*``) and ``close()``
    moves its files into place and writes the manifest in one short step, with SIGINT/SIGTERM held
    back. If the block raises (an error, Ctrl-C, SIGTERM), queued work is cancelled and the staging
    folder removed: the folder holds the previous complete run exactly as before (a folder this run
    created is removed again if empty).
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
        interleave: bool = False,
    ) -> None:
        self.path = Path(path)
        self.formats = _check_formats(formats)
        self._created = _prepare_folder(self.path)
        _remove_stale_stages(self.path)
        try:
            self._stage = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{os.getpid()}-", dir=self.path))
        except OSError as exc:
            raise OutputFolderError(f"cannot write into the output folder {self.path}: {exc.strerror or exc}; "
                                    f"choose another -o/--out") from None
        self.info = dict(info or {})
        self._entries: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.workers = workers or _default_workers()
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="convscope-png")
        self._futures: list[Future[Path]] = []
        self._closed = False
        # bounds the rendering jobs in flight (their number and the bytes they hold), so streamed
        # activations are freed as they are drawn
        self.interleave = bool(interleave)
        self._max_pending = max_pending or (INTERLEAVED_MAX_JOBS if self.interleave else 2 * self.workers)
        self._max_pending_bytes = DEFAULT_MAX_PENDING_BYTES if max_pending_bytes is None else max_pending_bytes
        self._pending = 0
        self._pending_bytes = 0
        self._room = threading.Condition()
        # interleaved: queued jobs may run now (the producer waits for them) / from now on (it is done)
        self._jobs_may_run = not self.interleave
        self._producer_done = not self.interleave
        self._cancelled = False

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
        """Where ``rel`` is written during the run: inside the staging folder (moved into place by ``close``)."""
        root = self._stage.resolve()
        target = (root / rel).resolve()
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

    def _admit(self, nbytes: int) -> None:
        """Wait until a job holding ``nbytes`` fits: at most ``max_pending`` jobs and, unless no job
        is pending at all, at most ``max_pending_bytes`` held by them together. Interleaved, the
        queued jobs run meanwhile, and the caller waits until all of them are done."""
        with self._room:
            if self._pending and not self._fits(nbytes):
                if not self._producer_done:
                    self._jobs_may_run = True
                    self._room.notify_all()
                    while self._pending:
                        self._room.wait()
                    self._jobs_may_run = self._producer_done
                while self._pending and not self._fits(nbytes):
                    self._room.wait()
            self._pending += 1
            self._pending_bytes += nbytes

    def _fits(self, nbytes: int) -> bool:
        return self._pending < self._max_pending and self._pending_bytes + nbytes <= self._max_pending_bytes

    def _release(self, nbytes: int) -> None:
        with self._room:
            self._pending -= 1
            self._pending_bytes -= nbytes
            self._room.notify_all()

    def _wait_turn(self) -> None:
        """In a job of an interleaved folder: wait until jobs may run."""
        with self._room:
            while not self._jobs_may_run:
                self._room.wait()

    def run_queued(self) -> None:
        """The producer is done (interleaved folders): queued jobs run now, later ones at once."""
        with self._room:
            self._producer_done = self._jobs_may_run = True
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
                self._wait_turn()
                if self._cancelled:  # the run failed while this job waited: nothing to draw for
                    raise CancelledError()
                return self._write_picture(files, render(), meta)
            finally:
                self._release(cost)

        future = self._pool.submit(job)
        self._futures.append(future)
        return future

    def add_arrays(self, rel: str, arrays: dict[str, np.ndarray], **meta: Any) -> Path:
        """Write arrays as an uncompressed ``.npz`` (readable with ``np.load(allow_pickle=False)``)."""
        buf = io.BytesIO()
        # typed Any: numpy's stubs match ``**`` against savez's ``allow_pickle: bool`` keyword
        contiguous: dict[str, Any] = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        np.savez(buf, **contiguous)
        meta.setdefault("arrays", {k: list(v.shape) for k, v in arrays.items()})
        self._record(rel, meta)
        atomic_write_bytes(self._target(rel), buf.getvalue())
        return self.final_path(rel)

    def open_array_stream(self, rel: str, key: str, array_shape: Sequence[int], dtype: Any = np.float32,
                          **meta: Any) -> ArrayStream:
        """An uncompressed ``.npz`` holding one array ``key`` of ``shape``, written in pieces along axis 0
        (:meth:`ArrayStream.write`), so the whole array is never in memory (``array_shape``: the whole array's). The file reads like
        :meth:`add_arrays`'s (``np.load(allow_pickle=False)[key]``); :meth:`ArrayStream.close`
        checks that every row was written. It is staged like every file and committed by :meth:`close`."""
        if self._closed:
            raise RuntimeError("output folder already closed")
        meta.setdefault("arrays", {key: [int(v) for v in array_shape]})
        self._record(rel, meta)
        target = self._target(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        return ArrayStream(target, key, tuple(int(v) for v in array_shape), np.dtype(dtype))

    def add_bytes(self, rel: str, data: bytes, **meta: Any) -> Path:
        self._record(rel, meta)
        atomic_write_bytes(self._target(rel), data)
        return self.final_path(rel)

    def add_text(self, rel: str, text: str, **meta: Any) -> Path:
        return self.add_bytes(rel, text.encode("utf-8"), **meta)

    def add_json(self, rel: str, obj: Any, **meta: Any) -> Path:
        self._record(rel, meta)
        atomic_write_json(self._target(rel), obj)
        return self.final_path(rel)

    def final_path(self, rel: str) -> Path:
        """Where ``rel`` will be once the run is committed (``close``); until then it is staged."""
        return self.path / rel

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._entries.values() if e]

    def wait(self) -> None:
        """Wait for every queued write; re-raise the first failure."""
        self.run_queued()
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
        """Finish writes, then commit the run: move its files into the folder and write ``manifest.json``.

        The commit is a handful of renames inside one file system, run with SIGINT/SIGTERM held back
        (delivered right after), so an interrupted run never leaves a manifest that lists other files
        than the ones on disk.
        """
        if self._closed:
            return self.path / MANIFEST_NAME
        try:
            self.wait()
        except BaseException:
            self._abandon()
            raise
        finally:
            self._pool.shutdown(wait=True)
            self._closed = True
        command = self.info.get("command")
        entries = [{**entry, "command": command} if command else entry for entry in self.entries]
        ours = {entry["file"] for entry in entries}
        kept = [entry for entry in _previous_entries(self.path) if entry.get("command") not in (None, command)
                and entry["file"] not in ours and (self.path / entry["file"]).is_file()]
        manifest = {"convscope": __version__, **self.info, "files": entries + kept}
        with _signals_held():
            for entry in entries:
                rel = entry["file"]
                source = self._stage / rel
                if source.exists():
                    destination = self.path / rel
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(source, destination)
            written = atomic_write_json(self.path / MANIFEST_NAME, manifest)
            shutil.rmtree(self._stage, ignore_errors=True)
        return written

    def _abandon(self) -> None:
        """Drop this run's staged files: the folder is left as it was before the run."""
        shutil.rmtree(self._stage, ignore_errors=True)
        if self._created:
            with contextlib.suppress(OSError):
                self.path.rmdir()  # only if still empty: nothing of anyone else's is removed

    def __enter__(self) -> OutputDir:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
            return
        # the run failed or was interrupted: stop queued work, wait for the jobs already running,
        # and leave the folder as it was
        try:
            self._cancelled = True
            self.run_queued()  # jobs waiting for their turn end at once (cancelled ones never start)
            self._pool.shutdown(wait=True, cancel_futures=True)
        finally:
            self._closed = True
            self._abandon()


STAGE_PREFIX = ".convscope-run-"
"""Name prefix of the staging folder a run writes into before it is committed."""


class ArrayStream:
    """One ``.npy`` member of an uncompressed ``.npz``, written row block by row block (see
    :meth:`OutputDir.open_array_stream`). ``write(block)`` appends ``block`` (``(k, *shape[1:])``);
    ``close()`` finishes the file and raises ``ValueError`` unless exactly ``shape[0]`` rows came."""

    def __init__(self, path: Path, key: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        import zipfile

        self.path, self.key, self.shape, self.dtype = path, key, shape, dtype
        self.rows = 0
        self._zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self._member = self._zip.open(f"{key}.npy", "w", force_zip64=True)
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_2_0(self._member, header)

    def write(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if tuple(block.shape[1:]) != self.shape[1:] or self.rows + block.shape[0] > self.shape[0]:
            raise ValueError(f"array block {block.shape} does not continue {self.shape} after {self.rows} rows")
        self._member.write(block.tobytes())
        self.rows += int(block.shape[0])

    def close(self, check: bool = True) -> None:
        if self._zip.fp is None:
            return
        self._member.close()
        self._zip.close()
        if check and self.rows != self.shape[0]:
            raise ValueError(f"{self.path.name}: {self.rows} of {self.shape[0]} rows were written")


class OutputFolderError(ConvscopeError, OSError):
    """The output folder cannot be created or written (names the folder, not a temporary file)."""


def _prepare_folder(path: Path) -> bool:
    """Create ``path`` (and parents); one clear error when it cannot be. Returns whether it was created."""
    if path.exists():
        if not path.is_dir():
            raise OutputFolderError(f"output path {path} exists and is not a folder; choose another -o/--out")
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputFolderError(f"the output folder {path} is not writable; choose another -o/--out")
        return False
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputFolderError(f"-o/--out {path} is below {parent}, which is a file, not a folder; "
                                        f"choose another -o/--out")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise OutputFolderError(f"cannot create the output folder {path}: {parent} is not writable; "
                                        f"choose another -o/--out")
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputFolderError(f"cannot create the output folder {path}: {exc.strerror or exc}; "
                                f"choose another -o/--out") from None
    return True


def _previous_entries(path: Path) -> list[dict[str, Any]]:
    """The file entries of the folder's current manifest (tagged with the command that wrote them)."""
    import json

    try:
        data = json.loads((path / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        return []
    default = data.get("command")
    out = []
    for entry in data["files"]:
        if isinstance(entry, dict) and isinstance(entry.get("file"), str):
            out.append({**entry, "command": entry.get("command", default)})
    return out


def _remove_stale_stages(path: Path) -> None:
    """Remove staging folders left by runs that were killed outright (SIGKILL): their process is gone."""
    for stage in path.glob(f"{STAGE_PREFIX}*"):
        pid_text = stage.name[len(STAGE_PREFIX):].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(stage, ignore_errors=True)
        except OSError:
            pass


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back for the duration (main thread, POSIX); they are delivered afterwards."""
    held = {signal.SIGINT, signal.SIGTERM}
    can = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held) if can else None
    try:
        yield
    finally:
        if previous is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


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
