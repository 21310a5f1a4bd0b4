"""U-Net anatomy and flow, split by role: :mod:`.backend` (the protocol and how a backend is found),
:mod:`.metrics` (energy and gradient shares per skip), :mod:`.flow` (the view objects and building).

``convscope.unet_flow`` is the older single-module name for all of it.
"""

from __future__ import annotations

from .backend import UNetBackend, unet_backend_for
from .flow import LevelView, UNetFlow, build_unet_flow
from .metrics import SkipMetrics, skip_metrics

__all__ = ["UNetBackend", "SkipMetrics", "LevelView", "UNetFlow", "build_unet_flow", "unet_backend_for", "skip_metrics"]
