"""Pass 1 of a dataset scan: stream every batch through the model, fold per-channel statistics.

Both engines use :class:`BatchScanner`: one batch in, one partial :class:`ScanState` out, from ONE
forward pass whose activations are streamed (``adapter.capture(..., on_activation=...)``) and
reduced as they arrive, so memory holds one batch's activation of one layer at a time (plus, for
segmentation models, the batch's activations until the prediction is known). On CPU the local
engine scans one batch per torch thread at once (:func:`one_thread_captures`), every forward pass
on one torch thread. The local engine merges the partial states in chunk order; the Ray engine
computes them on actors (with the same settings) and merges them in the same order, so both give
the same state.
"""

from __future__ import annotations

import collections
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..adapters.base import SupportsCpuSharing
from ..core.budget import available_memory
from ..core.objective import fit_mask
from ..core.stats import DEFAULT_BINS, LayerStats, histogram_edges
from ..errors import ConvscopeError
from ..io.dataset import (Batch, DataFile, chunk_files, content_id, file_part, is_volume_item, iter_batches, list_files,
                          scanned_slice_by_slice)
from .result import ClassStats, ScanError, ScanResult, ScanState, weights_differ

__all__ = ["ScanConfig", "BatchScanner", "run_scan", "ScanInterrupted", "CHECKPOINT_NAME", "finish_checkpoint"]

CHECKPOINT_NAME = "checkpoint.npz"


class ScanInterrupted(ConvscopeError):
    """SIGINT/SIGTERM stopped the scan after a checkpoint was written."""


@dataclass
class ScanConfig:
    """How to scan (JSON-ready; stored in the state and compared on ``--resume``)."""

    model: str
    layers: list[str]
    top_k: int = 16
    score: str = "max"
    bins: int = DEFAULT_BINS
    batch_size: int = 32
    size: Any = None
    normalize: str | None = None
    class_stats: bool | None = None  # None: on for segmentation outputs
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "layers": list(self.layers),
            "top_k": int(self.top_k),
            "score": self.score,
            "bins": int(self.bins),
            "batch_size": int(self.batch_size),
            "size": self.size if self.size is None or isinstance(self.size, (int, str)) else list(self.size),
            "normalize": self.normalize,
            **self.extra,
        }


def _segmentation_classes(output: np.ndarray | None, input_spatial: tuple[int, ...]) -> np.ndarray | None:
    """``(N, *spatial)`` int64 predicted class per output pixel for a dense (segmentation) output, else None."""
    if output is None or output.ndim != len(input_spatial) + 2 or tuple(output.shape[2:]) != tuple(input_spatial):
        return None
    if output.shape[1] == 1:
        return (output[:, 0] > 0).astype(np.int64)  # binary logits: 0 background, 1 foreground
    return np.argmax(output, axis=1).astype(np.int64)


class BatchScanner:
    """One model, one config: ``scanner(batch)`` -> partial :class:`ScanState` of that batch.

    Args:
        scope: a :class:`convscope.Scope` (pickles; Ray actors build one each).
        config: the scan's :class:`ScanConfig`.
        edges: layer -> histogram edges (from the scan's first batch); missing layers get edges from
            this batch.
    """

    def __init__(self, scope: Any, config: ScanConfig, edges: dict[str, np.ndarray] | None = None) -> None:
        self.scope = scope
        self.config = config
        self.edges: dict[str, np.ndarray] = dict(edges or {})
        self.segmentation: bool | None = config.class_stats
        self.max_pending_bytes = 256 * 2**20
        self.inline = False  # True inside one_thread_captures: reduce each activation in its hook

    @property
    def edges_fixed(self) -> bool:
        """True once every scanned layer has its histogram edges (normally after the first batch):
        until then batches run one at a time, so the edges never depend on timing."""
        return all(name in self.edges for name in self.config.layers)

    def __call__(self, batch: Batch) -> ScanState:
        size = self.config.batch_size
        if batch.batch is not None and len(batch.ids) > size:  # a volume's slices: forward passes of batch_size rows
            state = ScanState(config=self.config.to_dict())
            state.done.add(batch.index)
            state.skipped.extend((s.rel, s.reason) for s in batch.skipped)
            for start in range(0, len(batch.ids), size):
                part = Batch(index=batch.index, ids=batch.ids[start:start + size], files=batch.files[start:start + size],
                             batch=batch.batch[start:start + size])
                state.merge(self._scan(part), check=False)
            return state
        return self._scan(batch)

    def _scan(self, batch: Batch) -> ScanState:
        """The partial state of one forward pass over ``batch`` (at most ``batch_size`` rows)."""
        state = ScanState(config=self.config.to_dict())
        state.done.add(batch.index)
        state.skipped.extend((s.rel, s.reason) for s in batch.skipped)
        if batch.batch is None or not batch.ids:
            return state
        ids = list(batch.ids)
        state.ids.update(ids)
        state.paths.update({i: f.path for i, f in zip(ids, batch.files)})
        state.input_shape = tuple(int(s) for s in batch.batch.shape[1:])
        keep: dict[str, np.ndarray] = {}
        buffer = self.segmentation is not False  # unknown or on: keep this batch's activations for class stats
        cfg = self.config
        seen: set[str] = set()
        errors: list[BaseException] = []

        def reduce(name: str, act: np.ndarray) -> None:
            if name not in self.edges:
                self.edges[name] = histogram_edges(act, cfg.bins)
            state.layers[name] = LayerStats.from_batch(act, ids, k=cfg.top_k, score=cfg.score, edges=self.edges[name])  # type: ignore[arg-type]

        def check(name: str) -> None:
            if name in seen:  # a module called twice keeps both under name#k; never merge here
                raise ScanError(f"layer {name} produced two outputs in one forward pass")
            seen.add(name)
            if errors:
                raise errors[0]

        adapter = self.scope.adapter
        if self.inline:
            # inside concurrent_captures: this thread is one of several capturing at once; each
            # activation (a view of the layer's output, valid during the call) is reduced right here
            def on_view(name: str, act: np.ndarray) -> None:
                check(name)
                reduce(name, act)
                if buffer and act.ndim > 2:
                    keep[name] = np.array(act)

            result = adapter.capture(batch.batch, cfg.layers, on_activation=on_view)
        else:
            # the statistics run on a worker thread while the forward pass goes on (numpy releases the
            # GIL; an accelerator or a framework's own threads compute the forward pass meanwhile); the
            # activations queued for it hold at most ``max_pending_bytes`` (or one activation)
            room = threading.Condition()
            pending = [0]
            limit = self.max_pending_bytes

            def reduce_queued(name: str, act: np.ndarray) -> None:
                try:
                    reduce(name, act)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the forward thread
                    errors.append(exc)
                finally:
                    with room:
                        pending[0] -= act.nbytes
                        room.notify_all()

            def on_activation(name: str, act: np.ndarray) -> None:
                check(name)
                with room:
                    while pending[0] and pending[0] + act.nbytes > limit:
                        room.wait()
                    pending[0] += act.nbytes
                futures.append(pool.submit(reduce_queued, name, act))
                if buffer and act.ndim > 2:
                    keep[name] = act

            futures: list[Any] = []
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="convscope-scan-stats") as pool:
                try:
                    result = adapter.capture(batch.batch, cfg.layers, on_activation=on_activation)
                finally:
                    for future in futures:
                        future.result()
        if errors:
            raise errors[0]
        # model order, not call order, so the layer list is the same whatever the batch
        order = [n for n in cfg.layers if n in state.layers] + [n for n in state.layers if n not in cfg.layers]
        state.layers = {n: state.layers[n] for n in order}
        if buffer:
            classes = _segmentation_classes(result.output, tuple(batch.batch.shape[2:]))
            if self.segmentation is None:
                self.segmentation = classes is not None
            if classes is not None:
                ncls = 2 if result.output is not None and result.output.shape[1] == 1 else int(result.output.shape[1])
                for name in order:
                    act = keep.get(name)
                    if act is None:
                        continue
                    grid = fit_mask(classes, act.shape[0], tuple(act.shape[2:])).astype(np.int64)  # nearest
                    onehot = (grid.reshape(grid.shape[0], 1, -1) == np.arange(ncls)[None, :, None]).astype(np.float64)
                    flat = act.reshape(act.shape[0], act.shape[1], -1)
                    sums = np.einsum("nks,ncs->kc", onehot, flat, dtype=np.float64)
                    state.classes[name] = ClassStats(sums=sums, pixels=onehot.sum(axis=(0, 2)).astype(np.int64))
        return state


class _StopEvent(threading.Event):
    """Set by SIGINT/SIGTERM; ``signum`` says which signal (None until one came)."""

    signum: int | None = None


@contextmanager
def _stop_signals() -> Iterator[_StopEvent]:
    """SIGINT/SIGTERM set an event (checked between batches) instead of killing the scan mid-write."""
    stop = _StopEvent()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {}

    def handler(signum: int, _frame: Any) -> None:
        stop.set()
        stop.signum = signum

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):  # pragma: no cover
            pass
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _prepare_kwargs(scope: Any, size: Any, normalize: str | None) -> dict[str, Any]:
    spec = scope.adapter.input_spec()
    return {
        "channels": spec.channels,
        "spatial_dims": spec.spatial_dims or 2,
        "size": size,
        "normalize": normalize if normalize is not None else scope.normalize,
        "expected_size": spec.spatial_size if size is None else None,
        # volumes (NIfTI, DICOM series): the scope's --intensity / --roi ... and, for a 3D model,
        # padding to its total downsampling (an int, so the settings pickle for Ray actors)
        "volume_options": scope.volume_options,
        "downsampling": scope._downsampling(spec.channels, 3) if spec.spatial_dims == 3 else 1,
    }


def _check_batch_memory(scope: Any, names: list[str], files: Sequence[DataFile], rows: int, size: Any) -> None:
    """Refuse, before any image is decoded, a batch whose forward pass would not fit the scope's
    memory budget (``--max-memory``): measured from the first readable file's header."""
    from ..io.images import planned_shape

    spec = scope.adapter.input_spec()
    for file in files[:8]:  # the first files may be broken: they are skipped later, with their reason
        try:
            shape = planned_shape(file.path, channels=spec.channels, spatial_dims=spec.spatial_dims or 2, size=size)
        except (ConvscopeError, OSError, ValueError):
            continue
        probe = np.broadcast_to(np.float32(0), (rows, *shape[1:]))  # no memory: a view of one zero
        scope.check_memory(probe, names, mode="stream", what=f"a scan batch of {rows} images")
        return


def _check_volume_options(scope: Any, files: Sequence[DataFile]) -> None:
    """Refuse ``--slices``/``--slice`` when no item of DATA is a volume: the option would do nothing."""
    options = scope.volume_options
    given = [f"--slices {options.slices}" if getattr(options, "slices", None) else "",
             f"--slice {options.slice}" if getattr(options, "slice", None) else ""]
    named = " and ".join(g for g in given if g)
    if named and not any(is_volume_item(f) for f in files):
        raise ConvscopeError(f"{named}: none of the {len(files)} item(s) in DATA is a volume (NIfTI, DICOM, ITK), so "
                             "there are no slices to take; leave it out")


def _check_resume(state: ScanState, config: ScanConfig, chunks: list[list[DataFile]]) -> None:
    want = config.to_dict()
    have = state.config
    if weights_differ(have, want.get("weights"), want.get("framework")):
        raise ScanError(
            f"cannot resume: the checkpoint was made with other weights than {config.model} has now (the model "
            "changed since); rerun without --resume into a new folder"
        )
    for key in ("model", "layers", "top_k", "score", "bins", "batch_size", "size", "normalize", "slices"):
        if have.get(key) != want.get(key):
            raise ScanError(
                f"cannot resume: the checkpoint was made with {key}={have.get(key)!r}, this run has {want.get(key)!r}; "
                "rerun with the same options or without --resume (into a new folder)"
            )
    if have.get("chunks") is not None and have.get("chunks") != len(chunks):
        raise ScanError(
            f"cannot resume: DATA now has {len(chunks)} batches, the checkpoint {have.get('chunks')}; files were added or "
            "removed. Scan the new files into another folder and merge the two scans"
        )
    by_rel = {file_part(i): i.rsplit("@", 1)[1] for i in state.ids}
    for index in sorted(state.done):
        for file in chunks[index]:
            old = by_rel.get(file.rel)
            if old is not None and content_id(file).rsplit("@", 1)[1] != old:
                raise ScanError(f"cannot resume: {file.rel} changed since the checkpoint; rerun without --resume")


def run_scan(
    scope: Any,
    data: Any,
    *,
    layers: Any = None,
    kind: str | None = None,
    top_k: int = 16,
    score: str = "max",
    batch_size: int = 32,
    workers: int = 2,
    size: Any = None,
    normalize: str | None = None,
    bins: int = DEFAULT_BINS,
    edges_from: Any = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 20,
    resume: bool = False,
    engine: str = "local",
    ray_address: str | None = None,
    ray_actors: int = 2,
    class_stats: bool | None = None,
    progress: Callable[[int, int], None] | None = None,
    memory_limit: int | None = None,
    keep_checkpoint: bool = False,
) -> ScanResult:
    """Pass 1 over ``data`` (see :meth:`convscope.Scope.scan`); returns a :class:`ScanResult` without crops.

    Args:
        checkpoint: folder holding ``checkpoint.npz`` (written atomically every ``checkpoint_every``
            batches and when SIGINT/SIGTERM arrive); None: no checkpoints.
        resume: continue from the checkpoint in ``checkpoint``.
        edges_from: a :class:`ScanResult` / scan folder whose histogram edges to reuse (shards that
            will be merged must share edges).
        memory_limit: bytes the scan state may take (default 60% of RAM); checked after the first
            batch, before the scan goes on.
        keep_checkpoint: leave the complete state in ``checkpoint.npz`` (the caller removes it once
            pass 2 and the scan folder are written, :func:`finish_checkpoint`); default: removed here.

    Raises:
        ScanInterrupted: a signal stopped the scan (the checkpoint is written first).
    """
    from ..core.stats import SCORES

    if score not in SCORES:
        raise ConvscopeError(f"--score must be one of {', '.join(SCORES)}, got {score!r}")
    if top_k < 1:
        raise ConvscopeError(f"--top-k must be at least 1, got {top_k}")
    if engine not in ("local", "ray"):
        raise ConvscopeError(f"--engine must be local or ray, got {engine!r}")
    names = scope.select(layers, kind=kind)
    if not names:
        raise ConvscopeError("no layers to scan: the model has no convolutions; pass --layer NAME or --kind all")
    plane = getattr(scope.volume_options, "slices", None)
    if plane and (scope.adapter.input_spec().spatial_dims or 2) != 2:
        raise ConvscopeError(f"--slices {plane} feeds the slices of volumes to a 2D model; {scope.name} takes 3D input: "
                             "leave --slices out to scan whole volumes")
    left_out: list[tuple[str, str]] = []
    files = list_files(data, left_out=left_out)  # folders of convscope's own output inside DATA are left out
    prepare = _prepare_kwargs(scope, size, normalize)
    _check_volume_options(scope, files)
    # a volume scanned slice by slice is a chunk of its own (its slices go through in batches of batch_size)
    chunks = chunk_files(files, batch_size, alone=(lambda file: scanned_slice_by_slice(file, prepare)) if plane else None)
    config = ScanConfig(
        model=scope.name, layers=names, top_k=top_k, score=score, bins=bins, batch_size=batch_size,
        size=size, normalize=normalize, class_stats=class_stats,
        extra={"chunks": len(chunks), "framework": scope.adapter.framework, "weights": scope.weights_digest(),
               "slices": plane},
    )
    edges: dict[str, np.ndarray] = {}
    if edges_from is not None:
        source = edges_from if isinstance(edges_from, ScanResult) else ScanResult.load(edges_from)
        source.check_model(scope)  # edges of another model's scan would make shards that never merge
        edges = {name: stats.edges for name, stats in source.state.layers.items()}
    ckpt = Path(checkpoint) / CHECKPOINT_NAME if checkpoint is not None else None
    state = ScanState(config=config.to_dict())
    if resume:
        if ckpt is None or not ckpt.is_file():
            where = ckpt.parent if ckpt is not None else "the output folder"
            raise ScanError(f"--resume: no checkpoint in {where}; start the scan without --resume")
        state = ScanState.load(ckpt)
        _check_resume(state, config, chunks)
        edges = {**edges, **{n: s.edges for n, s in state.layers.items()}}  # the checkpoint's edges win
    known = {f for f, _ in state.skipped}
    state.skipped.extend(entry for entry in left_out if entry[0] not in known)  # listed with the skipped files
    if not plane:
        _check_batch_memory(scope, names, files, min(batch_size, len(files)), size)
    todo = [i for i in range(len(chunks)) if i not in state.done]
    scanner = BatchScanner(scope, config, edges)
    if engine == "ray":
        from .ray_engine import ray_partials

        partials = ray_partials(scanner, chunks, todo, prepare, state, address=ray_address, actors=ray_actors)
    else:
        partials = _local_partials(scanner, chunks, todo, prepare, state.input_shape, workers)
    examples = len(files) if not plane else 1 << 62  # a volume's slices are counted only when it is read
    _fold(partials, state, len(chunks), ckpt, checkpoint_every, progress, memory_limit, examples)
    if ckpt is not None:
        if keep_checkpoint and state.ids:
            state.save(ckpt)  # every batch done: a resume after an interrupted pass 2 goes straight to it
        elif ckpt.exists():
            ckpt.unlink()
    if not state.ids:
        reasons = "; ".join(f"{f}: {r}" for f, r in state.skipped[:3])
        raise ConvscopeError(f"no image of DATA could be used ({len(state.skipped)} skipped: {reasons})")
    return ScanResult(state, class_names=_class_names(scope))


def finish_checkpoint(folder: str | os.PathLike[str]) -> None:
    """Remove ``folder/checkpoint.npz`` once the scan folder is complete (after pass 2)."""
    path = Path(folder) / CHECKPOINT_NAME
    if path.exists():
        path.unlink()


def _working_bytes(partial: ScanState, segmentation: bool) -> int:
    """Bytes one batch's capture holds at a time: its input, the forward pass's working activations
    (about 3 of the largest captured layer's) and, for class statistics, every captured activation."""
    if partial.input_shape is None:
        return 0
    n = len(partial.ids)
    rows = min(n, int(partial.config.get("batch_size") or n))  # a volume's slices go through batch_size at a time
    acts = [4 * rows * stats.channels * int(np.prod(stats.spatial, dtype=np.int64)) for stats in partial.layers.values()]
    need = 4 * n * int(np.prod(partial.input_shape, dtype=np.int64)) + 3 * max(acts, default=0)
    return need + (sum(acts) if segmentation else 0)


def _local_partials(
    scanner: BatchScanner,
    chunks: Sequence[Sequence[DataFile]],
    todo: list[int],
    prepare: dict[str, Any],
    expected: tuple[int, ...] | None,
    workers: int,
) -> Iterator[ScanState]:
    """Per-chunk states of ``todo`` in chunk order (the local engine).

    When the adapter computes on this machine's CPU and can capture on several threads at once
    (:class:`~convscope.adapters.base.SupportsCpuSharing`), batches are scanned one per torch
    intra-op thread at once (``torch.set_num_threads`` sets how many cores a scan takes), each
    captured and reduced on its own thread with its forward pass on one torch thread (as a Ray
    actor's), the first batch (which fixes the histogram edges) alone, fewer at once when their
    working memory would pass half the available memory. A batch's numbers do not depend on which
    thread ran it or when: each is reduced from its own forward pass, the thread count is fixed for
    the scan, and the states are merged in chunk order. Otherwise one batch at a time, its
    statistics on a second thread while the forward pass goes on (an accelerator's, or a
    framework's own threads).
    """
    batches = iter_batches(chunks, prepare=prepare, workers=workers, only=todo, expected_shape=expected)
    with one_thread_captures(scanner) as at_once:
        # alone until every layer has its histogram edges (normally after the first batch; one whose
        # files were all skipped fixes nothing), so they come from the first batches, whatever the timing
        per_batch = 0
        for batch in batches:
            state = scanner(batch)
            per_batch = max(per_batch, _working_bytes(state, bool(scanner.segmentation)))
            yield state
            if scanner.edges_fixed:
                break
        else:
            return
        if per_batch:
            at_once = max(1, min(at_once, (available_memory() // 2) // per_batch))
        if at_once < 2:
            yield from (scanner(batch) for batch in batches)
            return
        pending: collections.deque[Any] = collections.deque()
        with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="convscope-scan") as pool:
            try:
                for batch in batches:
                    pending.append(pool.submit(scanner, batch))
                    if len(pending) > at_once:  # one more waits in the queue: no core idles between batches
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()


@contextmanager
def one_thread_captures(scanner: BatchScanner) -> Iterator[int]:
    """The block every CPU scan of both engines runs in; yields how many batches may run at once.

    When the adapter computes on this machine's CPU and can capture on several threads at once
    (:class:`~convscope.adapters.base.SupportsCpuSharing`): inside ``concurrent_captures`` with one
    capture per torch intra-op thread, so every forward pass runs on ONE torch thread, on the
    driver, in the local engine's threads and on every Ray actor alike (a convolution's float result
    can depend on the thread count), and ``scanner`` reduces each activation while its hook runs
    (``inline``). Otherwise (an accelerator, Keras, ONNX) nothing changes and it yields 1.
    """
    adapter = scanner.scope.adapter
    if not (isinstance(adapter, SupportsCpuSharing) and adapter.computes_on_cpu):
        yield 1
        return
    with adapter.concurrent_captures(scanner.config.layers, views=True) as at_once:
        scanner.inline = True
        try:
            yield at_once
        finally:
            scanner.inline = False


def _class_names(scope: Any) -> list[str] | None:
    info = getattr(scope.loaded, "info", {}) or {}
    if info.get("task") == "segmentation":
        return ["background", "foreground"]
    return None


def physical_memory() -> int | None:
    """Bytes of RAM of this machine, or None if unknown."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return None


def _check_memory(partial: ScanState, limit_bytes: int | None, images: int) -> None:
    """Refuse, before the scan goes on, a state that would not fit: the running state, one batch's
    partial state and the merge temporaries hold about 3x the state. ``partial`` is the first
    batch's; its top-k/bottom-k slots grow to ``min(k, images)`` per channel as images come in."""
    state_bytes = 0
    slots = 1
    for stats in partial.layers.values():
        slots = max(1, min(stats.k, images))
        for name, value in stats.to_arrays().items():
            if name.startswith(("top_", "bottom_")) and value.ndim == 2 and value.shape[1]:
                state_bytes += value.nbytes // value.shape[1] * slots
            else:
                state_bytes += value.nbytes
    need = 3 * state_bytes
    limit = limit_bytes
    if limit is None:
        ram = physical_memory()
        limit = None if ram is None else int(0.6 * ram)
    if limit is not None and need > limit:
        raise ConvscopeError(
            f"the scan state needs about {need / 2**30:.1f} GiB ({sum(s.channels for s in partial.layers.values()):,} "
            f"channels x {slots:,} top-k and bottom-k examples), more than the {limit / 2**30:.1f} GiB allowed; "
            "scan fewer layers (--layer), lower --top-k or --bins, or scan on a bigger machine"
        )


def _fold(
    partials: Iterator[ScanState],
    state: ScanState,
    total: int,
    ckpt: Path | None,
    every: int,
    progress: Callable[[int, int], None] | None,
    limit_bytes: int | None = None,
    images: int = 0,
) -> None:
    """Merge per-batch states (in chunk order) into ``state``; checkpoint every ``every`` batches and on
    SIGINT/SIGTERM (then raise :class:`ScanInterrupted`)."""
    since = 0
    checked = False
    with _stop_signals() as stop:
        try:
            for partial in partials:
                if not checked and partial.layers:
                    _check_memory(partial, limit_bytes, images)
                    checked = True
                state.merge(partial, check=False)
                since += 1
                if progress is not None:
                    progress(len(state.done), total)
                if ckpt is not None and (stop.is_set() or since >= max(1, every)):
                    state.save(ckpt)
                    since = 0
                if stop.is_set():
                    break
        finally:
            close = getattr(partials, "close", None)
            if close is not None:
                close()
        if stop.is_set():
            where = f"; checkpoint in {ckpt.parent}, continue with --resume" if ckpt is not None else ""
            raise ScanInterrupted(f"scan interrupted after {len(state.done)} of {total} batches{where}")
