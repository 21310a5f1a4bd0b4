"""THE torch kind table: ``torch.nn`` class name -> :data:`convscope.core.kinds.KIND`.

Used by the eager adapter (through the first ``torch.nn`` class in a module's MRO, so subclasses of
``nn.Conv2d`` are convolutions), the op tracer, TorchScript (``original_name``) and ``.pt2``
(``nn_module_stack`` class names) alike, so an ``nn.RMSNorm`` is a ``norm`` in all of them.

The table is derived once from ``torch.nn`` itself: a class's kind is that of the ``torch.nn``
source file defining it (``modules/pooling.py`` -> pool...), with the exceptions below. torch is
imported lazily (on the first lookup).
"""

from __future__ import annotations

import functools
from typing import Any

from ...core.kinds import graph_op_of, layer_kind_of

__all__ = ["torch_kind_of_name", "torch_module_kind", "layer_kind_of_module", "layer_kind_of_name", "torch_nn_class"]

_BY_FILE = {
    "conv": "conv",
    "pooling": "pool",
    "upsampling": "upsample",
    "batchnorm": "norm",
    "instancenorm": "norm",
    "normalization": "norm",
    "activation": "activation",
    "linear": "linear",
    "dropout": "dropout",
    "padding": "pad",
    "flatten": "reshape",
    "pixelshuffle": "upsample",
    "channelshuffle": "reshape",
    "fold": "reshape",
}

_BY_NAME = {
    "Identity": "identity",
    "PixelUnshuffle": "pool",
    "MaxUnpool1d": "upsample",
    "MaxUnpool2d": "upsample",
    "MaxUnpool3d": "upsample",
    "MultiheadAttention": "other",
    "Softmax2d": "activation",
    "Bilinear": "linear",
    "LazyLinear": "linear",
}

_CONTAINERS = {"Module", "Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict", "Container"}


@functools.lru_cache(maxsize=1)
def _table() -> dict[str, str]:
    import torch.nn as nn

    table: dict[str, str] = {}
    for name, cls in vars(nn).items():
        if not isinstance(cls, type) or not issubclass(cls, nn.Module) or name in _CONTAINERS:
            continue
        if name in _BY_NAME:
            table[name] = _BY_NAME[name]
            continue
        if issubclass(cls, nn.modules.conv._ConvTransposeNd):
            table[name] = "conv_transpose"
            continue
        source = cls.__module__.rsplit(".", 1)[-1]
        table[name] = _BY_FILE.get(source, "other")
    return table


def torch_kind_of_name(type_name: str) -> str | None:
    """Kind of a ``torch.nn`` class given by name (``"Conv2d"`` or ``"torch.nn.modules.conv.Conv2d"``),
    or None when the name is not a ``torch.nn`` layer class."""
    short = str(type_name).rsplit(".", 1)[-1]
    return _table().get(short)


def torch_nn_class(module: Any) -> type | None:
    """The first class of ``module``'s MRO defined in ``torch.nn`` (not Module or a container)."""
    for cls in type(module).__mro__:
        if cls.__name__ in _CONTAINERS or cls is object:
            continue
        if cls.__module__.startswith(("torch.nn.", "torch.ao.nn.")):
            return cls
    return None


def torch_module_kind(module: Any) -> str:
    """Kind (:data:`convscope.core.kinds.KIND`) of a module: that of its first ``torch.nn`` class."""
    cls = torch_nn_class(module)
    if cls is None:
        return "other"
    return _table().get(cls.__name__) or _BY_FILE.get(cls.__module__.rsplit(".", 1)[-1], "other")


def layer_kind_of_module(module: Any) -> str:
    """Layer kind of an eager module (``"container"`` for an unknown module holding sub-modules)."""
    return layer_kind_of(torch_module_kind(module), container=len(getattr(module, "_modules", {})) > 0)


def layer_kind_of_name(type_name: str, *, is_leaf: bool = True) -> str:
    """Layer kind from a class name (TorchScript, ``.pt2``); unknown: ``"other"`` or ``"container"``."""
    return layer_kind_of(torch_kind_of_name(type_name) or "other", container=not is_leaf)


def graph_op_of_module(module: Any) -> str:
    """Graph op kind of a leaf module."""
    return graph_op_of(torch_module_kind(module))
