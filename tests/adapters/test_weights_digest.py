"""SupportsWeightsDigest on every non-Keras adapter, over a zoo: stable, equal for equal weights,
different when one weight or buffer changes, and the model left exactly as it was."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from convscope import Scope  # noqa: E402
from convscope.adapters.base import SupportsWeightsDigest, capabilities  # noqa: E402
from convscope.adapters.torch.state import model_fingerprint  # noqa: E402
from convscope.adapters.torch_adapter import TorchAdapter  # noqa: E402

from .onnx.nets import TinyCNN, TinyUNet, export_onnx, export_pt2, make  # noqa: E402


class Depthwise(nn.Module):
    """Depthwise-separable block with a BatchNorm (buffers) and a bias-free pointwise conv."""

    def __init__(self) -> None:
        super().__init__()
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.bn = nn.BatchNorm2d(4)
        self.pw = nn.Conv2d(4, 2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(torch.relu(self.bn(self.dw(x))))


class Shared(nn.Module):
    """One conv applied twice (the state_dict lists it once) and a registered non-persistent buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.register_buffer("scale", torch.tensor(2.0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.relu(self.conv(x))) * self.scale


ZOO = {"tiny_cnn": (TinyCNN, (1, 4, 8, 8)), "tiny_unet": (TinyUNet, (1, 1, 16, 16)),
       "depthwise": (Depthwise, (1, 4, 8, 8)), "shared": (Shared, (1, 4, 8, 8))}


def _nudge(model: nn.Module, *, buffer: bool = False) -> None:
    """Change one element of the last parameter (or of the first floating buffer) by one ulp."""
    with torch.no_grad():
        if buffer:
            tensor = next(b for b in model.buffers() if b.is_floating_point())
        else:
            tensor = list(model.parameters())[-1]
        flat = tensor.view(-1)
        flat[0] = torch.nextafter(flat[0], torch.tensor(float("inf"), dtype=flat.dtype))


@pytest.mark.parametrize("name", sorted(ZOO))
def test_eager_digest_is_stable_equal_for_a_copy_and_leaves_the_model(name):
    cls, _ = ZOO[name]
    model = make(cls, seed=1)
    model.train()  # a mode that must survive too
    adapter = TorchAdapter(model)
    before = model_fingerprint(model)
    digest = adapter.weights_digest()
    assert isinstance(adapter, SupportsWeightsDigest) and capabilities(adapter)["weights_digest"]
    assert digest == adapter.weights_digest() == TorchAdapter(copy.deepcopy(model)).weights_digest()
    after = model_fingerprint(model)
    assert before["training"] == after["training"] and before["requires_grad"] == after["requires_grad"]
    assert all(torch.equal(before["state"][k], after["state"][k]) for k in before["state"])
    assert after["grads"] == [None] * len(after["grads"]) and before["hooks"] == after["hooks"]


@pytest.mark.parametrize("name", sorted(ZOO))
def test_eager_digest_changes_with_one_ulp_of_one_weight(name):
    cls, _ = ZOO[name]
    model = make(cls, seed=1)
    digest = TorchAdapter(model).weights_digest()
    _nudge(model)
    assert TorchAdapter(model).weights_digest() != digest
    assert TorchAdapter(make(cls, seed=2)).weights_digest() != digest


def test_eager_digest_covers_buffers_and_dtypes():
    model = make(TinyCNN, seed=1)
    digest = TorchAdapter(model).weights_digest()
    _nudge(model, buffer=True)  # BatchNorm running_mean: same parameters, other outputs in eval mode
    nudged = TorchAdapter(model).weights_digest()
    assert nudged != digest
    assert TorchAdapter(copy.deepcopy(model).to(torch.bfloat16)).weights_digest() not in (digest, nudged)
    assert TorchAdapter(copy.deepcopy(model).double()).weights_digest() not in (digest, nudged)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_torchscript_and_pt2_digests_follow_their_weights(name, tmp_path):
    cls, shape = ZOO[name]
    model = make(cls, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, torch.zeros(shape))
    scripted = torch.jit.script(model)
    pt2 = export_pt2(model, tmp_path / "m.pt2", shape)
    digests = {kind: Scope(obj, trust=True).weights_digest() for kind, obj in
               (("eager", model), ("traced", traced), ("scripted", scripted), ("pt2", str(pt2)))}
    assert all(d is not None for d in digests.values())
    assert digests["traced"] == digests["scripted"]  # the same module state, listed alike
    _nudge(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced2 = torch.jit.trace(model, torch.zeros(shape))
    pt2b = export_pt2(model, tmp_path / "m2.pt2", shape)
    assert Scope(traced2).weights_digest() != digests["traced"]
    assert Scope(str(pt2b), trust=True).weights_digest() != digests["pt2"]
    assert Scope(str(pt2), trust=True).weights_digest() == digests["pt2"]  # the file read again


@pytest.mark.parametrize("name", sorted(ZOO))
def test_onnx_digest_follows_the_initializers(name, tmp_path):
    pytest.importorskip("onnxruntime")
    cls, shape = ZOO[name]
    model = make(cls, seed=1)
    first = Scope(str(export_onnx(model, tmp_path / "a.onnx", shape))).weights_digest()
    again = Scope(str(export_onnx(model, tmp_path / "b.onnx", shape))).weights_digest()
    _nudge(model)
    changed = Scope(str(export_onnx(model, tmp_path / "c.onnx", shape))).weights_digest()
    assert first == again and first is not None and changed != first


def test_onnx_weights_in_constant_nodes_count():
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from convscope.adapters.onnx_adapter import OnnxAdapter

    def model(weight: np.ndarray) -> object:
        nodes = [helper.make_node("Constant", [], ["W"], value=numpy_helper.from_array(weight, "W")),
                 helper.make_node("Conv", ["x", "W"], ["y"], kernel_shape=[3, 3])]
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 7, 7])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    weight = np.random.default_rng(0).standard_normal((3, 2, 3, 3)).astype(np.float32)
    other = weight.copy()
    other[0, 0, 0, 0] += 1.0
    assert isinstance(model(weight), onnx.ModelProto)
    assert OnnxAdapter(model(weight)).weights_digest() == OnnxAdapter(model(weight.copy())).weights_digest()
    assert OnnxAdapter(model(weight)).weights_digest() != OnnxAdapter(model(other)).weights_digest()
