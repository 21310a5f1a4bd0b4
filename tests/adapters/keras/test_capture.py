"""Activation capture on Keras models: one pass, transparency, nesting, layouts, no mutation."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from convscope import Scope  # noqa: E402
from convscope.adapters import adapter_for  # noqa: E402
from convscope.adapters.keras_adapter import KerasAdapter  # noqa: E402
from convscope.errors import ConvscopeError, LayerNotFoundError, UnsupportedModelError  # noqa: E402

from .models import Counter, Subclassed, channels_first, image, nested_net, small_net, to_numpy  # noqa: E402


def fingerprint(model) -> dict:
    """What capture must leave alone: variable values, trainable flags, graph bookkeeping."""
    layers = model._flatten_layers(include_self=True, recursive=True)
    return {
        "variables": [to_numpy(v).copy() for v in model.variables],
        "trainable": [layer.trainable for layer in layers],
        "nodes": [(len(layer._inbound_nodes), len(layer._outbound_nodes)) for layer in layers],
    }


def assert_same(before: dict, after: dict) -> None:
    assert len(before["variables"]) == len(after["variables"])
    for v0, v1 in zip(before["variables"], after["variables"]):
        np.testing.assert_array_equal(v0, v1)
    assert before["trainable"] == after["trainable"]
    assert before["nodes"] == after["nodes"]


def test_keras_models_get_the_keras_adapter():
    assert isinstance(adapter_for(small_net()), KerasAdapter)
    assert Scope(small_net()).adapter.framework == "keras"


def test_layer_names_kinds_and_input_spec():
    adapter = KerasAdapter(nested_net())
    kinds = {info.name: info.kind for info in adapter.layers()}
    assert kinds == {
        "count": "other", "stem": "conv", "block": "container", "block.conv": "conv", "block.act": "activation",
        "mid": "container", "mid.pool": "pool", "mid.deep": "container", "mid.deep.conv": "conv",
        "mid.up": "upsample", "cat": "merge", "head": "conv",
    }
    spec = adapter.input_spec()
    assert (spec.channels, spec.spatial_dims, spec.spatial_size, spec.dtype) == (3, 2, (8, 8), "float32")
    assert adapter.input_shape() == (1, 3, 8, 8)


def test_conv_layer_info_is_channels_first_shaped():
    infos = {info.name: info for info in KerasAdapter(small_net()).describe_layers(image())}
    c1 = infos["c1"]
    assert (c1.in_channels, c1.out_channels, c1.kernel_size, c1.stride, c1.groups) == (3, 4, (3, 3), (1, 1), 1)
    assert c1.out_shape == (4, 8, 8) and c1.params == 4 * 3 * 9 + 4


def test_activations_equal_the_founding_documents_sub_model_predict():
    model = small_net()
    acts = Scope(model).activations(image(2), ["c1", "bn", "c2"])
    for name in ("c1", "bn", "c2"):
        probe = keras.Model(model.inputs, model.get_layer(name).output)
        expected = probe.predict(np.moveaxis(image(2), 1, -1), verbose=0)
        np.testing.assert_allclose(acts[name].data, np.moveaxis(expected, -1, 1), atol=1e-6)
        assert acts[name].data.dtype == np.float32 and acts[name].data.flags.c_contiguous


def test_capture_is_transparent_output_unchanged():
    model = small_net()
    acts = Scope(model).activations(image(), kind="all")
    np.testing.assert_array_equal(acts.output, channels_first(model(np.moveaxis(image(), 1, -1), training=False)))


def test_all_layers_from_one_forward_pass():
    model = small_net()
    counter = model.get_layer("count")
    counter.calls = 0
    Scope(model).activations(image(), kind="all")
    assert counter.calls == 1


def test_nested_capture_is_one_forward_pass_too():
    model = nested_net()
    counter = model.get_layer("count")
    counter.calls = 0
    Scope(model).activations(image(), kind="all")
    assert counter.calls == 1


def test_capture_model_is_cached_per_layer_set():
    model = small_net()
    adapter = KerasAdapter(model)
    adapter.capture(image(), ["c1", "c2"])
    adapter.capture(image(), ["c1", "c2"])
    assert len(adapter._capture_models) == 1
    adapter.capture(image(), ["c1"])
    assert len(adapter._capture_models) == 2


def test_nested_layers_are_named_by_path_and_equal_manual_computation():
    model = nested_net()
    acts = Scope(model).activations(image(), ["stem", "block.conv", "block", "mid.deep.conv", "mid", "head"])
    x = np.moveaxis(image(), 1, -1)
    stem = model.get_layer("stem")(x)
    block = model.get_layer("block")
    mid = model.get_layer("mid")
    np.testing.assert_allclose(acts["block.conv"].data, channels_first(block.get_layer("conv")(stem)), atol=1e-6)
    np.testing.assert_allclose(acts["block"].data, channels_first(block(stem)), atol=1e-6)
    pooled = mid.get_layer("pool")(block(stem))
    deep_conv = mid.get_layer("deep").get_layer("conv")
    np.testing.assert_allclose(acts["mid.deep.conv"].data, channels_first(deep_conv(pooled)), atol=1e-6)
    np.testing.assert_allclose(acts["mid"].data, channels_first(mid(block(stem))), atol=1e-6)
    np.testing.assert_allclose(acts.output, channels_first(model(x)), atol=1e-6)


def test_nested_and_top_level_paths_agree():
    model = nested_net()
    scope = Scope(model)
    top = scope.activations(image(), ["stem", "block", "head"])
    walked = scope.activations(image(), ["stem", "block", "head", "block.conv"])
    for name in ("stem", "block", "head"):
        np.testing.assert_allclose(top[name].data, walked[name].data, atol=1e-6)


def test_shared_layer_gives_its_first_call():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    shared = keras.layers.Conv2D(2, 3, padding="same", name="shared")
    first = shared(inputs)
    second = shared(keras.layers.ReLU(name="relu")(first))
    model = keras.Model(inputs, second)
    acts = Scope(model).activations(image(1, (2, 6, 6)), ["shared"])
    np.testing.assert_allclose(acts["shared"].data, channels_first(shared(np.moveaxis(image(1, (2, 6, 6)), 1, -1))), atol=1e-6)


def test_streaming_hands_each_activation_over_and_keeps_none():
    model = small_net()
    adapter = KerasAdapter(model)
    collected = adapter.capture(image(), ["c1", "relu", "c2"])
    streamed: dict[str, np.ndarray] = {}
    result = adapter.capture(image(), ["c1", "relu", "c2"], on_activation=streamed.__setitem__)
    assert result.activations == {}
    assert streamed.keys() == collected.activations.keys() == result.shapes.keys()
    for name in streamed:
        np.testing.assert_array_equal(streamed[name], collected.activations[name])


def test_channels_first_model_needs_no_transpose():
    model = small_net("channels_first")
    adapter = KerasAdapter(model)
    assert adapter.channels_first() and adapter.input_spec().channels == 3
    acts = Scope(model).activations(image(), ["c1", "c2"])
    assert acts["c1"].shape == (1, 4, 8, 8)
    np.testing.assert_allclose(acts.output, to_numpy(model(image())), atol=1e-6)


def test_capture_leaves_the_model_unchanged():
    model = nested_net()
    before = fingerprint(model)
    scope = Scope(model)
    scope.activations(image(), kind="all")
    scope.activations(image(), ["stem", "head"])
    assert_same(before, fingerprint(model))
    assert model.get_layer("stem").output is not None  # still one call site: Keras raises if capture added one


def test_train_mode_uses_batch_statistics_and_restores_moving_statistics():
    model = small_net()
    before = fingerprint(model)
    scope = Scope(model)
    eval_bn = scope.activations(image(4), ["bn"])["bn"].data
    train_bn = scope.activations(image(4), ["bn"], train=True)["bn"].data
    assert not np.allclose(eval_bn, train_bn)
    np.testing.assert_allclose(train_bn.mean(axis=(0, 2, 3)), 0.0, atol=1e-4)  # beta = 0: batch-normalised
    assert_same(before, fingerprint(model))


def test_trainable_flags_are_kept():
    model = small_net()
    model.get_layer("c1").trainable = False
    Scope(model).activations(image(), kind="all", train=True)
    assert model.get_layer("c1").trainable is False and model.get_layer("c2").trainable is True


def test_unknown_layer_suggests_close_names():
    with pytest.raises(LayerNotFoundError, match="block.conv"):
        KerasAdapter(nested_net()).capture(image(), ["block.conv2"])


def test_subclassed_model_kernels_work_and_activations_explain_why_not():
    model = Subclassed()
    model(np.zeros((1, 8, 8, 3), dtype=np.float32))
    scope = Scope(model)
    assert [info.name for info in scope.layers()] == ["c1", "c2"]
    assert scope.kernels("c1").shape == (4, 3, 3, 3)
    with pytest.raises(UnsupportedModelError, match=r"subclassed.*kernels.*keras\.Model\(inputs, outputs\)"):
        scope.activations(image(), ["c1"])


def test_layer_inside_a_subclassed_block_explains_what_can_be_captured():
    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = keras.layers.Conv2D(2, 1, name="inner")

        def call(self, inputs):
            return self.inner(inputs)

    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, Block(name="blk")(inputs))
    scope = Scope(model)
    assert scope.kernels("blk.inner").shape == (2, 3, 1, 1)
    assert scope.activations(image(1, (3, 4, 4)), ["blk"])["blk"].shape == (1, 2, 4, 4)
    with pytest.raises(UnsupportedModelError, match="only the output of 'blk'"):
        scope.activations(image(1, (3, 4, 4)), ["blk.inner"])


def test_sequential_without_input_shape_says_how_to_fix():
    model = keras.Sequential([keras.layers.Conv2D(2, 3, name="c")])
    with pytest.raises(UnsupportedModelError, match="keras.Input"):
        KerasAdapter(model).capture(image(), ["c"])


def test_sequential_with_input_captures():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3, name="c"), keras.layers.ReLU(name="r")])
    acts = Scope(model).activations(image(), kind="all")
    assert list(acts) == ["c", "r"]
    np.testing.assert_allclose(acts["r"].data, channels_first(model(np.moveaxis(image(), 1, -1))), atol=1e-6)


def test_wrong_input_shape_is_one_clear_error():
    with pytest.raises(ConvscopeError, match="forward pass failed"):
        KerasAdapter(small_net()).capture(image(1, (5, 8, 8)), ["c1"])


def test_counter_layer_is_kind_other():
    assert KerasAdapter(small_net()).layers()[0].kind == "other"
    assert isinstance(small_net().get_layer("count"), Counter)


def test_layer_table_of_a_model_with_a_custom_block_keeps_inner_shapes_unknown():
    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = keras.layers.Conv2D(2, 1, name="inner")

        def call(self, inputs):
            return self.inner(inputs)

    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, Block(name="blk")(inputs))
    shapes = {info.name: info.out_shape for info in Scope(model).layers(containers=True)}
    assert shapes == {"blk": (2, 4, 4), "blk.inner": None}
