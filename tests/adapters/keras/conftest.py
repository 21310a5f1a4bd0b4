"""Keras tests run on the torch backend (set before keras is imported)."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")
