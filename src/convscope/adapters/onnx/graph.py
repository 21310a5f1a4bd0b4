"""The dataflow graph of an ONNX model (the U-Net backend protocol) from ONE onnxruntime run.

Nodes are the model input and every layer of :class:`~convscope.adapters.onnx.adapter.OnnxAdapter`;
shapes come from ONNX shape inference when it determines them all. ONNX Runtime has no autograd,
so no merge gradient shares. onnx is imported lazily inside functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import UnsupportedModelError
from .adapter import _attributes, _dims
from .kinds import onnx_graph_op

if TYPE_CHECKING:
    from ...core.graph import GraphCapture
    from .adapter import OnnxAdapter

__all__ = ["graph_skeleton", "static_shapes", "capture_graph"]


def input_node_id(adapter: OnnxAdapter) -> str:
    """The graph id of the model input (the tensor name, prefixed when a layer has that name)."""
    name = adapter._inputs[0].name if adapter._inputs else "input"
    return name if name not in adapter._layers else f"input:{name}"


def graph_skeleton(adapter: OnnxAdapter) -> list[tuple[str, str, str, tuple[str, ...], str]]:
    """``(id, op, tensor, input ids, op_type)`` per graph node, in execution order (input first).

    Nodes are the model input and every layer; an input id is the layer (or model input) that
    produced a floating-point tensor this node reads (constants and shape arithmetic are left out).
    """
    if len(adapter._inputs) != 1:
        raise UnsupportedModelError(
            f"{adapter.name} takes {len(adapter._inputs)} inputs; the U-Net view needs a model with exactly one input"
        )
    input_id = input_node_id(adapter)
    by_tensor: dict[str, str] = {adapter._inputs[0].name: input_id}
    rows: list[tuple[str, str, str, tuple[str, ...], str]] = [(input_id, "input", adapter._inputs[0].name, (), "Input")]
    for entry in adapter._layers.values():
        node = entry.node
        sources = [by_tensor[name] for name in node.input if name in by_tensor]
        for attr in node.attribute:  # subgraphs reading outer tensors
            subs = ([attr.g] if attr.HasField("g") else []) + list(attr.graphs)
            for sub in subs:
                for inner in sub.node:
                    sources.extend(by_tensor[name] for name in inner.input if name in by_tensor)
        for out in node.output:
            if out:
                by_tensor[out] = entry.name
        rows.append((entry.name, onnx_graph_op(node.op_type, node.domain), entry.output,
                     tuple(dict.fromkeys(sources)), node.op_type))
    return rows


def static_shapes(adapter: OnnxAdapter, batch_shape: Sequence[int]) -> dict[str, tuple[int, ...]] | None:
    """Shapes of every layer output for an input of ``batch_shape`` (channels first, convscope's
    layout, whatever the model's) from ONNX shape inference alone (no run), or None when some
    shape stays unknown."""
    import onnx

    probe = onnx.ModelProto()
    probe.CopyFrom(adapter._proto)
    del probe.graph.value_info[:]
    tensor = next(vi for vi in probe.graph.input if vi.name == adapter._inputs[0].name).type.tensor_type
    batch_shape = adapter._model_shape(batch_shape)
    if len(tensor.shape.dim) != len(batch_shape):
        return None
    for dim, size in zip(tensor.shape.dim, batch_shape):
        dim.Clear()
        dim.dim_value = int(size)
    try:
        inferred = onnx.shape_inference.infer_shapes(probe, check_type=False, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001
        return None
    known: dict[str, tuple[int, ...]] = {}
    for vi in (*inferred.graph.value_info, *inferred.graph.output):
        dims = _dims(vi.type.tensor_type) if vi.type.HasField("tensor_type") else None
        if dims is not None and all(d is not None for d in dims):
            known[vi.name] = tuple(int(d) for d in dims)  # type: ignore[arg-type]
    shapes: dict[str, tuple[int, ...]] = {}
    for entry in adapter._layers.values():
        if entry.output not in known:
            return None
        shapes[entry.name] = known[entry.output]
    return shapes


def capture_graph(adapter: OnnxAdapter, batch: np.ndarray, request: Any, *, target: int | None = None, mask: Any = None) -> GraphCapture:
    """The U-Net backend protocol: the dataflow graph plus node values from ONE onnxruntime run.

    Shapes come from ONNX shape inference for ``batch``'s shape when it determines them all;
    then only the values ``request(graph)`` asks for are fetched. Otherwise every layer output is
    fetched in the one run (for the shapes) and the requested ones are kept.

    ``input_x_gradient`` is None: ONNX Runtime has no autograd, so the merge gradient shares of
    the U-Net view are not available for ONNX models. ``target``/``mask`` only select the
    objective of those gradients and are ignored here.
    """
    from ...core.graph import CaptureRequest, Graph, GraphCapture, Node

    del target, mask
    arr = np.asarray(batch)
    rows = adapter.graph_skeleton()
    shapes = adapter.static_shapes(arr.shape)
    values_all: dict[str, np.ndarray] | None = None
    if shapes is None:
        fetched, _ = adapter.run_tensors(arr, [row[2] for row in rows[1:]])
        values_all = {row[0]: np.asarray(fetched[row[2]]) for row in rows[1:]}
        shapes = {nid: tuple(int(s) for s in value.shape) for nid, value in values_all.items()}
    shapes[rows[0][0]] = tuple(int(s) for s in arr.shape)
    nodes = []
    for nid, op, tensor, inputs, op_type in rows:
        full = shapes.get(nid)
        attrs: dict[str, Any] = {"tensor": tensor}
        entry = adapter._layers.get(nid)
        if entry is not None:
            attrs.update(_graph_attrs(entry.node, op))
        nodes.append(Node(id=nid, op=op, name=nid, shape=tuple(full[1:]) if full else None, inputs=inputs,
                          module_type=None if op == "input" else op_type, attrs=attrs))
    out_ids = []
    producers = {row[2]: row[0] for row in rows}
    for out in adapter._output_names:
        if out in producers:
            out_ids.append(producers[out])
    graph = Graph(nodes=tuple(nodes), input_ids=(rows[0][0],), output_ids=tuple(dict.fromkeys(out_ids)))
    decided = request(graph) if callable(request) else request
    if decided is None:
        decided = CaptureRequest()
    wanted = [nid for nid in graph.topological_order() if nid in set(decided.values)]
    values: dict[str, np.ndarray] = {}
    if values_all is None:
        tensors = {row[0]: row[2] for row in rows}
        need = [nid for nid in wanted if nid != rows[0][0]]
        if need:
            fetched, _ = adapter.run_tensors(arr, [tensors[nid] for nid in need])
            for nid in need:
                values[nid] = np.array(fetched[tensors[nid]], dtype=np.float32, copy=True, order="C")
    else:
        for nid in wanted:
            if nid in values_all:
                values[nid] = np.array(values_all[nid], dtype=np.float32, copy=True, order="C")
    if rows[0][0] in wanted:
        values[rows[0][0]] = np.array(arr, dtype=np.float32, copy=True, order="C")
    return GraphCapture(graph=graph, values=values, input_x_gradient=None)


def _graph_attrs(node: Any, op: str) -> dict[str, Any]:
    """The attributes the U-Net finder reads: ``stride`` of convolutions (ONNX's default is 1 on every
    axis) and ``dim`` of concatenations."""
    if op in ("conv", "conv_transpose"):
        strides = _attributes(node).get("strides")
        return {"stride": tuple(int(v) for v in strides) if strides else 1}
    if op in ("concat", "stack"):
        axis = _attributes(node).get("axis")
        return {} if axis is None else {"dim": int(axis)}
    return {}
