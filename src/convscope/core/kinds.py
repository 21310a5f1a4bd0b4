"""One kind taxonomy: every framework maps its layers/ops to a *kind* once; layer kinds and graph op
kinds are both derived from that one answer here, so the forms of one model cannot disagree.

Each framework has ONE table from its own class or op names to a :data:`KIND` value
(``adapters/torch/kinds.py`` for eager, TorchScript and ``.pt2`` torch alike;
``adapters/keras/kinds.py`` for Keras; ``adapters/onnx/kinds.py`` for ONNX). A kind is a graph
op kind (:data:`convscope.core.graph.OP_KINDS`) or ``"join"`` (an element-wise join of branches that
is not a skip merge: Keras ``Average``/``Maximum``/``Minimum``/``Dot``, ONNX ``Mean``/``Max``/``Min``).

- :func:`layer_kind_of` gives the coarse :data:`convscope.core.layers.KINDS` of a layer
  (``concat``/``add``/``sub``/``mul``/``div``/``stack``/``join`` are ``"merge"``; ``pad``, ``crop``,
  ``identity``, ``reshape``, ``reduce`` are ``"other"``);
- :func:`graph_op_of` gives the graph op kind (``"join"`` is ``"other"`` there).

No framework is imported here.
"""

from __future__ import annotations

from .graph import OP_KINDS
from .layers import KINDS

__all__ = ["KIND", "OP_KINDS", "LAYER_KINDS", "layer_kind_of", "graph_op_of"]

KIND: tuple[str, ...] = (*OP_KINDS, "join")
"""What a framework table may answer: a graph op kind, or ``"join"``."""

LAYER_KINDS: tuple[str, ...] = KINDS
"""The coarse layer kinds (:data:`convscope.core.layers.KINDS`)."""

_LAYER_OF: dict[str, str] = {
    "conv": "conv",
    "conv_transpose": "conv_transpose",
    "linear": "linear",
    "norm": "norm",
    "activation": "activation",
    "pool": "pool",
    "upsample": "upsample",
    "dropout": "dropout",
    "concat": "merge",
    "stack": "merge",
    "add": "merge",
    "sub": "merge",
    "mul": "merge",
    "div": "merge",
    "join": "merge",
}


def layer_kind_of(kind: str, *, container: bool = False) -> str:
    """Layer kind (:data:`LAYER_KINDS`) of a framework table's answer ``kind``.

    Args:
        kind: a :data:`KIND` value (anything else counts as ``"other"``).
        container: the layer holds sub-layers; an otherwise unknown layer is then ``"container"``.
    """
    layer = _LAYER_OF.get(kind, "other")
    if layer == "other" and container:
        return "container"
    return layer


def graph_op_of(kind: str) -> str:
    """Graph op kind (:data:`OP_KINDS`) of a framework table's answer ``kind``."""
    return kind if kind in OP_KINDS else "other"
