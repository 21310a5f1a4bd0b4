"""A dataset of image files for scans: listing, stable image ids, and batches decoded in parallel.

``DATA`` is any mix of folders (searched recursively), glob patterns (``"data/**/*.png"``), text
files listing one path per line (relative paths are relative to the list file; blank lines and
``#`` comments are skipped), or single files. Anything :func:`convscope.io.images.prepare_input`
reads is accepted: PNG, JPEG, TIFF, BMP, GIF, WebP and ``.npy``.

An image's id is ``<path relative to its DATA root>@<first 16 hex digits of its BLAKE2b hash>``:
re-running on the same data gives the same ids, and a changed file gets a new id.

Batches are the consecutive chunks of the sorted file list (``batch_size`` files each, fewer when
some are skipped), so a resumed scan processes exactly the batches an uninterrupted one would.
Decoding runs on a thread pool a few batches ahead of the consumer (the forward pass).
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConvscopeError, ImageInputError
from .images import ARRAY_SUFFIXES, IMAGE_SUFFIXES, PreparedInput, prepare_input
from .volume_prep import VolumeOptions
from .volumes import DICOM_SUFFIXES, file_is_dicom

__all__ = ["DataFile", "Batch", "Skipped", "list_files", "DatasetError", "decode_file", "iter_batches", "chunk_files",
           "ExampleReader", "file_part", "is_volume_item", "scanned_slice_by_slice"]

SUFFIXES = tuple(IMAGE_SUFFIXES) + tuple(ARRAY_SUFFIXES)
"""Picture and array endings; every file ending of a registered reader is read too (:func:`readable_endings`)."""
LIST_SUFFIXES = (".txt", ".lst")
SERIES_SUFFIXES = DICOM_SUFFIXES
"""DICOM file endings. A folder holding two or more DICOM files (these endings, or files without a
readable ending that carry the DICOM Part 10 marker, as PACS exports name them: ``IM0001``,
``1.2.840...``) and no other readable item is one DICOM series: one item."""


def readable_endings() -> tuple[str, ...]:
    """File name endings a dataset item may have: pictures, arrays and every file reader's endings
    (NIfTI ``.nii``/``.nii.gz``, DICOM ``.dcm``, ITK ``.mha``/``.nrrd`` ...)."""
    from .readers import readers

    extra = [s for r in readers() if not r.folders for s in r.suffixes]
    return tuple(dict.fromkeys([*SUFFIXES, *extra]))


def _is_series(folder: Path, names: Sequence[str], endings: Sequence[str]) -> bool:
    """True if ``folder`` (whose entries are ``names``) is one DICOM series (see :data:`SERIES_SUFFIXES`).

    Files with another readable ending (a picture, an array, a NIfTI file) make it a folder of items;
    other files (notes, JSON sidecars, a ``DICOMDIR``) are ignored. Only files without a readable ending
    are opened, for their first 132 bytes.
    """
    dicom = 0
    readable = tuple(e for e in endings if e not in SERIES_SUFFIXES)
    for name in names:
        path = folder / name
        lower = name.lower()
        if name.startswith(".") or not path.is_file():
            continue
        if lower.endswith(SERIES_SUFFIXES):
            dicom += 1
        elif lower.endswith(readable):
            return False
        elif name.upper() != "DICOMDIR" and file_is_dicom(path):
            dicom += 1
    return dicom >= 2


class DatasetError(ConvscopeError):
    """DATA names nothing readable (no files, a missing path)."""


@dataclass(frozen=True)
class DataFile:
    """One file of the dataset: ``path`` (absolute) and ``rel`` (relative to its DATA root, ``/``-separated)."""

    path: str
    rel: str


@dataclass(frozen=True)
class Skipped:
    """A file left out of the scan and why (one line)."""

    rel: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"file": self.rel, "reason": self.reason}


@dataclass
class Batch:
    """Decoded images of one chunk.

    Attributes:
        index: the chunk's number (0-based) in the dataset's chunk order.
        ids: image ids of the images kept, in file order.
        files: their :class:`DataFile`.
        batch: ``(n, C, *spatial)`` float32 model input (None when no file of the chunk was usable).
        skipped: files of the chunk that were left out.
    """

    index: int
    ids: list[str]
    files: list[DataFile]
    batch: np.ndarray | None
    skipped: list[Skipped] = field(default_factory=list)


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _glob_root(pattern: str) -> Path:
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts:
        if _is_glob(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


OUTPUT_REASON = "convscope's own output (it holds convscope's manifest.json), not data: left out"
"""Why a folder inside DATA is not scanned (a scan, report or export folder written by convscope)."""


def is_convscope_output(folder: Path, names: Sequence[str]) -> bool:
    """True if ``folder`` (whose entries are ``names``) holds convscope's output: a ``manifest.json``
    written by convscope (its first key is ``"convscope"``), or it is a run's staging folder."""
    from .output import MANIFEST_NAME, STAGE_PREFIX

    if folder.name.startswith(STAGE_PREFIX):
        return True
    if MANIFEST_NAME not in names:
        return False
    try:
        with open(folder / MANIFEST_NAME, "rb") as handle:
            head = handle.read(256)
    except OSError:
        return False
    return head.lstrip().startswith(b'{') and b'"convscope"' in head.split(b",", 1)[0]


def list_files(data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
               *, left_out: list[tuple[str, str]] | None = None) -> list[DataFile]:
    """Every dataset file named by ``data``, deduplicated by absolute path, sorted by ``rel`` then path.

    Folders are searched recursively; a DICOM series folder is one item; folders holding convscope's
    own output (:func:`is_convscope_output`: a scan or report written inside DATA) are not searched,
    and are appended to ``left_out`` as ``(folder rel + "/", reason)``.

    Raises:
        DatasetError: a path that does not exist, or nothing found at all.
    """
    items = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    if not items:
        raise DatasetError("no DATA given: name a folder, a glob such as 'data/*.png', or a text file listing images")
    found: dict[str, DataFile] = {}
    endings = readable_endings()
    skipped_folders: dict[str, str] = {}

    def relative(path: Path, root: Path) -> str:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            return path.name

    def add(path: Path, root: Path, *, series: bool = False) -> None:
        if not series and (not path.name.lower().endswith(endings) or not path.is_file()):
            return
        found.setdefault(str(path.resolve()), DataFile(path=str(path.resolve()), rel=relative(path, root)))

    outputs: dict[Path, bool] = {}

    def in_output(folder: Path) -> bool:
        if folder not in outputs:
            try:
                outputs[folder] = is_convscope_output(folder, os.listdir(folder))
            except OSError:
                outputs[folder] = False
        return outputs[folder]

    def walk(folder: Path, root: Path) -> None:
        for dirpath, dirs, names in os.walk(folder, followlinks=False):
            here = Path(dirpath)
            if is_convscope_output(here, names):
                dirs[:] = []
                name = os.fspath(here) if here.resolve() == root.resolve() else relative(here, root)
                skipped_folders.setdefault(name.rstrip("/") + "/", OUTPUT_REASON)
                continue
            if _is_series(here, names, endings):  # a DICOM series folder is one volume
                add(here, root, series=True)
                continue
            for name in names:
                add(here / name, root)

    for item in items:
        text = os.fspath(item)
        path = Path(text)
        if _is_glob(text):
            root = _glob_root(text)
            for match in sorted(glob.glob(text, recursive=True)):
                hit = Path(match)
                output = next((d for d in hit.parents if d != root and root in d.parents and in_output(d)), None)
                if output is not None:  # a file inside convscope's output folder
                    skipped_folders.setdefault(relative(output, root) + "/", OUTPUT_REASON)
                elif hit.is_dir():
                    walk(hit, root)
                else:
                    add(hit, root)
        elif path.is_dir():
            walk(path, path)
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            base = path.parent
            for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                entry = line.strip()
                if not entry or entry.startswith("#"):
                    continue
                target = Path(entry) if Path(entry).is_absolute() else base / entry
                if not target.exists():
                    raise DatasetError(f"{path.name} line {lineno}: {entry} does not exist; fix or remove the line")
                if target.is_dir():
                    walk(target, base)
                else:
                    add(target, base)
        elif path.is_file():
            if not path.name.lower().endswith(endings):
                raise DatasetError(
                    f"{path.name} is not an image convscope reads ({', '.join(endings)}) nor a list of paths (.txt)"
                )
            add(path, path.parent)
        else:
            raise DatasetError(f"DATA path not found: {text}")
    if left_out is not None:
        left_out.extend(sorted(skipped_folders.items()))
    if not found:
        outputs_note = (f"; {', '.join(skipped_folders)} {'is' if len(skipped_folders) == 1 else 'are'} convscope's own "
                        "output, left out" if skipped_folders else "")
        raise DatasetError(
            f"no images found in {', '.join(os.fspath(i) for i in items)} (looked for {', '.join(endings)} and DICOM series "
            f"folders{outputs_note}); give a folder of images, a glob or a text file listing them"
        )
    return sorted(found.values(), key=lambda f: (f.rel, f.path))


def content_id(file: DataFile) -> str:
    """``rel@hash`` for ``file`` (reads it)."""
    path = Path(file.path)
    hasher = hashlib.blake2b(digest_size=8)
    if path.is_dir():  # a DICOM series: every file's name and bytes, in name order
        for part in sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")):
            hasher.update(part.name.encode("utf-8") + b"\0" + part.read_bytes())
    else:
        hasher.update(path.read_bytes())
    digest = hasher.hexdigest()
    return f"{file.rel}@{digest}"


def chunk_files(files: Sequence[DataFile], batch_size: int, *, alone: Any = None) -> list[list[DataFile]]:
    """The dataset's chunks: consecutive runs of ``batch_size`` files; a file for which
    ``alone(file)`` is true (a volume scanned slice by slice: many rows) is a chunk of its own."""
    if batch_size < 1:
        raise ConvscopeError(f"--batch-size must be at least 1, got {batch_size}")
    chunks: list[list[DataFile]] = []
    run: list[DataFile] = []
    for file in files:
        if alone is not None and alone(file):
            if run:
                chunks.append(run)
                run = []
            chunks.append([file])
            continue
        run.append(file)
        if len(run) == batch_size:
            chunks.append(run)
            run = []
    if run:
        chunks.append(run)
    return chunks


SLICE_TAG = re.compile(r"#(axial|coronal|sagittal):(\d+)$")
"""The end of an image id's path part that names one slice of a volume (``vol.nii.gz#axial:0012``)."""


def slices_plane(prepare: Mapping[str, Any]) -> str | None:
    """The plane whose every slice is one dataset item (``--slices PLANE``), or None."""
    options = prepare.get("volume_options")
    plane = getattr(options, "slices", None)
    return str(plane).strip().lower() if plane else None


def is_volume_item(file: DataFile) -> bool:
    """True when ``file`` is a volume: a NIfTI/DICOM/ITK file or a DICOM series folder."""
    from .volumes import is_volume_path

    return Path(file.path).is_dir() or is_volume_path(file.path)


def scanned_slice_by_slice(file: DataFile, prepare: Mapping[str, Any]) -> bool:
    """True when ``file`` is a volume whose slices are the items (``--slices`` with a 2D model)."""
    return slices_plane(prepare) is not None and is_volume_item(file)


def decode_file(file: DataFile, prepare: dict[str, Any]) -> tuple[list[str], np.ndarray]:
    """``(image ids, (n, C, *spatial) float32 input)`` of one file; raises ConvscopeError/OSError if unusable.

    One row per file, except for a volume scanned slice by slice (:func:`scanned_slice_by_slice`):
    one row per slice of the plane, with ids ``rel#plane:NNNN@hash`` (``NNNN`` the slice index in
    the RAS+ volume, as ``--slice plane:N`` names it). Other files ignore ``--slices``.
    """
    image_id = content_id(file)
    plane = slices_plane(prepare)
    if plane is not None:
        if scanned_slice_by_slice(file, prepare):
            batch = prepare_input(file.path, **prepare).batch
            rel, digest = image_id.rsplit("@", 1)
            return [f"{rel}#{plane}:{i:04d}@{digest}" for i in range(batch.shape[0])], batch
        prepare = {**prepare, "volume_options": replace(prepare["volume_options"], slices=None)}
    batch = prepare_input(file.path, **prepare).batch
    if batch.shape[0] != 1:
        raise ImageInputError(f"holds {batch.shape[0]} images (an (N, C, ...) array); save one image per file")
    return [image_id], batch


def file_part(image_id: str) -> str:
    """The file's ``rel`` in an image id (``rel@hash``, or ``rel#plane:N@hash`` for a slice)."""
    rel = image_id.rsplit("@", 1)[0]
    return SLICE_TAG.sub("", rel)


class ExampleReader:
    """Pass 2's inputs: :meth:`read` gives the prepared input of one scanned image id, a slice of a
    volume cut from the volume read once (the last ``volumes`` volumes are kept)."""

    def __init__(self, prepare: dict[str, Any], volumes: int = 2) -> None:
        self.prepare = prepare
        self.volumes = max(1, volumes)
        self._cache: dict[str, Any] = {}

    def read(self, image_id: str, path: str) -> PreparedInput:
        """The :class:`~convscope.io.images.PreparedInput` of ``image_id`` (its ``.batch`` has one row)."""
        match = SLICE_TAG.search(image_id.rsplit("@", 1)[0])
        options = self.prepare.get("volume_options")
        if match is None:
            if options is not None and options.slices:
                return prepare_input(path, **{**self.prepare, "volume_options": replace(options, slices=None)})
            return prepare_input(path, **self.prepare)
        volume = self._cache.pop(path, None)
        if volume is None:
            from .images import _as_volume

            volume = _as_volume(path, options)
            if volume is None:
                raise ImageInputError(f"{Path(path).name} is no longer a volume; rerun the scan")
        self._cache[path] = volume  # most recently used last
        while len(self._cache) > self.volumes:
            self._cache.pop(next(iter(self._cache)))
        one = replace(options or VolumeOptions(), slices=None, slice=f"{match.group(1)}:{int(match.group(2))}")
        return prepare_input(volume, **{**self.prepare, "volume_options": one})


def _decode_chunk(index: int, files: Sequence[DataFile], prepare: dict[str, Any], shape: list[Any]) -> Batch:
    ids: list[str] = []
    kept: list[DataFile] = []
    arrays: list[np.ndarray] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()
    for file in files:
        try:
            row_ids, rows = decode_file(file, prepare)
        except (ConvscopeError, OSError, ValueError, MemoryError) as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            skipped.append(Skipped(file.rel, text))
            continue
        if row_ids[0] in seen:
            skipped.append(Skipped(file.rel, "duplicate of an image already in this batch"))
            continue
        arr = rows[0]
        if shape[0] is None:
            shape[0] = tuple(arr.shape)
        if tuple(arr.shape) != shape[0]:
            want = "x".join(map(str, shape[0][1:]))
            skipped.append(
                Skipped(
                    file.rel,
                    f"shape {'x'.join(map(str, arr.shape[1:]))} with {arr.shape[0]} channel(s) differs from the scan's "
                    f"{want} with {shape[0][0]}; pass --size {want} to resize every image",
                )
            )
            continue
        seen.update(row_ids)
        ids.extend(row_ids)
        kept.extend([file] * len(row_ids))
        arrays.append(rows)
    batch = np.concatenate(arrays) if arrays else None
    return Batch(index=index, ids=ids, files=kept, batch=batch, skipped=skipped)


def iter_batches(
    chunks: Sequence[Sequence[DataFile]] | Mapping[int, Sequence[DataFile]],
    *,
    prepare: dict[str, Any],
    workers: int = 2,
    prefetch: int = 2,
    start: int = 0,
    expected_shape: tuple[int, ...] | None = None,
    only: Sequence[int] | None = None,
) -> Iterator[Batch]:
    """Decoded :class:`Batch` es of ``chunks`` in order, up to ``max(prefetch, workers)`` chunks decoded ahead
    on ``workers`` threads while the caller works on the current one.

    Args:
        chunks: from :func:`chunk_files` (or a mapping chunk index -> files, with ``only``).
        prepare: keyword arguments of :func:`prepare_input` (channels, spatial_dims, size, normalize,
            expected_size).
        start: first chunk index to decode (resume).
        expected_shape: ``(C, *spatial)`` every image must have (default: the first good image's).
        only: decode only these chunk indices (in this order).
    """
    order = list(only) if only is not None else list(range(start, len(chunks)))
    shape: list[Any] = [expected_shape]
    workers = max(1, int(workers))
    if not order:
        return
    # the first chunk fixes the shape, so decode it before starting the others
    first = _decode_chunk(order[0], chunks[order[0]], prepare, shape)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="convscope-decode") as pool:
        pending: list[Future[Batch]] = []
        position = 1

        def submit() -> None:
            nonlocal position
            while len(pending) < max(1, prefetch, workers) and position < len(order):
                i = order[position]
                # one chunk per task: up to ``workers`` chunks decode at once, yielded in order
                pending.append(pool.submit(_decode_chunk, i, chunks[i], prepare, shape))
                position += 1

        submit()
        yield first
        while pending:
            future = pending.pop(0)
            submit()
            yield future.result()

