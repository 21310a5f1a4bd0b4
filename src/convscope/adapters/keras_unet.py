"""Moved to :mod:`convscope.adapters.keras.unet`; this module name stays for older imports (same module object)."""

import sys

from .keras import unet as _moved

sys.modules[__name__] = _moved
