"""Moved to :mod:`convscope.adapters.keras.graph`; this module name stays for older imports (same module object)."""

import sys

from .keras import graph as _moved

sys.modules[__name__] = _moved
