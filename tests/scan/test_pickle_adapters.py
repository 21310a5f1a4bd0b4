"""Scopes of every framework pickle (Ray actors and multiprocessing pools receive them)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest


def test_onnx_scope_pickles(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import convscope as cs
    from tests.scan.nets import TinyNet
    from tests.adapters.onnx.nets import export_onnx

    path = export_onnx(TinyNet().eval(), tmp_path / "tiny.onnx", (1, 3, 8, 8))
    scope = cs.load(path)
    x = np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32)
    name = scope.select()[-1]
    before = scope.activations(x, [name])[name].data  # builds an inference session
    again = pickle.loads(pickle.dumps(scope))
    np.testing.assert_array_equal(again.activations(x, [name])[name].data, before)


def test_keras_scope_pickles():
    pytest.importorskip("keras")
    import convscope as cs
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="c1")(inputs)
    x = keras.layers.ReLU(name="relu")(x)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3, name="c2")(x))  # standard layers: Keras pickles them
    scope = cs.Scope(model)
    name = scope.select()[0]
    x = np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32)  # channels first, as convscope batches are
    before = scope.activations(x, [name])[name].data
    again = pickle.loads(pickle.dumps(scope))
    np.testing.assert_allclose(again.activations(x, [name])[name].data, before, rtol=1e-6, atol=1e-6)
