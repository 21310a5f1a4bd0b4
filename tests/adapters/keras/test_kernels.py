"""Keras kernels come out in canonical (out, in/groups, *k) layout for every conv kind.

Each layout is checked against what the Keras layer actually computes: a batch of one-hot inputs
is run through the layer and the responses are compared with the canonical kernel.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from convscope.adapters.keras_adapter import POINTWISE, KerasAdapter  # noqa: E402
from convscope.core.kernels import KernelBank  # noqa: E402
from convscope.errors import ConvscopeError  # noqa: E402


def wrap(layer, in_shape) -> KerasAdapter:
    """A one-layer functional model around ``layer`` (input shape without batch, channels last)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(in_shape)
    model = keras.Model(inputs, layer(inputs))
    # random non-zero bias so layouts cannot hide behind zeros
    for var in layer.weights:
        var.assign(np.random.default_rng(1).standard_normal(tuple(var.shape)).astype("float32"))
    return KerasAdapter(model)


def one_hot_inputs(channels: int, spatial: tuple[int, ...]) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """Every (channel, *position) one-hot input, channels last: (N, *spatial, C) and the index list."""
    index = [(c, *pos) for c in range(channels) for pos in itertools.product(*(range(s) for s in spatial))]
    batch = np.zeros((len(index), *spatial, channels), dtype=np.float32)
    for n, (c, *pos) in enumerate(index):
        batch[(n, *pos, c)] = 1.0
    return batch, index


def response(layer, batch: np.ndarray) -> np.ndarray:
    """Layer output minus its output on zeros (removes the bias), channels moved first."""
    out = keras.ops.convert_to_numpy(layer(batch)) - keras.ops.convert_to_numpy(layer(np.zeros_like(batch[:1])))
    return np.moveaxis(out, -1, 1)


def dense_matrix(bank: KernelBank) -> np.ndarray:
    """The canonical kernel expanded to (out, in, *k) with zeros outside each output's group."""
    w = bank.weights
    full = np.zeros((bank.out_channels, bank.in_channels, *bank.kernel_size), dtype=np.float32)
    for o in range(bank.out_channels):
        for j in range(bank.in_per_group):
            full[o, bank.input_channel_of(o, j)] = w[o, j]
    return full


@pytest.mark.parametrize(
    ("layer", "in_shape"),
    [
        (lambda: keras.layers.Conv1D(5, 3, name="k"), (3, 4)),
        (lambda: keras.layers.Conv2D(6, (3, 2), name="k"), (3, 2, 3)),
        (lambda: keras.layers.Conv2D(6, 3, groups=2, name="k"), (3, 3, 4)),
        (lambda: keras.layers.Conv3D(4, 2, name="k"), (2, 2, 2, 3)),
        (lambda: keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="k"), (3, 3, 3)),
        (lambda: keras.layers.DepthwiseConv1D(3, depth_multiplier=3, name="k"), (3, 2)),
    ],
    ids=["conv1d", "conv2d", "conv2d_groups", "conv3d", "depthwise2d", "depthwise1d"],
)
def test_forward_conv_kernel_is_what_the_layer_computes(layer, in_shape):
    """Input one-hot at (channel i, position p) over a kernel-sized valid window gives out[o] = W[o, i, p]."""
    layer = layer()
    adapter = wrap(layer, in_shape)
    bank = adapter.kernel("k")
    spatial, channels = in_shape[:-1], in_shape[-1]
    assert bank.kernel_size == spatial and bank.in_channels == channels
    batch, index = one_hot_inputs(channels, spatial)
    got = response(layer, batch).reshape(len(index), -1)  # (N, out): spatial output is 1
    full = dense_matrix(bank)
    expected = np.stack([full[(slice(None), c, *pos)] for c, *pos in index])
    np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize(
    ("layer", "in_shape"),
    [
        (lambda: keras.layers.Conv1DTranspose(5, 3, name="k"), (1, 4)),
        (lambda: keras.layers.Conv2DTranspose(6, (3, 2), name="k"), (1, 1, 4)),
        (lambda: keras.layers.Conv2DTranspose(3, 2, strides=2, name="k"), (1, 1, 5)),
        (lambda: keras.layers.Conv3DTranspose(2, 2, name="k"), (1, 1, 1, 3)),
    ],
    ids=["convT1d", "convT2d", "convT2d_stride2", "convT3d"],
)
def test_transposed_kernel_is_what_each_output_channel_stamps(layer, in_shape):
    """A 1x1 one-hot input on channel i stamps W[o, i] into output channel o (no flip)."""
    layer = layer()
    adapter = wrap(layer, in_shape)
    bank = adapter.kernel("k")
    assert bank.transposed and bank.groups == 1
    channels = in_shape[-1]
    assert bank.in_channels == channels and bank.out_channels == layer.filters
    batch, index = one_hot_inputs(channels, in_shape[:-1])
    got = response(layer, batch)  # (in, out, *k)
    np.testing.assert_allclose(got, bank.weights.transpose(1, 0, *range(2, bank.weights.ndim)), atol=1e-6)


def test_separable_conv_gives_depthwise_and_pointwise_kernels():
    layer = keras.layers.SeparableConv2D(5, 3, depth_multiplier=2, name="k")
    adapter = wrap(layer, (3, 3, 3))
    depthwise, pointwise = adapter.kernel("k"), adapter.kernel("k" + POINTWISE)
    assert depthwise.shape == (6, 1, 3, 3) and depthwise.groups == 3 and depthwise.bias is None
    assert pointwise.shape == (5, 6, 1, 1) and pointwise.groups == 1 and pointwise.bias is not None
    batch, index = one_hot_inputs(3, (3, 3))
    got = response(layer, batch).reshape(len(index), 5)
    composed = pointwise.weights[:, :, 0, 0] @ dense_matrix(depthwise).reshape(6, -1)  # (5, in * k)
    np.testing.assert_allclose(got, composed.T, atol=1e-5)


def test_separable_depthwise_activation_matches_depthwise_kernel():
    """``sep`` captures the depthwise intermediate, the output that its kernel computes."""
    layer = keras.layers.SeparableConv2D(4, 3, depth_multiplier=2, name="k")
    adapter = wrap(layer, (3, 3, 2))
    batch, index = one_hot_inputs(2, (3, 3))
    acts = adapter.capture(np.moveaxis(batch, -1, 1), ["k", "k" + POINTWISE]).activations
    assert acts["k"].shape == (len(index), 4, 1, 1)
    expected = np.stack([dense_matrix(adapter.kernel("k"))[(slice(None), c, *pos)] for c, *pos in index])
    np.testing.assert_allclose(acts["k"][:, :, 0, 0], expected, atol=1e-6)
    np.testing.assert_allclose(
        acts["k" + POINTWISE], np.moveaxis(keras.ops.convert_to_numpy(layer(batch)), -1, 1), atol=1e-6
    )


def test_channels_first_conv_kernel_layout_is_the_same():
    layer = keras.layers.Conv2D(4, 3, data_format="channels_first", name="k")
    adapter = wrap(layer, (2, 3, 3))
    bank = adapter.kernel("k")
    np.testing.assert_array_equal(bank.weights, keras.ops.convert_to_numpy(layer.kernel).transpose(3, 2, 0, 1))
    batch = np.zeros((1, 2, 3, 3), dtype=np.float32)
    batch[0, 1, 0, 2] = 1.0
    out = keras.ops.convert_to_numpy(layer(batch)) - keras.ops.convert_to_numpy(layer(np.zeros_like(batch)))
    np.testing.assert_allclose(out[0, :, 0, 0], bank.weights[:, 1, 0, 2], atol=1e-6)


def test_kernel_bank_metadata():
    layer = keras.layers.Conv2D(4, 3, dilation_rate=2, name="k")
    bank = wrap(layer, (5, 5, 3)).kernel("k")
    assert bank.dilation == (2, 2) and bank.type_name == "Conv2D" and bank.source_dtype == "float32"
    assert bank.weights.dtype == np.float32 and bank.weights.flags.c_contiguous
    np.testing.assert_array_equal(bank.bias, keras.ops.convert_to_numpy(layer.bias))


def test_kernel_is_a_copy():
    layer = keras.layers.Conv2D(2, 3, name="k")
    adapter = wrap(layer, (3, 3, 1))
    before = keras.ops.convert_to_numpy(layer.kernel).copy()
    adapter.kernel("k").weights[...] = 7.0
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.kernel), before)


def test_kernel_of_a_non_conv_layer_says_so():
    adapter = wrap(keras.layers.Dense(3, name="k"), (4,))
    with pytest.raises(ConvscopeError, match="not a convolution"):
        adapter.kernel("k")


def test_founding_document_kernel_equals_get_weights_transposed():
    """``model.get_layer(name).get_weights()[0]`` is (kh, kw, in, out); convscope gives (out, in, kh, kw)."""
    layer = keras.layers.Conv2D(8, 3, name="k")
    adapter = wrap(layer, (5, 5, 3))
    np.testing.assert_array_equal(adapter.kernel("k").weights, layer.get_weights()[0].transpose(3, 2, 0, 1))
