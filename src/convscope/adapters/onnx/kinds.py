"""THE ONNX kind table: op type (default domain) -> :data:`convscope.core.kinds.KIND`.

Layer kinds and graph op kinds both derive from it (:func:`convscope.core.kinds.layer_kind_of` /
:func:`~convscope.core.kinds.graph_op_of`). Imports no onnx.
"""

from __future__ import annotations

__all__ = ["onnx_op_kind", "onnx_graph_op"]

_ONNX_KINDS: dict[str, str] = {}
for _kind, _ops in {
    "conv": ("Conv",),
    "conv_transpose": ("ConvTranspose",),
    "pool": ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "GlobalLpPool",
             "SpaceToDepth"),
    "upsample": ("Resize", "Upsample", "DepthToSpace"),
    "concat": ("Concat",),
    "add": ("Add", "Sum"),
    "sub": ("Sub",),
    "mul": ("Mul",),
    "div": ("Div",),
    "join": ("Mean", "Max", "Min"),
    "pad": ("Pad",),
    "crop": ("Slice", "Crop", "CenterCropPad"),
    "norm": ("BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization",
             "LpNormalization", "LRN", "MeanVarianceNormalization", "RMSNormalization"),
    "activation": ("Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu", "Sigmoid", "Tanh", "Softmax",
                   "LogSoftmax", "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Mish", "ThresholdedRelu",
                   "Clip", "Swish"),
    "linear": ("Gemm", "MatMul"),
    "dropout": ("Dropout",),
    "identity": ("Identity", "Cast", "CastLike"),
    "reshape": ("Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Expand", "Tile"),
    "reduce": ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
               "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin"),
}.items():
    for _op in _ops:
        _ONNX_KINDS[_op] = _kind


def onnx_op_kind(op_type: str, domain: str = "") -> str:
    """Layer kind (:data:`convscope.core.layers.KINDS`) of an ONNX op (default domain only)."""
    from ...core.kinds import layer_kind_of

    if domain not in ("", "ai.onnx"):
        return "other"
    return layer_kind_of(_ONNX_KINDS.get(op_type, "other"))


def onnx_graph_op(op_type: str, domain: str = "") -> str:
    """Graph op kind (:data:`convscope.core.graph.OP_KINDS`) of an ONNX op."""
    from ...core.kinds import graph_op_of

    if domain not in ("", "ai.onnx"):
        return "other"
    return graph_op_of(_ONNX_KINDS.get(op_type, "other"))
