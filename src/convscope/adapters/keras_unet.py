"""U-Net support for Keras 3 functional models: the :class:`convscope.unet_flow.UNetBackend` protocol.

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

Gradient shares (``sum |x * dS/dx|`` per merge input) need a backward pass, which Keras does not
offer backend-independently: they are computed with ``torch.autograd`` when the Keras backend is
torch, and are None (``input_x_gradient=None``) on the JAX and TensorFlow backends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.graph import MERGE_OPS, CaptureRequest, Graph, GraphCapture, Node
from ..errors import ConvscopeError
from .keras_graph import class_names, op_kind, walk

if TYPE_CHECKING:
    from .keras_adapter import KerasAdapter

__all__ = ["KerasUNetBackend"]


class _Value:
    """A backend tensor travelling through the walk together with its graph node id."""

    __slots__ = ("tensor", "node_id")

    def __init__(self, tensor: Any, node_id: str) -> None:
        self.tensor = tensor
        self.node_id = node_id


class KerasUNetBackend:
    """The Keras implementation of :class:`convscope.unet_flow.UNetBackend`.

    Args:
        adapter: the :class:`~convscope.adapters.keras_adapter.KerasAdapter` of a functional model
            (or a Sequential with a known input shape). The model is never changed.
    """

    framework = "keras"

    def __init__(self, adapter: KerasAdapter) -> None:
        self.adapter = adapter

    @property
    def gradients_supported(self) -> bool:
        """True when the Keras backend is torch (gradient shares need ``torch.autograd``)."""
        import keras

        return keras.backend.backend() == "torch"

    def capture_graph(
        self,
        batch: np.ndarray,
        request: Callable[[Graph], CaptureRequest],
        *,
        target: int | None = None,
        mask: Any = None,
    ) -> GraphCapture:
        """One forward pass (plus one backward pass on the torch backend if ``request`` names merges).

        Args:
            batch: ``(N, C, *spatial)`` float32, channels first.
            request: called once with the finished graph; says which node values to return, which
                merges to measure and the objective output (may raise ``NotAUNet``).
            target: output channel whose logits make the score (default: the predicted class).
            mask: ``(*spatial)`` or ``(N, *spatial)`` 0/1 region of the score (default: all pixels).

        Returns:
            :class:`GraphCapture`: node values ``(N, *shape)`` float32 channels first, and per merge
            input ``sum |x * dS/dx|`` (None when the backend is not torch).
        """
        import contextlib

        from keras import tree

        from .keras_adapter import call_with_training, run_in_call_context
        from .keras_graph import no_grad

        adapter = self.adapter
        root = adapter._needs_graph("find a U-Net in")
        arr = np.asarray(batch)
        if arr.ndim < 3 or not np.issubdtype(arr.dtype, np.number):
            raise ConvscopeError(
                f"batch must be a numeric (N, C, *spatial) array (channels first), got shape {arr.shape} {arr.dtype}"
            )
        with_grad = self.gradients_supported
        nodes: list[Node] = []
        values: dict[str, Any] = {}
        layers: dict[str, Any] = {}
        merge_aliases: dict[str, list[Any]] = {}
        nodes_by_id: dict[str, Node] = {}

        def add(node_id: str, kind: str, op: Any, tensor: Any, inputs: list[str], attrs: dict[str, Any]) -> _Value:
            shape = self._host_shape(tensor, op)
            nodes.append(
                Node(
                    id=node_id, op=kind, name=node_id, shape=shape, inputs=tuple(inputs),
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

            def unwrap(item: Any) -> Any:
                if not isinstance(item, _Value):
                    return item
                if with_grad and kind in MERGE_OPS:
                    # a fresh alias per merge input: its gradient is the one that flows through the merge
                    alias = item.tensor.view_as(item.tensor)
                    merge_aliases.setdefault(site.key, []).append(alias)
                    return alias
                return item.tensor

            args2 = tree.map_structure(unwrap, args)
            kwargs2 = tree.map_structure(unwrap, kwargs)
            outputs = call_with_training(site.op, args2, kwargs2, False)
            flat = tree.flatten(outputs)
            attrs = {"type": type(site.op).__name__, "call_index": site.call_index}
            for attr in ("axis", "strides", "pool_size", "size", "data_format"):
                value = getattr(site.op, attr, None)
                if value is not None and isinstance(value, (int, str, tuple, list)):
                    attrs[attr] = value
            out_kind = kind
            if kind == "upsample" and type(site.op).__name__ in ("Resize", "Resizing") and flat:
                out_kind = _resize_kind(self._host_shape(flat[0], site.op), [nodes_by_id[i].shape for i in inputs[:1]])
            wrapped = [
                add(site.key if j == 0 else f"{site.key}:{j}", out_kind, site.op, tensor, inputs, attrs)
                for j, tensor in enumerate(flat)
            ]
            return tree.pack_sequence_as(outputs, wrapped)

        x = adapter.to_model_layout(arr)
        if with_grad:
            x.requires_grad_(True)
        ref = root.inputs[0]
        history = getattr(ref, "_keras_history", None)
        input_name = history.operation.name if history is not None and history.operation is not None else "input"
        grad_context = contextlib.nullcontext() if with_grad else no_grad()
        with adapter.preserved_state(), grad_context:
            start = add(input_name, "input", None, x, [], {})

            def run(inputs: Any, training: bool) -> list[Any]:
                del training  # always inference
                return walk(root, [start], call, enter=lambda _op, _name: True)

            try:
                outputs = run_in_call_context(run, x, False)
            except ConvscopeError:
                raise
            except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                text = str(exc).strip()
                first = text.splitlines()[0] if text else type(exc).__name__
                raise ConvscopeError(
                    f"the model's forward pass failed on an input of shape {tuple(arr.shape)} (channels first): "
                    f"{first}. Check the image size and channels"
                ) from exc
            output_ids = tuple(dict.fromkeys(v.node_id for v in outputs if isinstance(v, _Value)))
            graph = Graph(nodes=tuple(nodes), input_ids=(input_name,), output_ids=output_ids)
            wanted = request(graph)
            gradients: dict[str, tuple[float, ...]] | None = None
            if with_grad:
                gradients = self._merge_gradients(graph, wanted, values, merge_aliases, target, mask)
            kept: dict[str, np.ndarray] = {}
            for nid in wanted.values:
                if nid in values:
                    kept[nid] = adapter.to_host(_detached(values[nid]), layers.get(nid))[0]
        values.clear()
        merge_aliases.clear()
        return GraphCapture(graph=graph, values=kept, input_x_gradient=gradients)

    def _host_shape(self, tensor: Any, op: Any) -> tuple[int, ...] | None:
        shape = tuple(int(s) for s in tensor.shape[1:]) if hasattr(tensor, "shape") else None
        if shape is None:
            return None
        if len(shape) >= 2 and not self.adapter.channels_first(op):
            shape = (shape[-1], *shape[:-1])
        return shape

    def _merge_gradients(
        self,
        graph: Graph,
        wanted: CaptureRequest,
        values: dict[str, Any],
        aliases: dict[str, list[Any]],
        target: int | None,
        mask: Any,
    ) -> dict[str, tuple[float, ...]]:
        """One backward pass (torch backend): per merge input ``sum |x_i * dS/dx_i|`` through the merge."""
        import torch

        merges = [m for m in wanted.merges if m in graph]
        if not merges:
            return {}
        objective = wanted.objective or graph.output_ids[0]
        if objective not in values:
            raise ConvscopeError(f"objective {objective!r} is not a node of the graph; outputs: {', '.join(graph.output_ids)}")
        score = self._score(values[objective], graph.node(objective), target, mask)
        flat: list[Any] = []
        slots: dict[str, list[int]] = {}
        for merge in merges:
            slots[merge] = []
            for alias in aliases.get(merge, []):
                slots[merge].append(len(flat))
                flat.append(alias)
        grads: list[Any] = [None] * len(flat)
        usable = [i for i, t in enumerate(flat) if t.requires_grad]
        if score.requires_grad and usable:
            got = torch.autograd.grad(score, [flat[i] for i in usable], allow_unused=True)
            for i, g in zip(usable, got):
                grads[i] = g
        result: dict[str, tuple[float, ...]] = {}
        for merge in merges:
            node = graph.node(merge)
            idx = slots[merge]
            if len(idx) != len(node.inputs):
                result[merge] = tuple(float("nan") for _ in node.inputs)
                continue
            sums = []
            for i in idx:
                g = grads[i]
                if g is None:
                    sums.append(float("nan"))
                else:
                    sums.append(float((flat[i].detach().to(torch.float64) * g.to(torch.float64)).abs().sum().item()))
            result[merge] = tuple(sums)
        return result

    def _score(self, output: Any, node: Node, target: int | None, mask: Any) -> Any:
        """Sum of the predicted class's logits (or channel ``target``) over ``mask``, channels first."""
        from .torch_graph import objective_score

        out = output
        if out.dim() >= 3 and not self.adapter.channels_first(None):
            out = out.movedim(-1, 1)
        return objective_score(out, target, mask, what=f"the objective output {node.name!r}")


def _resize_kind(out_shape: tuple[int, ...] | None, in_shapes: list[tuple[int, ...] | None]) -> str:
    """A resize that shrinks its input is a downsampling ("pool"), one that enlarges it an upsampling."""
    if not out_shape or not in_shapes or not in_shapes[0] or len(in_shapes[0]) != len(out_shape):
        return "upsample"
    return "pool" if int(np.prod(out_shape[1:])) < int(np.prod(in_shapes[0][1:])) else "upsample"


def _detached(tensor: Any) -> Any:
    detach = getattr(tensor, "detach", None)
    return detach() if callable(detach) else tensor
