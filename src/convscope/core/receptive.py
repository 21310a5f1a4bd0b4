"""Theoretical receptive fields from a dataflow :class:`~convscope.core.graph.Graph` (numpy only).

For a position of a node's output, the input pixels that can influence it are found by walking
the graph backwards from that node, mapping an interval per spatial axis through every op:

* convolution / pooling with known geometry (kernel ``k``, stride ``s``, padding ``p``, dilation
  ``d``): output ``o`` reads input ``o*s - p + j*d`` for taps ``j < k``; the box is the first and
  last such index inside the input (taps that land in the padding are not counted, so a dilated
  kernel at the border gives the exact extent);
* transposed convolution: output ``o`` is written by inputs ``i`` with ``o = i*s - p + j*d``;
* ops that keep the spatial size (activations, normalisation, adds, concatenations, dropout...) are
  pointwise. This is exact for BatchNorm in eval mode; the statistics of Group/Instance/LayerNorm,
  which span the whole map, are not counted;
* an op without known geometry that upsamples by an integer factor ``f`` is taken as bilinear
  (``[floor((a+.5)/f-.5), floor((b+.5)/f-.5)+1]``, a superset of nearest), one that downsamples by
  ``f`` as a ``k = s = f`` pool, a crop/pad of another size as centred; anything else reads the
  whole input;
* an input whose spatial size is all ones (a globally pooled gate, as in squeeze-excitation) carries
  no position and is not followed.

Where several paths reach the input (skips), the box is the union's bounding box. Boxes are
clipped to the input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from .graph import Graph, Node
from .layers import LayerInfo

__all__ = ["Geometry", "receptive_boxes", "geometry_from_layers"]


@dataclass(frozen=True)
class Geometry:
    """Kernel geometry of a convolution or pooling op, per spatial axis."""

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    transposed: bool = False


def _axes(value: int | Iterable[int] | None, dims: int, default: int) -> tuple[int, ...]:
    """Per-axis values from ``LayerInfo`` (None -> ``default``, int -> repeated, sequence -> last ``dims``)."""
    if value is None:
        return (default,) * dims
    if isinstance(value, int):
        return (int(value),) * dims
    seq = tuple(int(v) for v in value)
    if len(seq) == 1:
        return seq * dims
    return seq[-dims:]


def geometry_from_layers(layers: Mapping[str, LayerInfo] | list[LayerInfo]) -> Callable[[Node, int], Geometry | None]:
    """A geometry lookup for graph nodes from the adapter's :class:`LayerInfo` (by module name)."""
    infos = {info.name: info for info in layers} if isinstance(layers, list) else dict(layers)

    def lookup(node: Node, dims: int) -> Geometry | None:
        if node.op not in ("conv", "conv_transpose", "pool"):
            return None
        name = str(node.attrs.get("module") or node.name.split("#")[0])
        info = infos.get(name)
        if info is None or info.kernel_size is None or isinstance(info.kernel_size, str):
            return None
        kernel = _axes(info.kernel_size, dims, 1)
        stride = _axes(info.stride, dims, 1) if info.stride is not None else (kernel if node.op == "pool" else (1,) * dims)
        dilation = _axes(info.dilation, dims, 1)
        padding_spec = info.padding
        if isinstance(padding_spec, str):
            padding = tuple((k - 1) * d // 2 for k, d in zip(kernel, dilation)) if padding_spec == "same" else (0,) * dims
        else:
            padding = _axes(padding_spec, dims, 0)
        return Geometry(kernel, stride, padding, dilation, transposed=node.op == "conv_transpose" or info.transposed)

    return lookup


def _through(
    node: Node, lo: np.ndarray, hi: np.ndarray, out_size: tuple[int, ...], in_size: tuple[int, ...],
    geometry: Geometry | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Map ``[lo, hi]`` (``(E, d)`` inclusive, output coords) to the input coords of ``node``."""
    if geometry is not None:
        return _kernel_span(lo, hi, in_size, geometry)
    out_a = np.asarray(out_size)
    in_a = np.asarray(in_size)
    if np.array_equal(out_a, in_a):
        return lo, hi
    new_lo, new_hi = np.empty_like(lo), np.empty_like(hi)
    for axis, (o, i) in enumerate(zip(out_size, in_size)):
        a, b = lo[:, axis], hi[:, axis]
        if o == i:
            new_lo[:, axis], new_hi[:, axis] = a, b
        elif node.op in ("crop", "pad"):
            off = (i - o) // 2
            new_lo[:, axis], new_hi[:, axis] = a + off, b + off
        elif o > i and o % i == 0:  # upsampled by f: bilinear (superset of nearest)
            f = o // i
            new_lo[:, axis] = np.floor((a + 0.5) / f - 0.5).astype(np.int64)
            new_hi[:, axis] = np.floor((b + 0.5) / f - 0.5).astype(np.int64) + 1
        elif i > o and i % o == 0:  # downsampled by f: a k = s = f pool
            f = i // o
            new_lo[:, axis], new_hi[:, axis] = a * f, b * f + f - 1
        else:
            new_lo[:, axis], new_hi[:, axis] = 0, i - 1
    return new_lo, new_hi


def _kernel_span(lo: np.ndarray, hi: np.ndarray, in_size: tuple[int, ...], g: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Exact bounding box of the in-bounds input indices a conv/pool (or transposed conv) reads for
    outputs ``[lo, hi]``: per kernel tap ``j`` the first and last output whose tap lands inside."""
    new_lo = np.full_like(lo, _EMPTY)
    new_hi = np.full_like(hi, -_EMPTY)
    for axis, size in enumerate(in_size):
        k, s, p, d = g.kernel[axis], g.stride[axis], g.padding[axis], g.dilation[axis]
        a, b = lo[:, axis], hi[:, axis]
        best_lo = np.full(a.shape, _EMPTY, dtype=np.int64)
        best_hi = np.full(a.shape, -_EMPTY, dtype=np.int64)
        for j in range(k):
            if g.transposed:  # output o = i*s - p + j*d
                i_lo = np.maximum(-((-(a + p - j * d)) // s), 0)
                ok = (i_lo * s - p + j * d <= b) & (i_lo <= size - 1)
                best_lo = np.where(ok, np.minimum(best_lo, i_lo), best_lo)
                i_hi = np.minimum((b + p - j * d) // s, size - 1)
                ok = (i_hi * s - p + j * d >= a) & (i_hi >= 0)
                best_hi = np.where(ok, np.maximum(best_hi, i_hi), best_hi)
            else:  # input i = o*s - p + j*d
                o = np.maximum(a, -((-(p - j * d)) // s))
                i = o * s - p + j * d
                ok = (o <= b) & (i <= size - 1)
                best_lo = np.where(ok, np.minimum(best_lo, i), best_lo)
                o = np.minimum(b, (size - 1 + p - j * d) // s)
                i = o * s - p + j * d
                ok = (o >= a) & (i >= 0)
                best_hi = np.where(ok, np.maximum(best_hi, i), best_hi)
        new_lo[:, axis], new_hi[:, axis] = best_lo, best_hi
    return new_lo, new_hi


_EMPTY = np.int64(1) << 40
"""Sentinel bound of an empty interval (``lo = +_EMPTY``, ``hi = -_EMPTY``)."""


def receptive_boxes(
    graph: Graph,
    node_id: str,
    positions: np.ndarray,
    geometry: Callable[[Node, int], Geometry | None],
) -> np.ndarray:
    """Input boxes of positions of one node's output.

    Args:
        graph: the traced graph (shapes channels first, without the batch axis).
        node_id: the node whose output positions are asked about.
        positions: ``(E, d)`` int positions in that node's spatial grid.
        geometry: ``lookup(node, d)`` -> :class:`Geometry` or None (see :func:`geometry_from_layers`).

    Returns:
        ``(E, 2 * d)`` int64 half-open boxes ``(lo_0, ..., lo_{d-1}, hi_0, ..., hi_{d-1})`` in input
        pixels, clipped to the input (``(y0, x0, y1, x1)`` in 2D).
    """
    dims = graph.spatial_dims
    if dims is None:
        raise ValueError("the graph's input has no spatial axes")
    pos = np.asarray(positions, dtype=np.int64).reshape(-1, dims)
    reach: dict[str, tuple[np.ndarray, np.ndarray]] = {node_id: (pos.copy(), pos.copy())}
    stop = graph.position(node_id)
    for node in reversed(graph.nodes[: stop + 1]):
        if node.id not in reach or node.op == "input":
            continue
        lo, hi = reach[node.id]
        out_size = graph.spatial(node.id)
        geom = geometry(node, dims)
        for source in dict.fromkeys(node.inputs):
            in_size = graph.spatial(source)
            if in_size is None or out_size is None:
                continue
            if all(v == 1 for v in in_size) and not all(v == 1 for v in out_size):
                continue  # a broadcast gate: no position to follow
            a, b = _through(node, lo, hi, out_size, in_size, geom)
            empty = np.any(lo > hi, axis=1) | np.any(a > b, axis=1)
            upper = np.asarray(in_size) - 1
            a, b = np.clip(a, 0, upper), np.clip(b, 0, upper)
            a[empty], b[empty] = _EMPTY, -_EMPTY
            if source in reach:
                a0, b0 = reach[source]
                a, b = np.minimum(a, a0), np.maximum(b, b0)
            reach[source] = (a, b)
    start = graph.input_ids[0]
    if start not in reach:
        size = np.asarray(graph.spatial(start) or (1,) * dims)
        lo, hi = np.zeros_like(pos), np.broadcast_to(size - 1, pos.shape).copy()
    else:
        lo, hi = reach[start]
    empty = np.any(lo > hi, axis=1)
    lo, hi = lo.copy(), hi.copy()
    lo[empty], hi[empty] = 0, -1  # no input reaches it: an empty box
    return np.concatenate([lo, hi + 1], axis=1).astype(np.int64)
