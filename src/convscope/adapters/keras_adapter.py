"""Moved to :mod:`convscope.adapters.keras.adapter`; this module name stays for older imports (same module object)."""

import sys

from .keras import adapter as _moved

sys.modules[__name__] = _moved
