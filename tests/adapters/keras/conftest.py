"""Keras tests run on KERAS_BACKEND (torch unless set; the Makefile also runs them on tensorflow and jax)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

HERE = Path(__file__).resolve().parent

# Keras's torch backend calls np.array(tensor) the numpy-1 way; numpy 2 warns on every conversion.
KERAS_NUMPY_WARNING = "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.filterwarnings(KERAS_NUMPY_WARNING))
