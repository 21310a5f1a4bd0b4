"""Pass 2 of a scan: the input box of every top-k example (its crop).

``theoretical``: the receptive field of the example's arg-max position, from the traced graph
(:mod:`convscope.core.receptive`); needs one forward pass on one image (the graph), not the winners.
``effective``: the winners are re-run and the input gradient of the activation at that position is
thresholded (``|grad|`` summed over input channels ``>= threshold * max``); its bounding box is the
crop (torch models).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.graph import CaptureRequest, Graph
from ..core.receptive import geometry_from_layers, receptive_boxes
from ..errors import ConvscopeError
from ..io.dataset import ExampleReader
from .result import ScanResult

__all__ = ["compute_crops", "trace_graph", "theoretical_boxes", "METHODS"]

METHODS = ("theoretical", "effective", "none")


def trace_graph(scope: Any, batch: np.ndarray) -> Graph | None:
    """The dataflow graph of one forward pass, or None when the framework cannot be traced."""
    from ..errors import UnsupportedModelError
    from ..unet import unet_backend_for

    try:
        backend = unet_backend_for(scope.adapter)
    except UnsupportedModelError:
        return None
    capture = backend.capture_graph(batch[:1], lambda _g: CaptureRequest())
    return capture.graph


def theoretical_boxes(scope: Any, graph: Graph, layer: str, positions: np.ndarray) -> np.ndarray | None:
    """``(E, 2 * d)`` half-open input boxes of ``positions`` in ``layer``'s output, or None if not in the graph."""
    try:
        node = graph.by_name(layer)
    except KeyError:
        return None
    return receptive_boxes(graph, node.id, positions, geometry_from_layers(scope.adapter.layers()))


def _prepare(scope: Any, size: Any, normalize: str | None) -> dict[str, Any]:
    from .engine import _prepare_kwargs

    return _prepare_kwargs(scope, size, normalize)


def _example_arrays(result: ScanResult, layer: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(example ids, which are filled, their ``(…, dims)`` arg-max coordinates or None for a non-spatial layer)."""
    stats = result.layer(layer)
    ids = stats.top_id
    valid = ids != b""
    spatial = stats.spatial
    coords = np.stack(np.unravel_index(np.where(valid, stats.top_pos, 0), spatial), axis=-1) if spatial else None
    return ids, valid, coords


def check_method(scope: Any, method: str) -> None:
    """Refuse a crop method the model cannot do (before pass 1, so no scan is spent on it)."""
    if method not in METHODS:
        raise ConvscopeError(f"receptive field must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "effective" and scope.adapter.framework != "torch":
        raise ConvscopeError(f"the effective receptive field needs input gradients, available for PyTorch models, not "
                             f"{scope.adapter.framework}; use --receptive-field theoretical")


def compute_crops(
    scope: Any,
    result: ScanResult,
    *,
    method: str = "theoretical",
    size: Any = None,
    normalize: str | None = None,
    threshold: float = 0.1,
    batch_size: int = 16,
) -> ScanResult:
    """Fill ``result.crops`` (layer -> ``(C, k, 2 * d)`` int64 boxes, -1 where unknown); returns ``result``."""
    check_method(scope, method)
    if method == "none" or not result.state.ids:
        return result
    prepare = _prepare(scope, size, normalize)
    first = sorted(result.state.ids)[0]
    reader = ExampleReader(prepare)
    probe = reader.read(first, result.state.paths[first]).batch[0]
    graph = trace_graph(scope, probe[None])
    dims = probe.ndim - 1
    for layer, stats in result.state.layers.items():
        ids, valid, coords = _example_arrays(result, layer)
        boxes = np.full((*ids.shape, 2 * dims), -1, dtype=np.int64)
        if coords is None or len(stats.spatial) != dims:
            result.crops[layer] = boxes
            continue
        if method == "theoretical":
            if graph is None:
                continue
            found = theoretical_boxes(scope, graph, layer, coords[valid])
            if found is not None:
                boxes[valid] = found
        else:  # one forward + backward pass per batch of examples: checked against the budget first
            batch = np.broadcast_to(np.float32(0), (max(1, min(batch_size, int(valid.sum()))), *probe.shape))
            scope.check_memory(batch, [layer], mode="gradients",
                               what=f"the effective receptive field of {layer} (a backward pass per {len(batch)} examples)")
            boxes[valid] = _effective(scope, result, layer, ids[valid], np.nonzero(valid)[0], coords[valid], prepare,
                                      threshold, batch_size, dims, reader)
        result.crops[layer] = boxes
    return result


def _effective(
    scope: Any, result: ScanResult, layer: str, ids: np.ndarray, channels: np.ndarray, coords: np.ndarray,
    prepare: dict[str, Any], threshold: float, batch_size: int, dims: int, reader: ExampleReader,
) -> np.ndarray:
    from ..adapters.torch.rf import activation_input_gradients

    out = np.empty((len(ids), 2 * dims), dtype=np.int64)
    cache: dict[str, np.ndarray] = {}
    for start in range(0, len(ids), batch_size):
        part = ids[start:start + batch_size]
        images = []
        for raw in part:
            image_id = bytes(raw).decode("utf-8")
            if image_id not in cache:
                if len(cache) > 256:
                    cache.clear()
                cache[image_id] = reader.read(image_id, result.state.paths[image_id]).batch[0]
            images.append(cache[image_id])
        grads = activation_input_gradients(
            scope.adapter, np.stack(images), layer, channels[start:start + batch_size], coords[start:start + batch_size]
        )
        mag = np.abs(grads).sum(axis=1)  # (E, *spatial)
        for j, m in enumerate(mag):
            peak = float(m.max())
            mask = m >= threshold * peak if peak > 0 else np.ones_like(m, dtype=bool)
            where = np.nonzero(mask)
            out[start + j, :dims] = [int(w.min()) for w in where]
            out[start + j, dims:] = [int(w.max()) + 1 for w in where]
    return out
