"""Walking a Keras 3 functional graph: one forward pass through nested sub-models, op kinds.

Keras is imported lazily inside functions; nothing here depends on the Keras backend (torch, JAX or
TensorFlow), except :func:`no_grad`, which only turns torch's autograd off when it is the backend.

A functional model (``keras.Model(inputs, outputs)``, or a ``Sequential`` that knows its input
shape) is a DAG of Keras ``Node`` objects, one per call of an operation. :func:`walk` visits those
nodes in execution order and, where asked, *enters* nested functional sub-models instead of calling
them, so that the layers inside them are visited too, each one once per call, in ONE pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CallSite",
    "class_names",
    "graph_of",
    "execution_nodes",
    "walk",
    "no_grad",
    "op_kind",
    "is_container",
]


def class_names(obj: Any) -> set[str]:
    """Names of every class in ``type(obj).__mro__`` (lets us classify without private imports)."""
    return {cls.__name__ for cls in type(obj).__mro__}


def graph_of(layer: Any) -> Any | None:
    """The Keras ``Function`` holding ``layer``'s own graph, or None.

    A ``Functional`` model is its own graph; a ``Sequential`` keeps one in ``_functional`` once it
    knows its input shape; subclassed models and ordinary layers have none.
    """
    names = class_names(layer)
    if "Functional" in names and hasattr(layer, "_nodes_by_depth"):
        return layer
    if "Sequential" in names:
        functional = getattr(layer, "_functional", None)
        if functional is not None and hasattr(functional, "_nodes_by_depth"):
            return functional
    return None


def is_container(layer: Any) -> bool:
    """True for models (Functional, Sequential, subclassed) and layers that own sub-layers."""
    if "Model" in class_names(layer):
        return True
    return bool(sublayers(layer))


def sublayers(layer: Any) -> list[Any]:
    """Direct sub-layers of ``layer`` in tracking order (graph order for functional models).

    Input layers are left out: they hold no weights and produce the model input unchanged.
    """
    if graph_of(layer) is not None or "Sequential" in class_names(layer):
        children = list(getattr(layer, "layers", []))
    else:
        flatten = getattr(layer, "_flatten_layers", None)
        children = list(flatten(include_self=False, recursive=False)) if flatten is not None else []
    return [child for child in children if "InputLayer" not in class_names(child)]


def execution_nodes(function: Any) -> list[Any]:
    """The call nodes of a Keras ``Function`` in the order Keras executes them (inputs left out)."""
    nodes = []
    by_depth = function._nodes_by_depth
    for depth in sorted(by_depth, reverse=True):
        for node in by_depth[depth]:
            if node.operation is None or node.is_input:
                continue
            nodes.append(node)
    return nodes


@dataclass(frozen=True)
class CallSite:
    """One call of an operation met while walking.

    Attributes:
        op: the Keras operation (a layer, a nested model, or a ``keras.ops`` operation).
        node: the Keras ``Node`` recording the call in its graph.
        name: qualified name, ``"conv1"`` at the top level, ``"block.conv1"`` inside sub-model ``block``.
        call_index: 0 for the first call of ``op`` in the walk, 1 for the second (shared layers)...
    """

    op: Any
    node: Any
    name: str
    call_index: int

    @property
    def key(self) -> str:
        """Unique per call: ``name`` for the first call, ``name#1``, ``name#2``... for later ones."""
        from .._capture import call_key

        return call_key(self.name, self.call_index)


OpCall = Callable[[CallSite, tuple, dict], Any]
"""``call(site, args, kwargs) -> outputs``: computes (or describes) one operation call."""


def walk(
    function: Any,
    inputs: list[Any],
    call: OpCall,
    *,
    enter: Callable[[Any, str], bool],
    prefix: str = "",
    counts: dict[int, int] | None = None,
    on_container: Callable[[CallSite, list[Any], list[Any]], list[Any]] | None = None,
) -> list[Any]:
    """Run ``call`` over the nodes of ``function`` in execution order, entering sub-models.

    Args:
        function: a Keras ``Function`` (a functional model or a Sequential's ``_functional``).
        inputs: one value per ``function.inputs`` (backend tensors when executing, anything when
            describing the graph).
        call: computes one operation call from the values of its arguments.
        enter: ``enter(op, qualified_name)``: True to walk inside a nested functional sub-model
            instead of handing its call to ``call``.
        prefix: qualified-name prefix of this graph's layers (``"block."``). A sub-model called
            twice is walked twice with the same prefix; its layers then get ``call_index`` 1.
        counts: ``id(op)`` -> calls seen so far (shared between nesting levels).
        on_container: ``on_container(site, inner_inputs, inner_outputs) -> outputs`` after a
            sub-model was walked (may convert values at the boundary); default: its outputs as is.

    Returns:
        One value per ``function.outputs``.
    """
    from keras import tree

    counts = {} if counts is None else counts
    values: dict[int, Any] = {id(ref): value for ref, value in zip(function.inputs, inputs)}
    nodes = execution_nodes(function)
    # a value is dropped after its last consumer ran, so memory follows the live tensors only
    last_use: dict[int, int] = {}
    for position, node in enumerate(nodes):
        for ref in node.input_tensors:
            last_use[id(ref)] = position
    keep = {id(ref) for ref in function.outputs}
    for position, node in enumerate(nodes):
        if any(id(x) not in values for x in node.input_tensors):
            continue  # not computable from these inputs (Keras skips these too)
        op = node.operation
        index = counts.get(id(op), 0)
        counts[id(op)] = index + 1
        site = CallSite(op=op, node=node, name=prefix + op.name, call_index=index)
        args, kwargs = node.arguments.fill_in(values)
        inner = graph_of(op)
        if inner is not None and enter(op, site.name):
            inner_inputs = tree.flatten(args[0]) if args else tree.flatten(list(kwargs.values())[:1])
            outputs: Any = walk(
                inner, inner_inputs, call, enter=enter, prefix=site.name + ".", counts=counts, on_container=on_container
            )
            if on_container is not None:
                outputs = on_container(site, inner_inputs, outputs)
        else:
            outputs = call(site, args, kwargs)
        for ref, value in zip(node.outputs, tree.flatten(outputs)):
            if id(ref) in last_use or id(ref) in keep:
                values[id(ref)] = value
        for ref in node.input_tensors:
            if last_use.get(id(ref)) == position and id(ref) not in keep:
                values.pop(id(ref), None)
    return [values[id(ref)] for ref in function.outputs]


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Switch autograd off while capturing when the Keras backend is torch (no-op otherwise)."""
    import keras

    if keras.backend.backend() == "torch":
        import torch

        with torch.no_grad():
            yield
    else:
        yield


# the kind table lives in .kinds; re-exported for the walkers and older imports
from .kinds import keras_kind, layer_kind, op_kind  # noqa: E402,F401
