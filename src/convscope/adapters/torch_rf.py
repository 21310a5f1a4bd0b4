"""Moved to :mod:`convscope.adapters.torch.rf`; this module name stays for older imports (same module object)."""

import sys

from .torch import rf as _moved

sys.modules[__name__] = _moved
