"""U-Net support on a graph-capturing backend (the finder itself is :mod:`convscope.core.unet`).

- :mod:`.backend`: the :class:`~.backend.UNetBackend` protocol and :func:`~.backend.unet_backend_for`;
- :mod:`.metrics`: per-skip energy and gradient shares (:class:`~.metrics.SkipMetrics`);
- :mod:`.flow`: the view objects (:class:`~.flow.UNetFlow`, :class:`~.flow.LevelView`, :class:`~.flow.UNetCam`);
- :mod:`.build`: :func:`~.build.build_unet_flow` (one forward pass, at most one backward).

``convscope.unet_flow`` re-exports these names. Importing this package imports no framework.
"""

from __future__ import annotations

from .backend import UNetBackend, unet_backend_for
from .build import build_unet_flow
from .flow import LevelView, UNetCam, UNetFlow
from .metrics import SkipMetrics, SkipMetricsList, skip_metrics, skip_table

__all__ = [
    "UNetBackend",
    "unet_backend_for",
    "SkipMetrics",
    "SkipMetricsList",
    "skip_metrics",
    "skip_table",
    "LevelView",
    "UNetFlow",
    "UNetCam",
    "build_unet_flow",
]
