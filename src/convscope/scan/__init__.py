"""Dataset scans: every channel's statistics and its top-k dataset examples (see :meth:`convscope.Scope.scan`).

Framework-free; the engines reach the model only through its adapter.
"""

from .result import ChannelView, ScanError, ScanResult, ScanState

__all__ = ["ScanResult", "ScanState", "ChannelView", "ScanError"]
