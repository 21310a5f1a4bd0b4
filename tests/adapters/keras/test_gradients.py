"""KerasAdapter.gradients() on the current Keras backend (the Makefile runs this once per backend)."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from convscope.adapters.base import SupportsGradients  # noqa: E402
from convscope.adapters.keras_adapter import KerasAdapter  # noqa: E402
from convscope.core.objective import ChannelObjective  # noqa: E402
from convscope.errors import UnsupportedModelError  # noqa: E402

from .models import image, nested_net, small_net, to_numpy  # noqa: E402

L = keras.layers


def linear_net(data_format: str = "channels_last") -> keras.Model:
    """Bias-free convolutions and an Add: the output is linear in every layer's activation."""
    keras.utils.set_random_seed(2)
    cf = data_format == "channels_first"
    inputs = keras.Input((2, 8, 8) if cf else (8, 8, 2), name="x")
    a = L.Conv2D(3, 3, padding="same", use_bias=False, data_format=data_format, name="a")(inputs)
    b = L.Conv2D(3, 3, padding="same", use_bias=False, data_format=data_format, name="b")(a)
    s = L.Add(name="sum")([a, b])
    out = L.Conv2D(2, 1, use_bias=False, data_format=data_format, name="head")(s)
    return keras.Model(inputs, out)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_linear_net_gradients_satisfy_euler(data_format):
    """score = sum(g_l * a_l) at layers the output is homogeneous-linear in, and at the input; at b,
    score = sum(g_b * b) + sum(g_sum * a) (independent of how the VJP is taken)."""
    adapter = KerasAdapter(linear_net(data_format))
    assert isinstance(adapter, SupportsGradients)
    x = image(2, (2, 8, 8))
    mask = np.zeros((8, 8), bool)
    mask[2:6, 1:5] = True
    got = adapter.gradients(x, ["a", "b", "sum"], ChannelObjective(channel=1, mask=mask), with_input=True)
    assert got.output.shape == (2, 2, 8, 8) and got.gradients["a"].shape == (2, 3, 8, 8)
    for name in ("a", "sum"):  # the output is homogeneous linear in these (not in b: a bypasses it)
        euler = (got.gradients[name] * got.activations[name]).reshape(2, -1).sum(1)
        np.testing.assert_allclose(euler, got.score, rtol=1e-4, atol=1e-4)
    split = (got.gradients["b"] * got.activations["b"] + got.gradients["sum"] * got.activations["a"]).reshape(2, -1).sum(1)
    np.testing.assert_allclose(split, got.score, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose((got.input_gradient * x).reshape(2, -1).sum(1), got.score, rtol=1e-4, atol=1e-4)
    expected = (got.output[:, 1] * mask).reshape(2, -1).sum(1)
    np.testing.assert_allclose(got.score, expected, rtol=1e-5, atol=1e-5)
    # the gradient at the last layer is exactly the cotangent
    np.testing.assert_allclose(adapter.gradients(x, ["head"], ChannelObjective(channel=1, mask=mask)).gradients["head"],
                               got.cotangent, atol=0)


def test_gradient_activations_equal_capture_and_model_is_unchanged():
    model = small_net()
    adapter = KerasAdapter(model)
    before = [to_numpy(v).copy() for v in model.variables]
    x = image(2)
    got = adapter.gradients(x, ["c1", "relu"], ChannelObjective())
    acts = adapter.capture(x, ["c1", "relu"]).activations
    for name in ("c1", "relu"):
        np.testing.assert_allclose(got.activations[name], acts[name], atol=1e-5)
    # the ReLU passes gradient only where it is positive
    assert np.all(got.gradients["c1"][got.activations["relu"] <= 0] == 0)
    for v0, v in zip(before, model.variables):
        np.testing.assert_array_equal(v0, to_numpy(v))
    assert all(getattr(v.value, "grad", None) is None for v in model.trainable_variables)


def test_gradients_inside_nested_submodels():
    adapter = KerasAdapter(nested_net())
    names = [info.name for info in adapter.layers() if info.kind == "conv"]
    got = adapter.gradients(image(1, (3, 8, 8)) if adapter.input_spec().channels == 3 else image(1, (4, 8, 8)),
                            names, ChannelObjective())
    assert set(got.gradients) == set(names)
    assert all(np.isfinite(g).all() for g in got.gradients.values())


def test_gradients_start_from_logits_of_a_final_softmax():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    c = L.Conv2D(3, 3, padding="same", name="c")(inputs)
    model = keras.Model(inputs, L.Activation("softmax", name="probs")(c))
    adapter = KerasAdapter(model)
    x = image(1, (1, 8, 8))
    got = adapter.gradients(x, ["c"], ChannelObjective(channel=2))
    assert got.output_name == "output (input of the final Activation)"
    np.testing.assert_allclose(got.gradients["c"][:, 2], 1.0)
    np.testing.assert_allclose(got.gradients["c"][:, :2], 0.0)
    probs = adapter.gradients(x, ["c"], ChannelObjective(channel=2, from_logits=False))
    assert probs.output_name == "output" and probs.output.max() <= 1.0


def test_depthwise_half_of_a_separable_conv_says_what_to_ask_for():
    inputs = keras.Input((8, 8, 2))
    model = keras.Model(inputs, L.SeparableConv2D(3, 3, name="sep")(inputs))
    with pytest.raises(UnsupportedModelError, match="sep:pointwise"):
        KerasAdapter(model).gradients(image(1, (2, 8, 8)), ["sep"], ChannelObjective())
    got = KerasAdapter(model).gradients(image(1, (2, 8, 8)), ["sep:pointwise"], ChannelObjective())
    assert got.gradients["sep:pointwise"].shape == (1, 3, 6, 6)


def test_deep_supervision_outputs_default_to_the_full_resolution_one():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((8, 8, 1))
    c = L.Conv2D(3, 3, padding="same", name="c")(inputs)
    low = L.Conv2D(2, 1, name="low")(L.MaxPooling2D(name="pool")(c))
    full = L.Conv2D(2, 1, name="full")(c)
    adapter = KerasAdapter(keras.Model(inputs, [low, full]))
    x = image(1, (1, 8, 8))
    got = adapter.gradients(x, ["c"], ChannelObjective(channel=0))
    assert got.output_name == "output[1]" and got.output.shape == (1, 2, 8, 8)
    first = adapter.gradients(x, ["c"], ChannelObjective(channel=0, output=0))
    assert first.output_name == "output[0]" and first.output.shape == (1, 2, 4, 4)
    assert not np.allclose(first.gradients["c"], got.gradients["c"])
