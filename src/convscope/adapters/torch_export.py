"""Moved to :mod:`convscope.adapters.torch.export`; this module name stays for older imports (same module object)."""

import sys

from .torch import export as _moved

sys.modules[__name__] = _moved
