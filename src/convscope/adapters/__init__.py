"""Framework adapters: the only place torch, keras or onnx are imported (lazily)."""

from __future__ import annotations

import sys
from typing import Any

from .base import ModelAdapter

__all__ = ["ModelAdapter", "adapter_for"]


def adapter_for(model: Any, *, device: str | None = None) -> ModelAdapter:
    """Pick the adapter for ``model``: a torch ``nn.Module``, a Keras 3 model, an ONNX model, an adapter,
    or a model a registered plugin handles (:mod:`convscope.adapters.registry`, entry point group
    ``convscope.adapters``)."""
    if isinstance(model, ModelAdapter):
        return model
    # Keras first: with the torch backend a keras.Model is also a torch.nn.Module
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(model, keras.Model):
        from .keras.adapter import KerasAdapter

        return KerasAdapter(model)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.jit.ScriptModule):
        from .torch.files import TorchScriptAdapter

        return TorchScriptAdapter(model, device=device)
    if torch is not None and isinstance(model, torch.export.ExportedProgram):
        from .torch.export import ExportedProgramAdapter

        return ExportedProgramAdapter(model)
    if torch is not None and isinstance(model, torch.nn.Module):
        from .torch.adapter import TorchAdapter

        return TorchAdapter(model, device=device)
    onnx = sys.modules.get("onnx")
    if onnx is not None and isinstance(model, onnx.ModelProto):
        from .onnx.adapter import OnnxAdapter

        return OnnxAdapter(model)
    from .registry import plugin_for_model

    plugin = plugin_for_model(model)
    if plugin is not None:
        return plugin.adapter(model, device=device)
    raise TypeError(
        f"convscope cannot inspect a {type(model).__module__}.{type(model).__name__}; give a torch.nn.Module, "
        f"a Keras 3 model, an ONNX model, or a model file/spec to convscope.load() (other frameworks plug in "
        f"through the 'convscope.adapters' entry point group)"
    )
