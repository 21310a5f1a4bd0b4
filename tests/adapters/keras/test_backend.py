"""The Keras suite runs on the backend KERAS_BACKEND names (the Makefile runs it for torch, tensorflow, jax)."""

from __future__ import annotations

import os

import pytest

keras = pytest.importorskip("keras")


def test_the_requested_backend_is_the_one_in_use():
    assert keras.backend.backend() == os.environ.get("KERAS_BACKEND", "torch")
