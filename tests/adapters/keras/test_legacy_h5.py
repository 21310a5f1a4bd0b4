"""Legacy .h5 files written by Keras 2 / tf.keras: loaded where Keras 3 can read them, one clear line
where it cannot (TensorFlow-operation layers). The files are written here with h5py in Keras 2.13's
layout (``model_config`` JSON with ``batch_input_shape``, ``model_weights/<layer>/<layer>/kernel:0``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")

import convscope  # noqa: E402
from convscope.errors import ModelLoadError, UntrustedFileError  # noqa: E402


def write_keras2_h5(path, kernel, bias, *, tf_op: bool = False):
    conv = {
        "name": "c", "trainable": True, "dtype": "float32", "filters": 2, "kernel_size": [3, 3], "strides": [1, 1],
        "padding": "valid", "data_format": "channels_last", "dilation_rate": [1, 1], "groups": 1,
        "activation": "linear", "use_bias": True,
        "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
        "bias_initializer": {"class_name": "Zeros", "config": {}}, "kernel_regularizer": None,
        "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None, "bias_constraint": None,
    }
    layers = [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 8, 8, 1], "dtype": "float32",
                                                 "sparse": False, "ragged": False, "name": "input_1"},
         "name": "input_1", "inbound_nodes": []},
        {"class_name": "Conv2D", "config": conv, "name": "c", "inbound_nodes": [[["input_1", 0, 0, {}]]]},
    ]
    out = "c"
    if tf_op:  # what `x * 2.0` on a KerasTensor became in tf.keras 2.x
        layers.append({"class_name": "TFOpLambda", "config": {"name": "tf.math.multiply", "trainable": True,
                                                               "dtype": "float32", "function": "math.multiply"},
                       "name": "tf.math.multiply", "inbound_nodes": [["c", 0, 0, {"y": 2.0, "name": None}]]})
        out = "tf.math.multiply"
    config = {"class_name": "Functional", "config": {"name": "model", "layers": layers,
                                                     "input_layers": [["input_1", 0, 0]], "output_layers": [[out, 0, 0]]}}
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.13.1"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps(config)
        weights = f.create_group("model_weights")
        weights.attrs["layer_names"] = [b"input_1", b"c"] + ([b"tf.math.multiply"] if tf_op else [])
        weights.attrs["backend"] = b"tensorflow"
        weights.attrs["keras_version"] = b"2.13.1"
        weights.create_group("input_1").attrs["weight_names"] = []
        group = weights.create_group("c")
        group.attrs["weight_names"] = [b"c/kernel:0", b"c/bias:0"]
        group.create_dataset("c/kernel:0", data=kernel)
        group.create_dataset("c/bias:0", data=bias)
        if tf_op:
            weights.create_group("tf.math.multiply").attrs["weight_names"] = []
    return path


@pytest.fixture
def weights():
    rng = np.random.default_rng(0)
    return rng.standard_normal((3, 3, 1, 2)).astype(np.float32), np.array([0.5, -0.5], np.float32)


def test_keras2_h5_loads_with_trust_and_gives_its_weights_and_activations(tmp_path, weights):
    kernel, bias = weights
    path = write_keras2_h5(tmp_path / "old.h5", kernel, bias)
    with pytest.raises(UntrustedFileError, match="--trust"):
        convscope.load(path)
    scope = convscope.load(path, trust=True)
    assert scope.loaded.info["format"] == "h5" and scope.input_shape == (1, 1, 8, 8)
    np.testing.assert_array_equal(scope.kernels(["c"])["c"].weights, kernel.transpose(3, 2, 0, 1))
    x = np.random.default_rng(1).standard_normal((1, 8, 8)).astype(np.float32)
    got = scope.activations(x, ["c"])["c"].data
    # independent: the valid 3x3 cross-correlation in numpy
    windows = np.lib.stride_tricks.sliding_window_view(x[0], (3, 3))  # (6, 6, 3, 3)
    ref = np.einsum("ijab,abo->oij", windows, kernel[:, :, 0, :]) + bias[:, None, None]
    np.testing.assert_allclose(got[0], ref, atol=1e-5)


def test_keras2_h5_with_tensorflow_op_layers_gets_one_clear_line(tmp_path, weights):
    path = write_keras2_h5(tmp_path / "ops.h5", *weights, tf_op=True)
    with pytest.raises(ModelLoadError) as info:
        convscope.load(path, trust=True)
    message = str(info.value)
    assert "\n" not in message
    assert "Keras 2 (tf.keras)" in message and "TFOpLambda" in message and "tf-keras" in message
