"""The framework-free Graph type and the torch dataflow tracer (functional ops, in-place ops, values)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from convscope.core.graph import Graph, Node
from convscope.errors import ConvscopeError, LayerNotFoundError

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from convscope.adapters.torch_graph import function_op_kind, is_leaf_module, trace_torch  # noqa: E402


def _small_graph() -> Graph:
    return Graph(
        nodes=(
            Node("x", "input", "x", (1, 8, 8)),
            Node("c", "conv", "enc.conv", (4, 8, 8), ("x",)),
            Node("p", "pool", "pool", (4, 4, 4), ("c",)),
            Node("u", "upsample", "up", (4, 8, 8), ("p",)),
            Node("m", "concat", "cat", (8, 8, 8), ("c", "u")),
        ),
        input_ids=("x",),
        output_ids=("m",),
    )


# -- Graph (no torch needed) -------------------------------------------------------------------


def test_graph_lookup_consumers_and_order() -> None:
    g = _small_graph()
    assert g.node("c").name == "enc.conv"
    assert g.by_name("up").id == "u"
    assert g.consumers("c") == ("p", "m")
    assert g.topological_order() == ("x", "c", "p", "u", "m")
    assert g.ancestors("m") == {"x", "c", "p", "u"}
    assert g.descendants("p") == {"u", "m"}


def test_graph_spatial_size_and_dims() -> None:
    g = _small_graph()
    assert g.spatial_dims == 2
    assert g.spatial("p") == (4, 4)
    assert g.node("m").channels == 8


def test_graph_rejects_duplicate_ids() -> None:
    with pytest.raises(ConvscopeError, match="unique"):
        Graph(nodes=(Node("a", "input", "a", (1, 4)), Node("a", "conv", "b", (1, 4), ("a",))), input_ids=("a",), output_ids=())


def test_graph_rejects_inputs_that_are_not_earlier_nodes() -> None:
    with pytest.raises(ConvscopeError, match="execution order"):
        Graph(nodes=(Node("b", "conv", "b", (1, 4), ("a",)), Node("a", "input", "a", (1, 4))), input_ids=("a",), output_ids=())


def test_graph_unknown_node_lists_close_ids() -> None:
    with pytest.raises(LayerNotFoundError, match="enc.conv|c"):
        _small_graph().by_name("enc.cnv")


def test_node_rejects_unknown_op_kind() -> None:
    with pytest.raises(ConvscopeError, match="unknown op kind"):
        Node("a", "convolution", "a", (1, 4))


def test_core_and_unet_flow_do_not_import_torch() -> None:
    code = (
        "import sys; import convscope.core.graph, convscope.core.unet, convscope.render.flow, convscope.unet_flow; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- torch tracing -----------------------------------------------------------------------------


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        a = self.relu(self.conv(x))
        b = F.interpolate(F.max_pool2d(a, 2), scale_factor=2)
        c = torch.cat([a, b], dim=1)
        s = torch.stack([a, b], dim=1)
        d = a + b
        e = torch.add(d, a)
        p = F.pad(e, (1, 1, 1, 1))
        q = p[:, :, 1:-1, 1:-1]
        return c, s, q


def _trace(model: nn.Module, shape: tuple[int, ...], **kwargs: object):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return trace_torch(model, x, **kwargs), x


def test_functional_ops_become_nodes_with_their_inputs() -> None:
    cap, _ = _trace(Functional(), (1, 1, 8, 8))
    g = cap.graph
    ops = {n.name: (n.op, n.inputs) for n in g}
    assert ops["conv"] == ("conv", ("input",))
    assert ops["relu"] == ("activation", ("conv",))
    assert ops["max_pool2d"] == ("pool", ("relu",))
    assert ops["interpolate"] == ("upsample", ("max_pool2d",))
    assert ops["cat"] == ("concat", ("relu", "interpolate"))
    assert ops["stack"] == ("stack", ("relu", "interpolate"))
    assert ops["add"] == ("add", ("relu", "interpolate"))
    assert ops["add#1"] == ("add", ("add", "relu"))
    assert ops["pad"] == ("pad", ("add#1",))
    assert ops["getitem"] == ("crop", ("pad",))
    assert g.output_ids == ("cat", "stack", "getitem")


def test_node_shapes_drop_the_batch_axis() -> None:
    cap, _ = _trace(Functional(), (2, 1, 8, 8))
    g = cap.graph
    assert g.by_name("input").shape == (1, 8, 8)
    assert g.by_name("max_pool2d").shape == (2, 4, 4)
    assert g.by_name("stack").shape == (2, 2, 8, 8)
    assert g.by_name("pad").shape == (2, 10, 10)


def test_concat_records_its_dim_and_module_nodes_their_type() -> None:
    g = _trace(Functional(), (1, 1, 8, 8))[0].graph
    assert g.by_name("cat").attrs["dim"] == 1
    assert g.by_name("conv").module_type == "Conv2d"
    assert g.by_name("cat").module_type is None


class InplaceOps(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.other = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        F.relu(y, inplace=True)  # the result is ignored: y itself is modified
        z = self.other(x)
        z += y
        return z


def test_inplace_ops_make_the_tensor_produced_by_them() -> None:
    g = _trace(InplaceOps(), (1, 1, 6, 6))[0].graph
    relu = g.by_name("relu")
    assert relu.inputs == ("conv",) and relu.attrs["inplace"] is True
    add = g.by_name("add")
    assert add.inputs == ("other", "relu")
    assert g.output_ids == ("add",)


def test_kept_values_are_taken_before_later_inplace_ops() -> None:
    model = InplaceOps()
    cap, x = _trace(model, (1, 1, 6, 6), keep={"conv", "relu", "other", "add"})
    with torch.no_grad():
        conv = model.conv(torch.from_numpy(x)).numpy()
        other = model.other(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(cap.values["conv"], conv, rtol=1e-6)
    assert (cap.values["conv"] < 0).any()
    np.testing.assert_allclose(cap.values["relu"], np.maximum(conv, 0), rtol=1e-6)
    np.testing.assert_allclose(cap.values["other"], other, rtol=1e-6)
    np.testing.assert_allclose(cap.values["add"], other + np.maximum(conv, 0), rtol=1e-6)


def test_inplace_relu_module_keeps_the_pre_activation_value() -> None:
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(inplace=True))
    cap, x = _trace(model, (1, 1, 6, 6), keep="all")
    with torch.no_grad():
        conv = model[0](torch.from_numpy(x)).numpy()
    assert cap.graph.by_name("1").inputs == ("0",)
    np.testing.assert_allclose(cap.values["0"], conv, rtol=1e-6)
    np.testing.assert_allclose(cap.values["1"], np.maximum(conv, 0), rtol=1e-6)


class Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.stem = nn.Conv2d(1, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.pool(self.block(x))
        return self.pool(self.block(x))


def test_repeated_module_calls_get_stable_suffixed_names() -> None:
    names = [n.name for n in _trace(Shared(), (1, 1, 8, 8))[0].graph]
    assert names == ["input", "stem", "block.0", "block.1", "pool", "block.0#1", "block.1#1", "pool#1"]
    again = [n.name for n in _trace(Shared(), (1, 1, 8, 8))[0].graph]
    assert again == names


class Scoped(nn.Module):
    class Merge(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return torch.cat([a, b], 1)

    def __init__(self) -> None:
        super().__init__()
        self.merge = nn.ModuleDict({"m": self.Merge()})
        self.conv = nn.Conv2d(1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.merge["m"](self.conv(x), x)


def test_functional_ops_are_named_after_their_enclosing_module() -> None:
    g = _trace(Scoped(), (1, 1, 4, 4))[0].graph
    assert g.by_name("merge.m.cat").inputs == ("conv", "input")
    assert g.by_name("merge.m.cat").attrs["module_outputs"] == ("merge.m",)


def test_leaf_modules_are_not_descended_into() -> None:
    g = _trace(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Upsample(scale_factor=2)), (1, 1, 4, 4))[0].graph
    assert [(n.name, n.op) for n in g] == [("input", "input"), ("0", "conv"), ("1", "upsample")]
    assert is_leaf_module(nn.Conv2d(1, 1, 1)) and not is_leaf_module(nn.Sequential())


def test_identity_module_keeps_the_provenance_of_its_input() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.Identity(), nn.Dropout(0.5), nn.Conv2d(2, 1, 1))
    g = _trace(model, (1, 1, 4, 4))[0].graph
    assert g.by_name("3").inputs == ("0",)


def test_strided_slicing_is_a_downsampling() -> None:
    class Sub(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :, ::2, ::2] * 2

    g = _trace(Sub(), (1, 1, 8, 8))[0].graph
    assert g.by_name("getitem").op == "pool"


def test_function_op_kinds() -> None:
    assert function_op_kind(torch.cat) == "concat"
    assert function_op_kind("__iadd__") == "add"
    assert function_op_kind(F.interpolate) == "upsample"
    assert function_op_kind("conv_transpose2d") == "conv_transpose"
    assert function_op_kind("relu_") == "activation"


def test_forward_failure_names_the_input_shape() -> None:
    with pytest.raises(ConvscopeError, match=r"forward pass failed on an input of shape \(1, 3, 8, 8\)"):
        _trace(nn.Conv2d(1, 2, 3), (1, 3, 8, 8))


def test_bad_batch_is_rejected_with_the_layout() -> None:
    with pytest.raises(ConvscopeError, match="channels first"):
        trace_torch(nn.Conv2d(1, 1, 1), np.zeros((4, 4), dtype=np.float32))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_models_are_refused_with_the_fix() -> None:
    from convscope.errors import UnsupportedModelError

    scripted = torch.jit.script(nn.Conv2d(1, 1, 1))
    with pytest.raises(UnsupportedModelError, match="eager"):
        trace_torch(scripted, np.zeros((1, 1, 4, 4), np.float32))
