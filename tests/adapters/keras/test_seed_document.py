"""The founding document's three Keras examples, run as written (tf.keras on the TensorFlow backend,
keras elsewhere), give the same numbers as convscope on the same model.

1. kernel grid of ``conv2d_1``: ``layer.get_weights()[0]`` min-max normalised over the whole layer;
2. activation of ``conv2d_1`` via an intermediate ``Model(model.input, layer.output).predict``;
3. encoder / decoder / skip activations of a U-Net, each via its own intermediate model.
The Makefile runs this file once per backend, so it runs on TensorFlow as the document does.
"""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from convscope import Scope  # noqa: E402
from convscope.render.normalize import normalize  # noqa: E402


def document_keras():
    """What the document calls ``tf.keras`` (on the TensorFlow backend, literally tf.keras)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.keras
    return keras


def unet():
    """A 256x256 RGB U-Net whose layer names are the document's (conv2d, conv2d_1, encoder_conv_1...)."""
    k = document_keras()
    L = k.layers
    k.utils.set_random_seed(0)
    inputs = k.Input((256, 256, 3))
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="conv2d")(inputs)
    e1 = L.Conv2D(4, 3, padding="same", activation="relu", name="conv2d_1")(x)
    e2 = L.Conv2D(8, 3, padding="same", activation="relu", name="encoder_conv_1")(L.MaxPooling2D(name="pool")(e1))
    up = L.UpSampling2D(name="up")(e2)
    skip = L.Concatenate(name="skip_connection_1")([up, e1])
    d1 = L.Conv2D(4, 3, padding="same", activation="relu", name="decoder_conv_1")(skip)
    model = k.Model(inputs, L.Conv2D(2, 1, name="head")(d1))
    model.compile()  # "Assume 'model' is a compiled CNN or U-Net model"
    return model


@pytest.fixture(scope="module")
def model():
    return unet()


@pytest.fixture(scope="module")
def image():
    np.random.seed(0)
    return np.expand_dims(np.random.rand(256, 256, 3), axis=0)  # the document's input


def test_example_1_kernels_of_conv2d_1(model):
    layer_name = "conv2d_1"
    layer = model.get_layer(layer_name)
    weights = layer.get_weights()[0]
    weights_min = np.min(weights)
    weights_max = np.max(weights)
    normalized_weights = (weights - weights_min) / (weights_max - weights_min)

    bank = Scope(model).kernels([layer_name])[layer_name]
    # convscope's (out, in, kh, kw) is Keras's (kh, kw, in, out) transposed, exactly
    np.testing.assert_array_equal(bank.weights, weights.transpose(3, 2, 0, 1))
    ours = normalize(bank.weights[None], scale="minmax", shared=True).unit[0]
    np.testing.assert_allclose(ours, normalized_weights.transpose(3, 2, 0, 1), atol=1e-6)
    for i in range(min(16, weights.shape[-1])):  # the document's panels: normalized_weights[0, :, :, i]
        np.testing.assert_allclose(ours[i, :, 0, :].T, normalized_weights[0, :, :, i], atol=1e-6)


def test_example_2_activation_of_conv2d_1(model, image):
    k = document_keras()
    layer_name = "conv2d_1"
    model_intermediate = k.Model(inputs=model.input, outputs=model.get_layer(layer_name).output)
    intermediate_output = model_intermediate.predict(image, verbose=0)

    acts = Scope(model).activations(image[0].transpose(2, 0, 1).astype(np.float32), [layer_name])
    ours = acts[layer_name].data
    assert ours.shape == (1, 4, 256, 256)
    np.testing.assert_allclose(ours[0, 0], intermediate_output[0, :, :, 0], atol=1e-5)
    np.testing.assert_allclose(ours, intermediate_output.transpose(0, 3, 1, 2), atol=1e-5)


def test_example_3_unet_encoder_decoder_and_skip(model, image):
    k = document_keras()
    encoder_layer = "encoder_conv_1"
    decoder_layer = "decoder_conv_1"
    skip_connection_layer = "skip_connection_1"
    intermediate_encoder = k.Model(inputs=model.input, outputs=model.get_layer(encoder_layer).output)
    intermediate_decoder = k.Model(inputs=model.input, outputs=model.get_layer(decoder_layer).output)
    intermediate_skip = k.Model(inputs=model.input, outputs=model.get_layer(skip_connection_layer).output)
    encoder_activation = intermediate_encoder.predict(image, verbose=0)
    decoder_activation = intermediate_decoder.predict(image, verbose=0)
    skip_activation = intermediate_skip.predict(image, verbose=0)

    scope = Scope(model)
    x = image[0].transpose(2, 0, 1).astype(np.float32)
    acts = scope.activations(x, [encoder_layer, decoder_layer, skip_connection_layer])  # ONE forward pass
    for name, theirs in ((encoder_layer, encoder_activation), (decoder_layer, decoder_activation),
                         (skip_connection_layer, skip_activation)):
        np.testing.assert_allclose(acts[name].data, theirs.transpose(0, 3, 1, 2), atol=1e-5, err_msg=name)
    flow = scope.unet(x)
    assert [(flow.name(s.source), flow.name(s.merge)) for s in flow.structure.skips] == [("conv2d_1", skip_connection_layer)]
    np.testing.assert_allclose(flow.activation(flow.graph.by_name(skip_connection_layer).id), acts[skip_connection_layer].data,
                               atol=1e-5)
    assert all(m.gradient_share is not None and 0 <= m.gradient_share <= 1 for m in flow.metrics)
