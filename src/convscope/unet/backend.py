"""The U-Net backend protocol: what a framework provides for U-Net support, and finding it for a model.

A framework plugs in by implementing :class:`UNetBackend` (one method, ``capture_graph``); the
backends are :class:`convscope.adapters.torch.unet.TorchUNetBackend`, the ``.pt2`` and ONNX adapters
themselves, and :class:`convscope.adapters.keras.unet.KerasUNetBackend`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..core.graph import CaptureRequest, Graph, GraphCapture

__all__ = ["UNetBackend", "unet_backend_for"]


@runtime_checkable
class UNetBackend(Protocol):
    """What a framework adapter provides for U-Net support (one forward pass, at most one backward).

    ``capture_graph`` runs the model once on ``batch``, builds the dataflow :class:`Graph`, calls
    ``request(graph)`` (which finds the U-Net and may raise ``NotAUNet``) and returns the values of
    the requested nodes and, when ``request`` names merges, per merge input ``sum |x * dS/dx|``
    from one backward pass of the score ``S`` of the requested output (sum of the predicted class's
    logits, or of channel ``target``, inside ``mask``). A backend without gradients returns
    ``input_x_gradient=None``; the gradient shares are then None.
    """

    def capture_graph(
        self,
        batch: np.ndarray,
        request: Callable[[Graph], CaptureRequest],
        *,
        target: int | None = None,
        mask: Any = None,
    ) -> GraphCapture: ...


def unet_backend_for(obj: Any, device: Any = None) -> UNetBackend:
    """The :class:`UNetBackend` for a backend, a model adapter or a bare model.

    Accepts an object that declares :class:`~convscope.adapters.base.SupportsGraphCapture` (a
    backend, or an adapter that is its own backend: ONNX, ``.pt2``), an adapter that declares
    :class:`~convscope.adapters.base.ProvidesUNetBackend` (torch, Keras), or a bare
    ``torch.nn.Module`` / Keras model (wrapped in its adapter first).

    Raises:
        UnsupportedModelError: no U-Net backend exists for this framework (the message says what would).
    """
    from ..adapters.base import ModelAdapter, ProvidesUNetBackend, SupportsGraphCapture, require

    if isinstance(obj, SupportsGraphCapture):
        return obj
    if isinstance(obj, ProvidesUNetBackend):
        return obj.unet_backend()
    if not isinstance(obj, ModelAdapter):
        from ..adapters import adapter_for

        try:
            adapter = adapter_for(obj, device=device)
        except TypeError:
            adapter = None
        if adapter is not None:
            return unet_backend_for(adapter, device)
    require(obj, "graph", what="U-Net analysis")
    raise AssertionError("unreachable")  # require raised
