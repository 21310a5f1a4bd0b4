"""Keras streams on every backend: memory during a streamed capture does not grow with the layer count."""

from __future__ import annotations

import pytest

keras = pytest.importorskip("keras")

from tests.test_streaming_adapters import DEPTH, SHAPE, check  # noqa: E402

pytestmark = pytest.mark.skipif(not __import__("pathlib").Path("/proc/self/statm").exists(), reason="needs /proc")


def test_keras_adapter_streams() -> None:
    keras = pytest.importorskip("keras")
    from convscope.adapters.keras_adapter import KerasAdapter

    inputs = keras.Input(SHAPE[2:] + SHAPE[1:2])
    x = inputs
    for i in range(DEPTH):
        x = keras.layers.Conv2D(16, 1, name=f"c{i}")(x)
    adapter = KerasAdapter(keras.Model(inputs, x))
    check(adapter, [f"c{i}" for i in range(DEPTH)])
