"""ONNX adapter: layer names, canonical kernels, one-run capture, dynamic axes, inference-only."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
from onnx import TensorProto, helper, numpy_helper

from convscope import Scope
from convscope.adapters.onnx_adapter import OnnxAdapter
from convscope.adapters.torch_adapter import TorchAdapter
from convscope.errors import ConvscopeError, LayerNotFoundError, UnsupportedModelError

from .nets import TinyCNN, TinyUNet, batch, export_onnx, make, torch_outputs

# -------------------------------------------------------------------------------------------------
# hand-built graphs
# -------------------------------------------------------------------------------------------------


def single_op_model(op: str, weight: np.ndarray, in_channels: int, *, group: int = 1, size: int = 7) -> onnx.ModelProto:
    """One Conv / ConvTranspose node, no bias, stride 1, no padding; input (1, in_channels, size, size)."""
    node = helper.make_node(op, ["x", "W"], ["y"], group=group, kernel_shape=list(weight.shape[2:]))
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, in_channels, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(weight, "W")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def one_hot(channels: int, channel: int, size: int = 7) -> np.ndarray:
    x = np.zeros((1, channels, size, size), np.float32)
    x[0, channel, size // 2, size // 2] = 1.0
    return x


def test_conv_kernel_is_onnx_weight_and_reconvolves_one_hot():
    rng = np.random.default_rng(0)
    groups, in_ch, out_ch = 2, 4, 6
    weight = rng.standard_normal((out_ch, in_ch // groups, 3, 3)).astype(np.float32)
    adapter = OnnxAdapter(single_op_model("Conv", weight, in_ch, group=groups))
    bank = adapter.kernel(adapter.layers()[0].name)
    assert bank.shape == (6, 2, 3, 3) and bank.groups == 2 and not bank.transposed
    for c in range(in_ch):
        out = adapter.capture(one_hot(in_ch, c), [adapter.layers()[0].name]).activations[adapter.layers()[0].name][0]
        for o in range(out_ch):
            if bank.input_channel_of(o, c % bank.in_per_group) != c:
                continue
            # cross-correlation: the response around the one-hot is the flipped filter
            patch = out[o, 1:4, 1:4][::-1, ::-1]
            np.testing.assert_allclose(patch, bank.weights[o, c % bank.in_per_group], atol=1e-6)


def test_conv_transpose_kernel_is_canonical_and_reconvolves_one_hot():
    rng = np.random.default_rng(1)
    groups, in_ch, out_ch = 2, 4, 6
    stored = rng.standard_normal((in_ch, out_ch // groups, 3, 3)).astype(np.float32)  # ONNX (C, M/group, k)
    adapter = OnnxAdapter(single_op_model("ConvTranspose", stored, in_ch, group=groups, size=5))
    name = adapter.layers()[0].name
    bank = adapter.kernel(name)
    assert bank.shape == (6, 2, 3, 3) and bank.groups == 2 and bank.transposed
    for c in range(in_ch):
        out = adapter.capture(one_hot(in_ch, c, 5), [name]).activations[name][0]
        for o in range(out_ch):
            local = c % bank.in_per_group
            if bank.input_channel_of(o, local) != c:
                continue
            # transposed conv scatters the filter (not flipped) around the one-hot at (2, 2)
            np.testing.assert_allclose(out[o, 2:5, 2:5], bank.weights[o, local], atol=1e-6)


def test_kernels_equal_torch_twin_canonical_kernels(tmp_path):
    # no BatchNorm after the convs: exporters fold BatchNorm into the preceding conv's weights
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 6, 3, groups=2), nn.ReLU(), nn.ConvTranspose2d(6, 4, 2, stride=2, groups=2)).eval()
    adapter = OnnxAdapter(export_onnx(model, tmp_path / "seq.onnx", (1, 4, 8, 8)))
    twin = TorchAdapter(model)
    pairs = {"/0/Conv": "0", "/2/ConvTranspose": "2"}
    for onnx_name, torch_name in pairs.items():
        ours, theirs = adapter.kernel(onnx_name), twin.kernel(torch_name)
        assert ours.groups == theirs.groups == 2
        np.testing.assert_array_equal(ours.weights, theirs.weights)
        np.testing.assert_array_equal(ours.bias, theirs.bias)


# -------------------------------------------------------------------------------------------------
# names and kinds
# -------------------------------------------------------------------------------------------------


def unnamed_model() -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((2, 1, 1, 1), np.float32), "W")
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c1"]),  # no name
        helper.make_node("Relu", ["c1"], ["r1"], name="dup"),
        helper.make_node("Relu", ["r1"], ["r2"], name="dup"),  # duplicate name
        helper.make_node("Relu", ["r2"], ["r3"], name="weird*name"),  # not usable as a layer name
        helper.make_node("Add", ["r3", "c1"], ["y"], name="merge"),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_unnamed_and_duplicate_nodes_get_stable_unique_names():
    names = [layer.name for layer in OnnxAdapter(unnamed_model()).layers()]
    assert names == ["Conv_c1", "Relu_r1", "Relu_r2", "Relu_r3", "merge"]
    assert names == [layer.name for layer in OnnxAdapter(unnamed_model()).layers()]


def test_layer_kinds_follow_ops(tmp_path):
    adapter = OnnxAdapter(export_onnx(make(TinyUNet), tmp_path / "unet.onnx", (1, 1, 16, 16)))
    kinds = {layer.type_name: layer.kind for layer in adapter.layers()}
    assert kinds["Conv"] == "conv" and kinds["ConvTranspose"] == "conv_transpose"
    assert kinds["Relu"] == "activation" and kinds["MaxPool"] == "pool" and kinds["Concat"] == "merge"


def test_unknown_layer_suggests_close_names(tmp_path):
    adapter = OnnxAdapter(export_onnx(make(TinyCNN), tmp_path / "cnn.onnx", (1, 4, 8, 8)))
    with pytest.raises(LayerNotFoundError, match="/conv1/Conv"):
        adapter.capture(batch((1, 4, 8, 8)), ["/conv1/Con"])


# -------------------------------------------------------------------------------------------------
# capture
# -------------------------------------------------------------------------------------------------


def test_one_run_capture_equals_torch_activations_of_source_model(tmp_path):
    model = make(TinyCNN)
    adapter = OnnxAdapter(export_onnx(model, tmp_path / "cnn.onnx", (1, 4, 8, 8)))
    x = batch((2, 4, 8, 8))
    # the exporter folds bn into conv1, so the ONNX conv's output is torch's bn output
    names = {"/conv1/Conv": "bn", "/pool/MaxPool": "pool", "/up/ConvTranspose": "up", "/act/Relu": "act"}
    got = adapter.capture(x, list(names)).activations
    want = torch_outputs(model, x, list(names.values()))
    for onnx_name, torch_name in names.items():
        assert got[onnx_name].dtype == np.float32 and got[onnx_name].flags.c_contiguous
        np.testing.assert_allclose(got[onnx_name], want[torch_name], atol=1e-5, rtol=1e-5)


def test_one_run_capture_equals_running_truncated_models(tmp_path):
    import onnxruntime as ort

    proto = onnx.load(str(export_onnx(make(TinyUNet), tmp_path / "unet.onnx", (1, 1, 16, 16))))
    adapter = OnnxAdapter(proto)
    x = batch((1, 1, 16, 16))
    names = [layer.name for layer in adapter.layers()]
    captured = adapter.capture(x, names).activations
    for name in names[::3]:
        truncated = onnx.ModelProto()
        truncated.CopyFrom(proto)
        del truncated.graph.output[:]
        truncated.graph.output.append(onnx.ValueInfoProto(name=adapter.layer_output(name)))
        session = ort.InferenceSession(truncated.SerializeToString(), providers=["CPUExecutionProvider"])
        (alone,) = session.run(None, {"x": x})
        np.testing.assert_allclose(captured[name], alone, atol=1e-5, rtol=1e-5)


def test_capture_of_many_layers_is_one_session_run(tmp_path, monkeypatch):
    from onnxruntime.capi.onnxruntime_inference_collection import InferenceSession

    adapter = OnnxAdapter(export_onnx(make(TinyUNet), tmp_path / "unet.onnx", (1, 1, 16, 16)))
    calls = []
    original = InferenceSession.run

    def counting_run(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(InferenceSession, "run", counting_run)
    result = adapter.capture(batch((1, 1, 16, 16)), [layer.name for layer in adapter.layers()])
    assert len(calls) == 1 and len(result.activations) == len(adapter.layers())


def test_streaming_capture_hands_arrays_to_callback_and_keeps_none(tmp_path):
    adapter = OnnxAdapter(export_onnx(make(TinyCNN), tmp_path / "cnn.onnx", (1, 4, 8, 8)))
    seen = {}
    result = adapter.capture(batch((1, 4, 8, 8)), ["/conv1/Conv", "/up/ConvTranspose"],
                             on_activation=lambda name, arr: seen.setdefault(name, arr.shape))
    assert seen == {"/conv1/Conv": (1, 6, 8, 8), "/up/ConvTranspose": (1, 4, 8, 8)}
    assert result.activations == {} and result.shapes["/conv1/Conv"] == (1, 6, 8, 8)


def test_capture_does_not_modify_the_users_model_proto(tmp_path):
    proto = onnx.load(str(export_onnx(make(TinyCNN), tmp_path / "cnn.onnx", (1, 4, 8, 8))))
    before = proto.SerializeToString()
    adapter = OnnxAdapter(proto)
    adapter.capture(batch((1, 4, 8, 8)), [layer.name for layer in adapter.layers()])
    assert proto.SerializeToString() == before and adapter.model is proto


def test_dynamic_batch_axis_is_none_in_spec_and_any_batch_runs(tmp_path):
    adapter = OnnxAdapter(export_onnx(make(TinyCNN), tmp_path / "cnn.onnx", (1, 4, 8, 8), dynamic=(0,)))
    spec = adapter.input_spec()
    assert (spec.channels, spec.spatial_dims, spec.spatial_size) == (4, 2, (8, 8))
    for n in (1, 3):
        assert adapter.capture(batch((n, 4, 8, 8)), ["/up/ConvTranspose"]).shapes["/up/ConvTranspose"] == (n, 4, 8, 8)


def test_dynamic_spatial_axes_leave_size_unknown_and_run_other_sizes(tmp_path):
    adapter = OnnxAdapter(export_onnx(make(TinyCNN), tmp_path / "cnn.onnx", (1, 4, 8, 8), dynamic=(0, 2, 3)))
    assert adapter.input_spec().spatial_size is None
    assert adapter.capture(batch((1, 4, 12, 16)), ["/conv1/Conv"]).shapes["/conv1/Conv"] == (1, 6, 12, 16)


def test_fixed_input_size_mismatch_names_the_expected_size(tmp_path):
    adapter = OnnxAdapter(export_onnx(make(TinyCNN), tmp_path / "cnn.onnx", (1, 4, 8, 8)))
    with pytest.raises(ConvscopeError, match=r"--size 8x8"):
        adapter.capture(batch((1, 4, 10, 10)), ["/conv1/Conv"])


def test_train_mode_is_refused_as_inference_only(tmp_path):
    adapter = OnnxAdapter(export_onnx(make(TinyCNN), tmp_path / "cnn.onnx", (1, 4, 8, 8)))
    with pytest.raises(ValueError, match="inference-only"):
        adapter.capture(batch((1, 4, 8, 8)), ["/conv1/Conv"], train_mode=True)


def test_model_with_two_inputs_is_refused_with_reason():
    nodes = [helper.make_node("Add", ["a", "b"], ["y"])]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1, 2, 2]) for n in ("a", "b")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    adapter = OnnxAdapter(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    with pytest.raises(UnsupportedModelError, match="exactly one input"):
        adapter.capture(batch((1, 1, 2, 2)), [adapter.layers()[0].name])


def test_scope_layers_show_output_shapes_for_onnx(tmp_path):
    scope = Scope(export_onnx(make(TinyCNN), tmp_path / "cnn.onnx", (1, 4, 8, 8)))
    table = {layer.name: layer for layer in scope.layers()}
    assert scope.adapter.framework == "onnx"
    assert table["/up/ConvTranspose"].out_shape == (4, 8, 8) and table["/conv1/Conv"].groups == 2


# -------------------------------------------------------------------------------------------------
# weights that are not plain initializers
# -------------------------------------------------------------------------------------------------


def conv_with_weight_nodes(weight_nodes: list, initializers: list) -> onnx.ModelProto:
    nodes = [*weight_nodes, helper.make_node("Conv", ["x", "W"], ["y"], name="conv")]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_weights_from_constant_node_through_identity_are_resolved():
    w = np.random.default_rng(2).standard_normal((3, 2, 3, 3)).astype(np.float32)
    model = conv_with_weight_nodes(
        [helper.make_node("Constant", [], ["Wc"], value=numpy_helper.from_array(w)),
         helper.make_node("Identity", ["Wc"], ["W"])], [])
    np.testing.assert_array_equal(OnnxAdapter(model).kernel("conv").weights, w)


def test_weights_behind_dequantize_linear_are_dequantized_per_channel():
    rng = np.random.default_rng(3)
    q = rng.integers(-100, 100, (3, 2, 3, 3)).astype(np.int8)
    scale = np.array([0.1, 0.02, 0.5], np.float32)
    zero = np.array([1, -2, 0], np.int8)
    model = conv_with_weight_nodes(
        [helper.make_node("DequantizeLinear", ["Wq", "s", "z"], ["W"], axis=0)],
        [numpy_helper.from_array(q, "Wq"), numpy_helper.from_array(scale, "s"), numpy_helper.from_array(zero, "z")])
    bank = OnnxAdapter(model).kernel("conv")
    want = (q.astype(np.float32) - zero.reshape(3, 1, 1, 1)) * scale.reshape(3, 1, 1, 1)
    np.testing.assert_allclose(bank.weights, want, rtol=1e-6)
    assert bank.source_dtype == "float32"


def test_weights_computed_by_other_ops_give_a_clear_message():
    w = np.ones((3, 2, 3, 3), np.float32)
    model = conv_with_weight_nodes(
        [helper.make_node("Mul", ["Wa", "Wb"], ["W"])],
        [numpy_helper.from_array(w, "Wa"), numpy_helper.from_array(w, "Wb")])
    with pytest.raises(ConvscopeError, match=r"computed by an ONNX Mul node.*fold constants"):
        OnnxAdapter(model).kernel("conv")


def test_non_convolution_layer_has_no_kernels(tmp_path):
    adapter = OnnxAdapter(export_onnx(make(TinyCNN), tmp_path / "cnn.onnx", (1, 4, 8, 8)))
    with pytest.raises(ConvscopeError, match="not a convolution"):
        adapter.kernel("/relu/Relu")


def test_missing_requested_output_is_an_error_not_a_silent_gap(tmp_path, monkeypatch):
    from onnxruntime.capi.onnxruntime_inference_collection import InferenceSession

    adapter = OnnxAdapter(export_onnx(make(TinyCNN), tmp_path / "cnn.onnx", (1, 4, 8, 8)))
    original = InferenceSession.run

    def lossy_run(self, names, feed, *args, **kwargs):
        values = original(self, names, feed, *args, **kwargs)
        return [None if name == "/pool/MaxPool_output_0" else value for name, value in zip(names, values)]

    monkeypatch.setattr(InferenceSession, "run", lossy_run)
    with pytest.raises(ConvscopeError, match="did not return"):
        adapter.capture(batch((1, 4, 8, 8)), ["/conv1/Conv", "/pool/MaxPool"])


def test_scope_accepts_an_onnx_model_proto(tmp_path):
    proto = onnx.load(str(export_onnx(make(TinyCNN), tmp_path / "cnn.onnx", (1, 4, 8, 8))))
    scope = Scope(proto)
    assert scope.adapter.framework == "onnx" and scope.model is proto
    assert set(scope.kernels()) == {"/conv1/Conv", "/up/ConvTranspose"}
