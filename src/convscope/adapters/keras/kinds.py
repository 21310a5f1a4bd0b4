"""THE Keras kind table: layer / ``keras.ops`` class name -> :data:`convscope.core.kinds.KIND`.

Layer kinds and graph op kinds both derive from it (:func:`convscope.core.kinds.layer_kind_of`,
:func:`~convscope.core.kinds.graph_op_of`); no Keras import is needed to classify.
"""

from __future__ import annotations

from typing import Any

__all__ = ["keras_kind", "layer_kind", "op_kind"]

# THE Keras kind table: class name (looked up along the MRO, so subclasses inherit) -> core.kinds.KIND,
# for layers and keras.ops operations alike; layer kinds and graph op kinds both derive from it.
_KERAS_KINDS: dict[str, str] = {}
for _kind, _names in {
    "conv_transpose": "BaseConvTranspose ConvTranspose",
    "conv": "BaseConv BaseDepthwiseConv BaseSeparableConv Conv DepthwiseConv SeparableConv",
    "linear": "Dense EinsumDense",
    "norm": "BatchNormalization LayerNormalization GroupNormalization UnitNormalization RMSNormalization "
    "SpectralNormalization",
    "activation": "Activation ReLU LeakyReLU PReLU ELU Softmax Relu Sigmoid Tanh Gelu Silu LeakyRelu",
    "pool": "BasePooling BaseGlobalPooling BaseAdaptivePooling MaxPool AveragePool",
    "upsample": "UpSampling1D UpSampling2D UpSampling3D Resize Resizing",
    "dropout": "Dropout AlphaDropout GaussianDropout GaussianNoise SpatialDropout1D SpatialDropout2D SpatialDropout3D",
    "concat": "Concatenate",
    "stack": "Stack",
    "add": "Add",
    "sub": "Subtract",
    "mul": "Multiply",
    "div": "Divide TrueDivide",
    "join": "Merge",
    "pad": "Pad ZeroPadding1D ZeroPadding2D ZeroPadding3D",
    "crop": "Cropping1D Cropping2D Cropping3D GetItem Slice",
    "identity": "Identity Cast",
    "reshape": "Reshape Flatten Permute Transpose Squeeze ExpandDims",
    "reduce": "Mean Sum Max",
}.items():
    for _n in _names.split():
        _KERAS_KINDS[_n] = _kind


def keras_kind(op: Any) -> str:
    """:data:`convscope.core.kinds.KIND` of a Keras layer or operation (first class in its MRO in the table)."""
    for cls in type(op).__mro__:
        kind = _KERAS_KINDS.get(cls.__name__)
        if kind is not None:
            return kind
    return "other"


def layer_kind(layer: Any) -> str:
    """Coarse :data:`convscope.core.layers.KINDS` category of a Keras layer."""
    from ...core.kinds import layer_kind_of
    from .graph import is_container

    return layer_kind_of(keras_kind(layer), container=is_container(layer))


def op_kind(op: Any) -> str:
    """Normalised graph op kind (:data:`convscope.core.graph.OP_KINDS`) of a Keras operation."""
    from ...core.kinds import graph_op_of

    return graph_op_of(keras_kind(op))
