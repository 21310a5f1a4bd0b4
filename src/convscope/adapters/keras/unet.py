"""U-Net support for Keras 3 functional models: the :class:`convscope.unet.backend.UNetBackend` protocol.

The dataflow :class:`~convscope.core.graph.Graph` comes from the functional graph's nodes (the
inbound nodes Keras records for every call), walked in ONE eager forward pass that enters nested
functional sub-models, so blocks built as sub-models are seen layer by layer:

- node ids and names: the qualified layer / op name (``"enc1_conv"``, ``"block.conv"``), ``#k``
  for the k-th extra call of a shared layer, ``":j"`` for output ``j > 0`` of a multi-output op;
  the graph input is named after the model's ``keras.Input``;
- op kinds: ``Concatenate`` -> concat, ``Add`` -> add (merges); ``UpSampling*``, ``Conv*Transpose``,
  resizing -> upsampling; pooling and strided convolutions -> downsampling (found from the sizes);
- shapes and values are channels first ``(C, *spatial)`` / ``(N, C, *spatial)`` float32, whatever
  the model's ``data_format``.

Gradient shares (``sum |x * dS/dx|`` per merge input) come from ONE VJP taken by
:func:`convscope.adapters.keras.grad.vjp_through` (``torch.autograd``, ``tf.GradientTape`` or
``jax.vjp``) at every merge's output, split into the merge's inputs and summed by
:func:`convscope.core.merges.merge_input_sums`, the same code the torch and ``.pt2`` backends use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ...core.graph import MERGE_OPS, CaptureRequest, Graph, GraphCapture, Node
from ...errors import ConvscopeError
from .graph import class_names, op_kind, walk

if TYPE_CHECKING:
    from .adapter import KerasAdapter

__all__ = ["KerasUNetBackend"]


class _Value:
    """A backend tensor travelling through the walk together with its graph node id."""

    __slots__ = ("tensor", "node_id")

    def __init__(self, tensor: Any, node_id: str) -> None:
        self.tensor = tensor
        self.node_id = node_id


class KerasUNetBackend:
    """The Keras implementation of :class:`convscope.unet.backend.UNetBackend`.

    Args:
        adapter: the :class:`~convscope.adapters.keras.adapter.KerasAdapter` of a functional model
            (or a Sequential with a known input shape). The model is never changed.
    """

    framework = "keras"

    def __init__(self, adapter: KerasAdapter) -> None:
        self.adapter = adapter

    @property
    def gradients_supported(self) -> bool:
        """True on every backend Keras gradients run on (torch, TensorFlow, JAX)."""
        import keras

        return keras.backend.backend() in ("torch", "tensorflow", "jax")

    def capture_graph(
        self,
        batch: np.ndarray,
        request: Callable[[Graph], CaptureRequest],
        *,
        target: int | None = None,
        mask: Any = None,
    ) -> GraphCapture:
        """One forward pass and one VJP (:func:`convscope.adapters.keras.grad.vjp_through`).

        Args:
            batch: ``(N, C, *spatial)`` float32, channels first.
            request: called once with the finished graph; says which node values to return, which
                merges to measure and the objective output (may raise ``NotAUNet``).
            target: output channel whose logits make the score (default: the predicted class).
            mask: ``(*spatial)`` or ``(N, *spatial)`` 0/1 region of the score (default: all pixels).

        Returns:
            :class:`GraphCapture`: node values ``(N, *shape)`` float32 channels first, and per merge
            input ``sum |x * dS/dx|`` (:func:`convscope.core.merges.merge_input_sums` of the gradient
            at each merge's output), on the torch, TensorFlow and JAX backends alike.
        """
        from keras import tree

        from ...core.merges import merge_input_sums, nan_sums, skip_cotangent
        from .._capture import check_batch, forward_failed
        from .adapter import call_with_training, run_in_call_context
        from .grad import vjp_through

        adapter = self.adapter
        root = adapter.needs_graph("find a U-Net in")
        arr = check_batch(batch)
        ref = root.inputs[0]
        history = getattr(ref, "_keras_history", None)
        input_name = history.operation.name if history is not None and history.operation is not None else "input"
        built: dict[str, Any] = {}  # the last trace's graph, layers and merge parts (JAX traces twice)

        def forward(x: Any, tap: Any) -> tuple[Any, Any]:
            nodes: list[Node] = []
            values: dict[str, Any] = {}
            layers: dict[str, Any] = {}
            parts: dict[str, tuple[Any, ...]] = {}
            nodes_by_id: dict[str, Node] = {}

            def add(node_id: str, kind: str, op: Any, tensor: Any, inputs: list[str], attrs: dict[str, Any]) -> _Value:
                nodes.append(
                    Node(
                        id=node_id, op=kind, name=node_id, shape=self._host_shape(tensor, op), inputs=tuple(inputs),
                        module_type=type(op).__name__ if op is not None and "Layer" in class_names(op) else None,
                        attrs=attrs,
                    )
                )
                values[node_id] = tensor
                layers[node_id] = op
                nodes_by_id[node_id] = nodes[-1]
                return _Value(tensor, node_id)

            def call(site: Any, args: tuple, kwargs: dict) -> Any:
                kind = op_kind(site.op)
                inputs = [v.node_id for v in tree.flatten((args, kwargs)) if isinstance(v, _Value)]
                unwrap = lambda item: item.tensor if isinstance(item, _Value) else item  # noqa: E731
                outputs = call_with_training(site.op, tree.map_structure(unwrap, args), tree.map_structure(unwrap, kwargs), False)
                flat = tree.flatten(outputs)
                if kind in MERGE_OPS and flat:
                    flat = [tap(site.key, flat[0]), *flat[1:]]  # the gradient at the merge's output
                    merge_parts = self._merge_parts(kind, site.op, [values[i] for i in inputs])
                    if merge_parts is not None:
                        parts[site.key] = merge_parts
                attrs = {"type": type(site.op).__name__, "call_index": site.call_index}
                for attr in ("axis", "strides", "pool_size", "size", "data_format"):
                    value = getattr(site.op, attr, None)
                    if value is not None and isinstance(value, (int, str, tuple, list)):
                        attrs[attr] = value
                if kind == "concat" and "axis" in attrs and inputs and values[inputs[0]] is not None:
                    # the finder reads ``dim`` in host axes (channels first), like torch's and ONNX's graphs
                    attrs["dim"] = self._host_axis(site.op, int(attrs["axis"]), len(values[inputs[0]].shape))
                out_kind = kind
                if kind == "upsample" and type(site.op).__name__ in ("Resize", "Resizing") and flat:
                    out_kind = _resize_kind(self._host_shape(flat[0], site.op), [nodes_by_id[i].shape for i in inputs[:1]])
                wrapped = [
                    add(site.key if j == 0 else f"{site.key}:{j}", out_kind, site.op, tensor, inputs, attrs)
                    for j, tensor in enumerate(flat)
                ]
                return tree.pack_sequence_as(outputs, wrapped)

            start = add(input_name, "input", None, x, [], {})

            def run(inputs: Any, training: bool) -> list[Any]:
                del training  # always inference
                return walk(root, [start], call, enter=lambda _op, _name: True)

            outputs = run_in_call_context(run, x, False)
            output_ids = tuple(dict.fromkeys(v.node_id for v in outputs if isinstance(v, _Value)))
            graph = Graph(nodes=tuple(nodes), input_ids=(input_name,), output_ids=output_ids)
            if "wanted" not in built:
                built["wanted"] = request(graph)
            wanted = built["wanted"]
            objective = wanted.objective or graph.output_ids[0]
            if objective not in values:
                raise ConvscopeError(
                    f"objective {objective!r} is not a node of the graph; outputs: {', '.join(graph.output_ids)}"
                )
            merges = [m for m in wanted.merges if m in graph]
            keep = set(wanted.values) | {i for m in merges for i in graph.node(m).inputs}
            built.update(graph=graph, layers=layers, parts=parts, merges=merges, objective=objective)
            return values[objective], {nid: values[nid] for nid in keep if nid in values}

        def cotangent_of(out: np.ndarray) -> np.ndarray:
            objective = built["objective"]
            op = built["layers"].get(objective)
            host = adapter._model_to_host(out, op)
            weights = skip_cotangent(host, target, mask, what=f"the objective output {objective!r}")
            return adapter._host_to_model(weights, op)

        x = adapter.to_model_layout(arr)
        with adapter.preserved_state():
            try:
                result = vjp_through(forward, x, cotangent_of)
            except ConvscopeError:
                raise
            except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                raise forward_failed(exc, tuple(arr.shape), hint="Check the image size and channels") from exc
        graph, layers, parts = built["graph"], built["layers"], built["parts"]
        wanted = built["wanted"]
        host: dict[str, np.ndarray] = {nid: adapter.to_host(v, layers.get(nid))[0] for nid, v in result.aux.items()}
        gradients: dict[str, tuple[float, ...]] = {}
        for merge in built["merges"]:
            node = graph.node(merge)
            grad = result.gradients.get(merge)
            op = layers.get(merge)
            if grad is None or merge not in parts:
                gradients[merge] = nan_sums(len(node.inputs))
                continue
            inputs = [host.get(i) for i in node.inputs]
            gradients[merge] = merge_input_sums(adapter._model_to_host(grad, op), inputs, parts[merge])
        kept = {nid: host[nid] for nid in graph.topological_order() if nid in set(wanted.values) and nid in host}
        return GraphCapture(graph=graph, values=kept, input_x_gradient=gradients)

    def _merge_parts(self, kind: str, op: Any, inputs: list[Any]) -> tuple[Any, ...] | None:
        """How each input of a Keras merge reads the output gradient, in host (channels-first) axes."""
        from ...core.merges import add_parts, concat_parts, stack_parts

        first = self.adapter.channels_first(op)
        shapes = [tuple(int(s) for s in t.shape) for t in inputs]
        if not shapes:
            return None
        ndim = len(shapes[0])

        def host_axis(axis: int) -> int:
            return self._host_axis(op, axis, ndim)

        def host_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
            if first or len(shape) < 3:
                return shape
            return (shape[0], shape[-1], *shape[1:-1])

        if kind == "concat":
            axis = int(getattr(op, "axis", -1))
            return concat_parts([s[axis % ndim] for s in shapes], host_axis(axis))
        if kind == "stack":
            if not first and ndim >= 2:
                return None  # a new axis among channels-last axes: no host equivalent, left NaN
            return stack_parts(len(shapes), int(getattr(op, "axis", 0)) % (ndim + 1))
        return add_parts([host_shape(s) for s in shapes])

    def _host_axis(self, op: Any, axis: int, ndim: int) -> int:
        """A Keras axis of a rank-``ndim`` tensor (batch included) in host (channels-first) order: a
        channels-last ``axis=-1`` concat is the host's channel axis 1; spatial axes shift by one."""
        axis %= ndim
        if self.adapter.channels_first(op) or ndim < 3 or axis == 0:
            return axis
        return 1 if axis == ndim - 1 else axis + 1

    def _host_shape(self, tensor: Any, op: Any) -> tuple[int, ...] | None:
        shape = tuple(int(s) for s in tensor.shape[1:]) if hasattr(tensor, "shape") else None
        if shape is None:
            return None
        if len(shape) >= 2 and not self.adapter.channels_first(op):
            shape = (shape[-1], *shape[:-1])
        return shape


def _resize_kind(out_shape: tuple[int, ...] | None, in_shapes: list[tuple[int, ...] | None]) -> str:
    """A resize that shrinks its input is a downsampling ("pool"), one that enlarges it an upsampling."""
    if not out_shape or not in_shapes or not in_shapes[0] or len(in_shapes[0]) != len(out_shape):
        return "upsample"
    return "pool" if int(np.prod(out_shape[1:])) < int(np.prod(in_shapes[0][1:])) else "upsample"

