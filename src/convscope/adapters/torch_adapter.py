"""Moved to :mod:`convscope.adapters.torch.adapter`; this module name stays for older imports (same module object)."""

import sys

from .torch import adapter as _moved

sys.modules[__name__] = _moved
