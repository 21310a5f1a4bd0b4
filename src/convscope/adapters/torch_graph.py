"""Moved to :mod:`convscope.adapters.torch.graph`; this module name stays for older imports (same module object)."""

import sys

from .torch import graph as _moved

sys.modules[__name__] = _moved
