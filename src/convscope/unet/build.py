"""Building a :class:`~convscope.unet.flow.UNetFlow`: find the U-Net in one forward pass and capture its
flow and skip metrics (at most one backward pass, for the gradient shares).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..core.graph import CaptureRequest, Graph
from ..core.unet import UNetStructure, find_unet
from ..core.view import MiddleView
from ..errors import ConvscopeError
from .backend import UNetBackend
from .flow import UNetFlow
from .metrics import SkipSums, metrics_from_sums, skip_sums

__all__ = ["build_unet_flow"]


def _needed_nodes(structure: UNetStructure, graph: Graph) -> set[str]:
    ids = {structure.input, structure.output, structure.bottleneck_output}
    for lvl in structure.levels:
        ids.update(n for n in (lvl.encoder_output, lvl.decoder_output) if n is not None)
    for skip in structure.skips:
        ids.update((skip.source, skip.skip_input, skip.decoder_input, skip.merge))
        ids.update(graph.node(skip.merge).inputs)
    return ids


def build_unet_flow(
    backend: UNetBackend,
    batch: np.ndarray,
    display_image: np.ndarray | None = None,
    *,
    target: int | None = None,
    mask: Any = None,
    adapter: Any = None,
    chunks: Sequence[tuple[int, int]] | None = None,
    on_chunk: Callable[[int, UNetStructure, Graph, dict[str, np.ndarray]], None] | None = None,
    view: MiddleView | None = None,
) -> UNetFlow:
    """Find the U-Net in one forward pass of ``batch`` and capture its flow and skip metrics.

    With ``chunks`` (``[(start, stop), ...]`` covering the batch, for independent samples such as
    the slices of a volume fed to a 2D model: :meth:`convscope.Scope.plan_slices`), each chunk gets
    its own forward (and backward) pass; the skip metrics are those of the whole batch (their raw
    sums add up over chunks), the flow keeps the captured values of the first chunk only (the
    figures show sample 0), and ``on_chunk(start, structure, graph, values)`` sees every chunk's
    values before they are dropped, to keep what a caller needs of them.

    Args:
        backend: a :class:`UNetBackend` (see :func:`unet_backend_for`).
        batch: ``(N, C, *spatial)`` float32 input, channels first (1 to 3 spatial axes).
        display_image: ``(H, W, 3)`` uint8 picture of sample 0 (or ``(N, H, W, 3)``), for the figure.
        target: output channel for the gradient share's score (default: the predicted class).
        mask: ``(*spatial)`` 0/1 region for the score (default: every pixel).
        adapter: the model adapter, kept for :meth:`UNetFlow.cam` (default: derived from a torch backend).
        chunks / on_chunk: see above (None: one pass over the whole batch).
        view: how a 3D batch's maps are drawn (``PreparedInput.view``: a volume's axial middle plane in
            radiological view); None: the middle slice along the first spatial axis.

    Returns:
        :class:`UNetFlow`.

    Raises:
        NotAUNet: the model is not U-Net shaped (the message says what was found).
        ConvscopeError: bad batch, display image, target or mask.
    """
    arr = np.asarray(batch)
    if arr.ndim not in (3, 4, 5) or not np.issubdtype(arr.dtype, np.floating):
        raise ConvscopeError(
            f"batch must be a float (N, C, *spatial) array with 1 to 3 spatial axes, got shape {arr.shape} {arr.dtype}; "
            "prepare images with scope.prepare(image)"
        )
    display = None
    if display_image is not None:
        display = np.asarray(display_image)
        if display.ndim == 4:
            display = display[0]
        if display.dtype != np.uint8 or display.ndim != 3 or display.shape[2] != 3:
            raise ConvscopeError(
                f"display_image must be an (H, W, 3) uint8 picture, got shape {display.shape} {display.dtype}"
            )
    found: dict[str, UNetStructure] = {}

    def request(graph: Graph) -> CaptureRequest:
        structure = find_unet(graph)
        found["structure"] = structure
        merges = tuple(dict.fromkeys(s.merge for s in structure.skips))
        return CaptureRequest(values=frozenset(_needed_nodes(structure, graph)), merges=merges, objective=structure.objective or structure.output)

    ranges = list(chunks) if chunks else [(0, int(arr.shape[0]))]
    if ranges[0][0] != 0 or ranges[-1][1] != arr.shape[0] or any(a[1] != b[0] for a, b in zip(ranges, ranges[1:])):
        raise ConvscopeError(f"chunks {ranges[:3]}... must cover the batch of {arr.shape[0]} samples in order")
    per_sample_mask = mask is not None and np.ndim(mask) == arr.ndim - 1 and np.shape(mask)[0] == arr.shape[0]
    first: Any = None
    totals: list[SkipSums] | None = None
    for start, stop in ranges:
        part = arr if len(ranges) == 1 else arr[start:stop]
        part_mask = np.asarray(mask)[start:stop] if per_sample_mask and len(ranges) > 1 else mask
        capture = backend.capture_graph(part, request, target=target, mask=part_mask)
        structure = found.get("structure") or find_unet(capture.graph)
        sums = skip_sums(structure, capture.graph, capture.values, capture.input_x_gradient)
        totals = sums if totals is None else [a.plus(b) for a, b in zip(totals, sums)]
        if on_chunk is not None:
            on_chunk(start, structure, capture.graph, capture.values)
        if first is None:
            first = (capture, structure, part)
        del capture
    capture, structure, kept = first
    assert totals is not None
    metrics = metrics_from_sums(structure, capture.graph, totals)
    return UNetFlow(structure, capture.graph, capture.values, metrics, batch=kept, display=display, adapter=adapter,
                    view=view)
