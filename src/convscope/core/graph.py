"""A framework-free dataflow graph of one forward pass (numpy only, never imports a framework).

Backends fill it from their own representation (torch: a traced eager forward pass; Keras/ONNX:
their static graphs) so the U-Net finder (:mod:`convscope.core.unet`) works on any of them.

A :class:`Node` is one produced tensor: the module call or functional op that produced it, its
output shape (without the batch axis, channels first) and the nodes whose tensors it consumed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConvscopeError

__all__ = [
    "OP_KINDS",
    "MERGE_OPS",
    "PASS_THROUGH_OPS",
    "Node",
    "Graph",
    "CaptureRequest",
    "GraphCapture",
]

OP_KINDS: tuple[str, ...] = (
    "input",  # a graph input (the model's input batch)
    "conv",
    "conv_transpose",
    "pool",  # max/avg/adaptive pooling, space-to-depth
    "upsample",  # nn.Upsample, F.interpolate, pixel shuffle
    "concat",  # torch.cat / Concatenate
    "stack",  # torch.stack
    "add",  # + / torch.add / Add
    "sub",
    "mul",  # * / torch.mul (attention gates, SE blocks)
    "div",
    "pad",  # F.pad, nn.ZeroPad2d, ...
    "crop",  # slicing / narrow (centre crops)
    "norm",
    "activation",
    "linear",
    "dropout",
    "identity",  # clone, contiguous, dtype casts, nn.Identity
    "reshape",  # view, reshape, permute, flatten, squeeze, expand
    "reduce",  # mean, sum, max over axes
    "other",
)
"""Normalised op kinds of :attr:`Node.op`."""

MERGE_OPS: frozenset[str] = frozenset({"concat", "stack", "add"})
"""Ops that join two or more branches (candidate skip merges)."""

PASS_THROUGH_OPS: frozenset[str] = frozenset({"crop", "pad", "identity", "dropout", "reshape"})
"""Ops that only move, crop, pad or copy values: a skip branch may pass through them unchanged."""


@dataclass(frozen=True)
class Node:
    """One tensor of the forward pass and the op that produced it.

    Attributes:
        id: unique key in the graph (the torch backend uses the node name).
        op: normalised op kind, one of :data:`OP_KINDS`.
        name: unique, human-readable, stable across runs: the module's qualified dotted name for
            module calls (``"enc1.conv"``, ``"pool#2"`` for the third call of a shared module), or
            ``"<enclosing module>.<function>"`` for functional ops (``"up1.cat"``, ``"interpolate#1"``).
        shape: output shape without the batch axis, channels first ``(C, *spatial)``; None if unknown.
        inputs: ids of the nodes whose tensors this op consumed, in argument order.
        module_type: the framework class of a module call (``"Conv2d"``), None for functional ops.
        attrs: free-form details (``{"func": "torch.cat", "dim": 1}``); not compared or hashed.
            The U-Net finder reads ``attrs["stride"]`` (int or per-axis tuple) of ``conv`` /
            ``conv_transpose`` nodes: stride 1 means the op never changes the resolution level, even
            when a valid convolution shrinks the map a lot. Backends should fill it when known.
    """

    id: str
    op: str
    name: str
    shape: tuple[int, ...] | None
    inputs: tuple[str, ...] = ()
    module_type: str | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.op not in OP_KINDS:
            raise ConvscopeError(f"node {self.id!r}: unknown op kind {self.op!r}; use one of {', '.join(OP_KINDS)}")
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "inputs", tuple(self.inputs))

    @property
    def channels(self) -> int | None:
        """``shape[0]`` (channels) if the shape is known and not scalar."""
        return self.shape[0] if self.shape else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "op": self.op,
            "name": self.name,
            "shape": list(self.shape) if self.shape is not None else None,
            "inputs": list(self.inputs),
            "module_type": self.module_type,
        }


@dataclass(frozen=True, eq=False)
class Graph:
    """The dataflow graph of one forward pass.

    Attributes:
        nodes: every node in execution order (a valid topological order: inputs come first).
        input_ids: ids of the graph inputs (op ``"input"``), in argument order.
        output_ids: ids of the nodes whose tensors the model returned, in output order.

    Raises:
        ConvscopeError: duplicate ids or names, an input id that names no earlier node, or
            ``input_ids``/``output_ids`` that are not nodes.
    """

    nodes: tuple[Node, ...]
    input_ids: tuple[str, ...]
    output_ids: tuple[str, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)
    _by_name: dict[str, str] = field(init=False, repr=False, compare=False)
    _consumers: dict[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        nodes = tuple(self.nodes)
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "input_ids", tuple(self.input_ids))
        object.__setattr__(self, "output_ids", tuple(self.output_ids))
        index: dict[str, int] = {}
        by_name: dict[str, str] = {}
        consumers: dict[str, list[str]] = {}
        for position, node in enumerate(nodes):
            if node.id in index:
                raise ConvscopeError(f"graph has two nodes with id {node.id!r}; node ids must be unique")
            if node.name in by_name:
                raise ConvscopeError(f"graph has two nodes named {node.name!r}; suffix repeated calls ('name#1')")
            for source in node.inputs:
                if source not in index:
                    raise ConvscopeError(
                        f"node {node.id!r} consumes {source!r}, which is not an earlier node; "
                        "list nodes in execution order"
                    )
                consumers[source].append(node.id)
            index[node.id] = position
            by_name[node.name] = node.id
            consumers[node.id] = []
        for nid in (*self.input_ids, *self.output_ids):
            if nid not in index:
                raise ConvscopeError(f"graph input/output {nid!r} is not a node of the graph")
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_by_name", by_name)
        # deduplicated, in execution order
        object.__setattr__(self, "_consumers", {k: tuple(dict.fromkeys(v)) for k, v in consumers.items()})

    # -- lookup --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._index

    def node(self, node_id: str) -> Node:
        """The node with this id; unknown ids raise a ``KeyError`` listing the closest ids."""
        try:
            return self.nodes[self._index[node_id]]
        except KeyError:
            from ..errors import LayerNotFoundError, close_matches

            near = close_matches(node_id, self._index)
            raise LayerNotFoundError(
                f"no graph node {node_id!r}" + (f"; closest: {', '.join(near)}" if near else "")
            ) from None

    def by_name(self, name: str) -> Node:
        """The node with this (unique) name."""
        if name not in self._by_name:
            from ..errors import LayerNotFoundError, close_matches

            near = close_matches(name, self._by_name)
            raise LayerNotFoundError(f"no graph node named {name!r}" + (f"; closest: {', '.join(near)}" if near else ""))
        return self.node(self._by_name[name])

    def name_of(self, node_id: str) -> str:
        return self.node(node_id).name

    def position(self, node_id: str) -> int:
        """Execution index of a node (0 for the first)."""
        return self._index[node_id]

    def consumers(self, node_id: str) -> tuple[str, ...]:
        """Ids of the nodes that consumed this node's tensor, in execution order."""
        self.node(node_id)
        return self._consumers[node_id]

    def topological_order(self) -> tuple[str, ...]:
        """Node ids, every node after all of its inputs (the execution order)."""
        return tuple(node.id for node in self.nodes)

    def ancestors(self, node_id: str, *, include_self: bool = False) -> set[str]:
        """Ids of every node this node depends on (transitively)."""
        seen: set[str] = set()
        stack = list(self.node(node_id).inputs)
        while stack:
            nid = stack.pop()
            if nid in seen:
                continue
            seen.add(nid)
            stack.extend(self.nodes[self._index[nid]].inputs)
        if include_self:
            seen.add(node_id)
        return seen

    def descendants(self, node_id: str, *, include_self: bool = False) -> set[str]:
        """Ids of every node that depends on this node (transitively)."""
        seen: set[str] = set()
        stack = list(self.consumers(node_id))
        while stack:
            nid = stack.pop()
            if nid in seen:
                continue
            seen.add(nid)
            stack.extend(self._consumers[nid])
        if include_self:
            seen.add(node_id)
        return seen

    # -- shapes --------------------------------------------------------------------------------
    @property
    def spatial_dims(self) -> int | None:
        """Spatial axes of the first input (``len(shape) - 1``), or None if unknown or 0."""
        if not self.input_ids:
            return None
        shape = self.node(self.input_ids[0]).shape
        if shape is None or len(shape) < 2:
            return None
        return len(shape) - 1

    def spatial(self, node_id: str, dims: int | None = None) -> tuple[int, ...] | None:
        """The spatial size of a node (the last ``dims`` axes of its shape), or None.

        Args:
            node_id: the node.
            dims: number of spatial axes (default :attr:`spatial_dims`). A node is spatial when its
                shape has at least ``dims + 1`` axes (channels first; a stacked ``(K, C, H, W)`` counts).
        """
        dims = self.spatial_dims if dims is None else dims
        shape = self.node(node_id).shape
        if dims is None or dims < 1 or shape is None or len(shape) < dims + 1:
            return None
        return shape[-dims:]

    def select(self, predicate: Callable[[Node], bool]) -> tuple[str, ...]:
        """Ids of the nodes for which ``predicate(node)`` is true, in execution order."""
        return tuple(node.id for node in self.nodes if predicate(node))

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": [node.to_dict() for node in self.nodes],
            "inputs": list(self.input_ids),
            "outputs": list(self.output_ids),
        }

    def __repr__(self) -> str:
        return f"Graph({len(self.nodes)} nodes, inputs={list(self.input_ids)}, outputs={list(self.output_ids)})"


# ------------------------------------------------------------------------------------------------
# what a backend is asked for after building the graph, and what it returns
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaptureRequest:
    """What to keep from a traced forward pass, decided once the graph is known.

    Attributes:
        values: ids of the nodes whose values to return.
        merges: ids of merge nodes (concat/stack/add) whose per-input ``sum |x * grad|`` to compute
            with one backward pass (empty: no backward pass).
        objective: id of the output node whose score is differentiated (default: first output).
    """

    values: frozenset[str] = frozenset()
    merges: tuple[str, ...] = ()
    objective: str | None = None


@dataclass(frozen=True, eq=False)
class GraphCapture:
    """The result of one traced forward pass (plus at most one backward pass).

    Attributes:
        graph: the dataflow graph.
        values: node id -> ``(N, *shape)`` float32 C-contiguous host array (the node's value when it
            was produced, before any later in-place op).
        input_x_gradient: merge id -> one float per entry of ``node.inputs``: ``sum |x_i * dS/dx_i|``
            over the batch and all elements, where ``x_i`` is the i-th merge input as it entered the
            merge and ``S`` the objective score; NaN where the gradient did not reach the merge.
            None when the backend cannot compute gradients.
    """

    graph: Graph
    values: dict[str, np.ndarray]
    input_x_gradient: dict[str, tuple[float, ...]] | None = None


def iter_spatial(graph: Graph, ids: Iterable[str]) -> Iterator[tuple[str, tuple[int, ...]]]:
    """``(id, spatial size)`` of those ``ids`` that are spatial nodes."""
    for nid in ids:
        size = graph.spatial(nid)
        if size is not None:
            yield nid, size


# ------------------------------------------------------------------------------------------------
# layout: which tensors are feature maps (N, C, *spatial)
# ------------------------------------------------------------------------------------------------

_LAYOUT_OPS: frozenset[str] = frozenset({"conv", "conv_transpose", "pool", "upsample"})
"""Ops that read and write ``(N, C, *spatial)``: their outputs are feature maps, and so are their inputs."""

_CHANNEL_NORMS: tuple[str, ...] = ("batchnorm", "instancenorm", "groupnorm", "batch_norm", "instance_norm", "group_norm")
"""Norm module classes / functions whose channel axis is axis 1 (LayerNorm is not among them)."""

_ELEMENTWISE_OPS: frozenset[str] = frozenset(
    {"add", "sub", "mul", "div", "activation", "dropout", "identity", "pad", "crop", "norm", "concat"}
)
"""Ops whose output keeps the layout of their input(s)."""

_UNARY_LAYOUT_PRESERVING: frozenset[str] = frozenset({"activation", "dropout", "identity", "pad", "crop"})
"""Single-input ops through which a consumer's layout requirement is passed back to the producer."""


def _normalised_dim(node: Node) -> int | None:
    """The concat/stack axis of ``node`` counted with the batch axis (0), or None if unknown."""
    dim = node.attrs.get("dim", node.attrs.get("axis"))
    if dim is None or node.shape is None:
        return None
    rank = len(node.shape) + 1
    dim = int(dim)
    return dim + rank if dim < 0 else dim


_AXIS_MOVES = ("permute", "transpose", "movedim", "moveaxis", "swapaxes", "swapdims", "rearrange")


def _moves_axes(node: Node) -> bool:
    """A reshape that reorders axes (permute/transpose): even when the shape is unchanged (an
    ``(N, C, H, W)`` grid with ``C == H == W``) the layout is not."""
    what = f"{node.module_type or ''} {node.attrs.get('func', '')} {node.attrs.get('type', '')}".lower()
    return any(word in what for word in _AXIS_MOVES) or what.split() == ["t"]


def _requires_feature_map(node: Node) -> bool:
    """Whether ``node`` reads its (first) input as ``(N, C, *spatial)``."""
    if node.attrs.get("strided"):
        return False  # x[:, ::2, ::2] subsamples whatever layout it gets
    if node.op in _LAYOUT_OPS:
        return True
    if node.op == "norm":
        kind = f"{node.module_type or ''} {node.attrs.get('func', '')}".lower().replace(".", " ")
        return any(word in kind for word in _CHANNEL_NORMS)
    return False


def feature_map_ids(graph: Graph) -> frozenset[str]:
    """Ids of the nodes whose tensors are known to be feature maps ``(N, C, *spatial)``.

    A tensor's layout is *known* from the ops that make or read it, never from its shape alone:

    * the graph input (the batch is given channels first), and the outputs of convolutions,
      transposed convolutions, pooling and upsampling layers are feature maps; so are the outputs
      of elementwise ops (activations, norms, adds, muls, pads, crops, channel concats) whose
      inputs include a feature map of the same rank (also reductions keeping the axes and unknown
      ops such as ``torch.roll``), a ``stack`` whose new axis comes before the spatial axes, and a
      reshape that leaves the shape unchanged (never a permute, even if the shape looks unchanged);
    * a tensor read by an op that needs ``(N, C, *spatial)`` (a convolution, pooling, upsampling,
      batch/instance/group norm), or concatenated along the channel axis with a feature map of the
      same spatial size, is a feature map too (this is how a reshape of transformer tokens back into
      a grid, ``tokens.transpose(1, 2).reshape(N, C, h, w)``, becomes one), and so is what reaches
      it through activations, dropouts, pads and copies;
    * everything else (token tensors ``(N, L, C)``, attention windows, channels-last grids
      ``(N, H, W, C)``, ``torch.stack(..., dim=-1)``) is not, even when its rank matches.

    A backend may state the layout itself with ``node.attrs["layout"]``: ``"NC*"`` (a feature map)
    or anything else (``"tokens"``, ``"NHWC"``: not one).

    Returns:
        the feature-map node ids (only nodes of rank ``spatial_dims + 1``, or ``+ 2`` for a stack).
    """
    dims = graph.spatial_dims
    if dims is None:
        return frozenset()
    rank = dims + 1
    fmap: set[str] = set()
    nodes = graph.nodes

    def stated(node: Node) -> bool | None:
        layout = node.attrs.get("layout")
        if layout is None:
            return None
        return layout == "NC*"

    def ranked(node: Node) -> bool:
        return node.shape is not None and len(node.shape) == rank

    def forward(node: Node) -> bool:
        said = stated(node)
        if said is not None:
            return said and node.shape is not None and len(node.shape) >= rank
        if node.op == "input":
            return node.id in graph.input_ids[:1] and ranked(node)
        if not ranked(node) and node.op != "stack":
            return False
        inputs = [graph.node(i) for i in node.inputs]
        if node.op in _LAYOUT_OPS:
            if node.attrs.get("strided"):
                return any(i.id in fmap for i in inputs)
            return True
        if node.op in _ELEMENTWISE_OPS:
            return any(i.id in fmap and ranked(i) for i in inputs)
        if node.op == "stack":
            dim = _normalised_dim(node)
            return (
                node.shape is not None
                and len(node.shape) == rank + 1
                and dim is not None
                and dim <= 1
                and all(i.id in fmap for i in inputs)
            )
        if node.op == "reshape":
            return (
                len(inputs) == 1 and inputs[0].id in fmap and inputs[0].shape == node.shape and not _moves_axes(node)
            )
        if node.op in ("reduce", "other"):
            # reductions keeping the axes (x.mean(1, keepdim=True)) and unknown ops on a feature map that
            # keep its rank (torch.roll, grid_sample): still (N, C, *spatial)
            return any(i.id in fmap for i in inputs)
        return False

    for _ in range(4):  # forward, then requirements back, until nothing changes
        before = len(fmap)
        for node in nodes:
            if node.id not in fmap and forward(node):
                fmap.add(node.id)
        for node in reversed(nodes):
            if stated(node) is not None:
                continue
            needs = _requires_feature_map(node)
            first = True
            for source in node.inputs:
                src = graph.node(source)
                if src.id in fmap or not ranked(src) or stated(src) is not None:
                    first = False
                    continue
                wanted = (needs and first) or (
                    node.id in fmap
                    and (
                        (node.op in _UNARY_LAYOUT_PRESERVING and len(node.inputs) == 1)
                        or (
                            node.op == "concat"
                            and _normalised_dim(node) == 1
                            and src.shape is not None
                            and node.shape is not None
                            and src.shape[1:] == node.shape[1:]
                        )
                        or (node.op in ("add", "sub", "mul", "div") and src.shape == node.shape)
                    )
                )
                if wanted:
                    fmap.add(src.id)
                first = False
        if len(fmap) == before:
            break
    return frozenset(fmap)
