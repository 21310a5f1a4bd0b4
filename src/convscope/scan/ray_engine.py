"""The Ray engine: pass 1 as a Ray Data pipeline (``map_batches`` on an actor pool, one model per actor).

Every row of the dataset is one chunk of files; an actor decodes it, runs one forward pass and
returns the chunk's partial :class:`ScanState` as bytes. The driver merges the partial states in
chunk order (``preserve_order``), exactly as the local engine does, so both give the same state.
The histogram edges come from the first chunk, scanned on the driver before the pipeline starts.

Ray is optional (``pip install 'convscope[ray]'``); without ``address`` a local Ray is started
(no dashboard) and shut down afterwards; with one, the existing cluster is used (its workers need
convscope and the model's framework installed, and the DATA paths readable).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import ConvscopeError
from ..io.dataset import DataFile, iter_batches
from .result import ScanState

__all__ = ["ray_partials", "ScanActor"]


class ScanActor:
    """Ray Data callable class: holds one model (a pickled :class:`~convscope.Scope`) and scans chunks."""

    def __init__(self, scope: Any, config: Any, edges: dict[str, np.ndarray], prepare: dict[str, Any],
                 expected: tuple[int, ...] | None, segmentation: bool | None = None) -> None:
        from .engine import BatchScanner

        self.scanner = BatchScanner(scope, config, edges)
        self.scanner.segmentation = segmentation
        self.prepare = prepare
        self.expected = expected

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from .engine import one_thread_captures

        indices, states = [], []
        with one_thread_captures(self.scanner):  # the local engine's settings: the same numbers
            for index, files in zip(rows["index"], rows["files"]):
                chunk = [DataFile(path=p, rel=r) for p, r in json.loads(str(files))]
                chunks: dict[int, list[DataFile]] = {int(index): chunk}
                batch = next(iter_batches(chunks, prepare=self.prepare, workers=1, only=[int(index)],
                                          expected_shape=self.expected))
                indices.append(int(index))
                states.append(self.scanner(batch).to_bytes())
        return {"index": np.asarray(indices, dtype=np.int64), "state": np.asarray(states, dtype=object)}


def ray_partials(
    scanner: Any,
    chunks: Sequence[Sequence[DataFile]],
    todo: list[int],
    prepare: dict[str, Any],
    state: ScanState,
    *,
    address: str | None = None,
    actors: int = 2,
) -> Iterator[ScanState]:
    """Per-chunk states of ``todo``, in chunk order: the first chunk(s) on the driver, the rest on Ray actors."""
    from .engine import one_thread_captures

    try:
        import ray
        import ray.data
    except ImportError:
        raise ConvscopeError("--engine ray needs Ray Data: pip install 'convscope[ray]' (ray[data])") from None
    todo = list(todo)
    expected = state.input_shape
    # the driver scans chunks until every layer has its histogram edges (normally the first chunk)
    while todo and (expected is None or not scanner.edges_fixed):
        index = todo.pop(0)
        batch = next(iter_batches(chunks, prepare=prepare, workers=1, only=[index], expected_shape=expected))
        with one_thread_captures(scanner):
            partial = scanner(batch)
        if partial.input_shape is not None:
            expected = partial.input_shape
        yield partial
    if not todo:
        return
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=max(1, actors), include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        started = True
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        items = [{"index": i, "files": json.dumps([[f.path, f.rel] for f in chunks[i]])} for i in todo]
        ds: ray.data.Dataset = ray.data.from_items(items, override_num_blocks=min(len(items), max(1, actors) * 4))
        ds = ds.map_batches(
            ScanActor,
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=max(1, actors)),
            fn_constructor_kwargs={
                "scope": scanner.scope,
                "config": scanner.config,
                "edges": dict(scanner.edges),
                "prepare": prepare,
                "expected": expected,
                "segmentation": scanner.segmentation,
            },
        )
        for row in ds.iter_rows():
            yield ScanState.from_bytes(bytes(row["state"]))
    finally:
        if started:
            ray.shutdown()
