"""Errors raised by convscope.

Every user-facing error is a ``ValueError`` subclass (so ``except ValueError`` works) whose
message says what was wrong and what to do about it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "ConvscopeError",
    "LayerNotFoundError",
    "ModelLoadError",
    "UntrustedFileError",
    "ImageInputError",
    "NotAUNet",
    "UnsupportedModelError",
    "close_matches",
]


class ConvscopeError(ValueError):
    """Base class of every error convscope raises on bad input."""


class LayerNotFoundError(ConvscopeError, KeyError):
    """A layer name or pattern matched nothing in the model."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0]) if self.args else ""


class ModelLoadError(ConvscopeError):
    """A model file or factory could not be loaded."""


class UntrustedFileError(ModelLoadError):
    """Loading this file would execute code from it; the user must opt in with ``trust=True``."""


class ImageInputError(ConvscopeError):
    """An input image cannot be read or cannot be made to match the model."""


class UnsupportedModelError(ConvscopeError):
    """The model type or operation is not supported by the requested feature."""


class NotAUNet(ConvscopeError):
    """The model's dataflow graph does not have a U-Net's shape."""


def close_matches(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Return up to ``n`` candidate names closest to ``name`` (difflib ratio, then substring)."""
    pool = list(candidates)
    found = difflib.get_close_matches(name, pool, n=n, cutoff=0.4)
    if len(found) < n:
        low = name.lower()
        for cand in pool:
            if cand not in found and (low in cand.lower() or cand.lower() in low):
                found.append(cand)
                if len(found) >= n:
                    break
    return found
