"""Moved to :mod:`convscope.adapters.torch.files`; this module name stays for older imports (same module object)."""

import sys

from .torch import files as _moved

sys.modules[__name__] = _moved
