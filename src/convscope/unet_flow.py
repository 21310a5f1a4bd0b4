"""U-Net anatomy and flow (older single-module name): everything lives in :mod:`convscope.unet`.

``convscope.unet_flow.TorchUNetBackend`` resolves lazily (no torch import at module import time).
"""

from __future__ import annotations

from typing import Any

from .unet.backend import UNetBackend, unet_backend_for
from .unet.flow import LevelView, UNetFlow, build_unet_flow
from .unet.metrics import SkipMetrics, skip_metrics

__all__ = [
    "UNetBackend",
    "SkipMetrics",
    "LevelView",
    "UNetFlow",
    "build_unet_flow",
    "unet_backend_for",
    "skip_metrics",
]


def __getattr__(name: str) -> Any:
    """``convscope.unet_flow.TorchUNetBackend`` without importing torch at module import time."""
    if name == "TorchUNetBackend":
        from .adapters.torch_graph import TorchUNetBackend

        return TorchUNetBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
