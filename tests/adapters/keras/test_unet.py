"""scope.unet() on Keras U-Nets: graph from the functional graph, nested blocks, layouts, no mutation."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from convscope import Scope  # noqa: E402
from convscope.adapters.keras_adapter import KerasAdapter  # noqa: E402
from convscope.errors import NotAUNet, UnsupportedModelError  # noqa: E402
from convscope.unet_flow import unet_backend_for  # noqa: E402

from .models import Subclassed, image, small_net, to_numpy  # noqa: E402

L = keras.layers


def block(channels: int, name: str, cin: int, size: int, data_format: str) -> keras.Model:
    shape = (cin, size, size) if data_format == "channels_first" else (size, size, cin)
    return keras.Sequential(
        [
            keras.Input(shape),
            L.Conv2D(channels, 3, padding="same", data_format=data_format, name="conv"),
            L.ReLU(name="act"),
        ],
        name=name,
    )


def nested_unet(data_format: str = "channels_last") -> keras.Model:
    """Blocks as Sequential sub-models, UpSampling2D up, Add skips (level 0) and Concatenate (level 1)."""
    keras.utils.set_random_seed(0)
    cf = data_format == "channels_first"
    axis = 1 if cf else -1
    inputs = keras.Input((1, 16, 16) if cf else (16, 16, 1), name="scan")
    e1 = block(4, "enc1", 1, 16, data_format)(inputs)
    e2 = block(8, "enc2", 4, 8, data_format)(L.MaxPooling2D(data_format=data_format, name="pool1")(e1))
    b = block(8, "bott", 8, 4, data_format)(L.MaxPooling2D(data_format=data_format, name="pool2")(e2))
    u2 = L.UpSampling2D(data_format=data_format, name="up2")(b)
    d2 = block(8, "dec2", 16, 8, data_format)(L.Concatenate(axis=axis, name="cat2")([u2, e2]))
    u1 = L.Conv2D(4, 1, data_format=data_format, name="reduce")(L.UpSampling2D(data_format=data_format, name="up1")(d2))
    d1 = block(4, "dec1", 4, 16, data_format)(L.Add(name="add1")([u1, e1]))
    return keras.Model(inputs, L.Conv2D(3, 1, data_format=data_format, name="head")(d1), name="unet")


def scan(n: int = 1) -> np.ndarray:
    return image(n, (1, 16, 16))


def test_unet_backend_comes_from_the_adapter():
    backend = unet_backend_for(KerasAdapter(nested_unet()))
    assert backend.framework == "keras"


def test_nested_keras_unet_is_found_with_dotted_names():
    flow = Scope(nested_unet()).unet(scan())
    s = flow.structure
    assert s.depth == 2 and len(s.skips) == 2
    assert [flow.name(lvl.encoder_output) for lvl in s.levels] == ["enc1.act", "enc2.act"]
    assert [(flow.name(k.source), flow.name(k.merge), k.merge_kind) for k in s.skips] == [
        ("enc1.act", "add1", "add"),
        ("enc2.act", "cat2", "concat"),
    ]
    assert flow.name(s.input) == "scan" and flow.name(s.output) == "head"
    assert s.bottleneck_shape == (8, 4, 4)


def test_graph_values_equal_scope_activations():
    model = nested_unet()
    scope = Scope(model)
    flow = scope.unet(scan(2))
    acts = scope.activations(scan(2), ["enc1.act", "dec2.act", "head"])
    for name in ("enc1.act", "dec2.act", "head"):
        np.testing.assert_allclose(flow.activation(flow.graph.by_name(name).id), acts[name].data, atol=1e-6)


def test_channels_first_unet_has_the_same_anatomy():
    last = Scope(nested_unet()).unet(scan()).to_json()
    first = Scope(nested_unet("channels_first")).unet(scan()).to_json()
    for key in ("levels", "bottleneck", "bottleneck_shape", "output"):
        assert first[key] == last[key]
    assert [(s["from"], s["to"]) for s in first["skips"]] == [(s["from"], s["to"]) for s in last["skips"]]


def test_gradient_shares_are_computed_on_the_torch_backend():
    flow = Scope(nested_unet()).unet(scan())
    shares = [m.gradient_share for m in flow.metrics]
    assert all(share is not None and 0.0 <= share <= 1.0 for share in shares)


def test_target_and_mask_change_the_gradient_shares_not_the_energy():
    scope = Scope(nested_unet())
    mask = np.zeros((16, 16), dtype=bool)
    mask[:4, :4] = True
    plain = scope.unet(scan())
    other = scope.unet(scan(), target=2, mask=mask)
    assert [m.energy_share for m in plain.metrics] == pytest.approx([m.energy_share for m in other.metrics])
    assert [m.gradient_share for m in plain.metrics] != pytest.approx([m.gradient_share for m in other.metrics])


def test_unet_leaves_the_model_unchanged():
    model = nested_unet()
    before = [to_numpy(v).copy() for v in model.variables]
    nodes = [(len(layer._inbound_nodes), len(layer._outbound_nodes)) for layer in model._flatten_layers()]
    Scope(model).unet(scan())
    for v0, v in zip(before, model.variables):
        np.testing.assert_array_equal(v0, to_numpy(v))
    assert nodes == [(len(layer._inbound_nodes), len(layer._outbound_nodes)) for layer in model._flatten_layers()]
    assert all(getattr(v.value, "grad", None) is None for v in model.trainable_variables)


def test_plain_cnn_is_not_a_unet():
    with pytest.raises(NotAUNet):
        Scope(small_net()).unet(image())


def test_subclassed_model_says_it_needs_a_functional_model():
    model = Subclassed()
    model(np.zeros((1, 8, 8, 3), dtype=np.float32))
    with pytest.raises(UnsupportedModelError, match="functional"):
        Scope(model).unet(image())
