"""Moved to :mod:`convscope.adapters.torch.kinds`; this module name stays for older imports (same module object)."""

import sys

from .torch import kinds as _moved

sys.modules[__name__] = _moved
