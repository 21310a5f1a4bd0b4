"""Moved to :mod:`convscope.adapters.keras.grad`; this module name stays for older imports (same module object)."""

import sys

from .keras import grad as _moved

sys.modules[__name__] = _moved
