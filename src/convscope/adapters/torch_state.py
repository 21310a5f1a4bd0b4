"""Moved to :mod:`convscope.adapters.torch.state`; this module name stays for older imports (same module object)."""

import sys

from .torch import state as _moved

sys.modules[__name__] = _moved
