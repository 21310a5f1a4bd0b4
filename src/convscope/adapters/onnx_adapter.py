"""Moved to :mod:`convscope.adapters.onnx.adapter`; this module name stays for older imports (same module object)."""

import sys

from .onnx import adapter as _moved

sys.modules[__name__] = _moved
