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


def unet_plus_plus(data_format: str = "channels_last", nested: bool = False, depth: int = 3) -> keras.Model:
    """UNet++ (dense nested skips): X[i][j] = block(cat(X[i][0..j-1], up(X[i+1][j-1]))); 10 skips at depth 3.
    ``nested``: the dense inputs concatenated pairwise, ``cat([cat([x0, x1]), up])`` (one dense merge each)."""
    keras.utils.set_random_seed(0)
    cf = data_format == "channels_first"
    axis = 1 if cf else -1
    inputs = keras.Input((1, 16, 16) if cf else (16, 16, 1), name="scan")
    conv = lambda c, name: L.Conv2D(c, 3, padding="same", activation="relu", data_format=data_format, name=name)  # noqa: E731
    X: dict[tuple[int, int], object] = {}
    for j in range(depth + 1):
        for i in range(depth + 1 - j):
            c = 4 * 2**i
            if j == 0:
                src = inputs if i == 0 else L.MaxPooling2D(data_format=data_format, name=f"pool{i}")(X[i - 1, 0])
                X[i, 0] = conv(c, f"x{i}0")(src)
                continue
            up = L.UpSampling2D(data_format=data_format, name=f"up{i}{j}")(X[i + 1, j - 1])
            if nested:
                acc = X[i, 0]
                for k in range(1, j):
                    acc = L.Concatenate(axis=axis, name=f"acc{i}{j}_{k}")([acc, X[i, k]])
                merged = L.Concatenate(axis=axis, name=f"cat{i}{j}")([acc, up])
            else:
                merged = L.Concatenate(axis=axis, name=f"cat{i}{j}")([*(X[i, k] for k in range(j)), up])
            X[i, j] = conv(c, f"x{i}{j}")(merged)
    head = L.Conv2D(2, 1, data_format=data_format, name="head")(X[0, depth])
    return keras.Model(inputs, head, name="unetpp")


# the torch zoo's UNet++ skips (tests/unet/test_unet_finder.py UNETPP_SKIPS) in these layer names
KERAS_UNETPP_SKIPS = [
    (0, "x00", "cat01"), (0, "x00", "cat02"), (0, "x01", "cat02"), (0, "x00", "cat03"), (0, "x01", "cat03"),
    (0, "x02", "cat03"), (1, "x10", "cat11"), (1, "x10", "cat12"), (1, "x11", "cat12"), (2, "x20", "cat21"),
]


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("nested", [False, True], ids=["flat-concat", "nested-concat"])
def test_keras_unet_plus_plus_has_every_dense_skip_in_either_layout(data_format: str, nested: bool) -> None:
    if data_format == "channels_first" and keras.backend.backend() == "tensorflow":
        pytest.skip("TensorFlow's CPU convolutions do not run channels_first")
    flow = Scope(unet_plus_plus(data_format, nested)).unet(scan())
    s = flow.structure
    got = sorted((k.level, k.source.split(".")[-1], k.merge.split(".")[-1]) for k in s.skips)
    assert got == sorted(KERAS_UNETPP_SKIPS)
    assert len({k.merge for k in s.skips}) == 6  # one dense merge per decoder node, nested concats folded
    assert s.depth == 3


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_keras_concat_axes_are_recorded_in_host_order(data_format: str) -> None:
    if data_format == "channels_first" and keras.backend.backend() == "tensorflow":
        pytest.skip("TensorFlow's CPU convolutions do not run channels_first")
    graph = Scope(unet_plus_plus(data_format, nested=True)).unet(scan()).graph
    concats = [n for n in graph.nodes if n.op == "concat"]
    assert len(concats) == 10  # 6 dense merges + 4 inner pairwise concats
    assert {n.attrs["dim"] for n in concats} == {1}  # the host's channel axis, whatever the Keras layout
    assert {n.attrs["axis"] for n in concats} == {-1 if data_format == "channels_last" else 1}
