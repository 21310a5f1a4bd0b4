"""Self-contained HTML reports: model summary, kernels, activations, health, U-Net flow.

``build_report(scope, images, out)`` writes ``out/index.html`` plus its images and assets
(no CDN, works from ``file://``) and ``manifest.json``. Jinja2 is imported when a report is built,
not when this package is imported.
"""

from __future__ import annotations

from .builder import DEFAULT_REPORT_KINDS, build_report, select_report_layers

__all__ = ["build_report", "select_report_layers", "DEFAULT_REPORT_KINDS"]
