"""Torch eager ``gradients()``: numbers (vs. plain autograd), and the model is never changed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from convscope.adapters.base import SupportsGradients
from convscope.adapters.torch_adapter import TorchAdapter
from convscope.adapters.torch_state import model_fingerprint
from convscope.core import targets
from convscope.errors import ConvscopeError
from tests.conftest import assert_same_fingerprint


class Seg(nn.Module):
    """Tiny 2-class segmentation net with in-place ReLUs right after the hooked convolutions."""

    def __init__(self, final: str | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu2 = nn.ReLU(inplace=True)
        self.head = nn.Conv2d(4, 2, 1)
        self.final = final
        self.sig = nn.Sigmoid()

    def forward(self, x):
        y = self.head(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        if self.final == "module":
            return self.sig(y)
        if self.final == "softmax":
            return torch.softmax(y, dim=1)
        return y


class Twice(nn.Module):
    """One conv module applied twice (weight sharing); the second call's output is what matters most."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.head = nn.Conv2d(2, 1, 1)

    def forward(self, x):
        return self.head(self.conv(torch.relu(self.conv(x))))


class DictOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x):
        y = self.conv(x)
        return {"aux": self.pool(y), "seg": y}


class Boom(Exception):
    pass


class Raises(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3)

    def forward(self, x):
        self.conv(x)
        raise Boom("user code failed")


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(1).standard_normal((2, 1, 8, 8)).astype(np.float32)


def manual(model, x, layer_names, weights):
    """Independent reference: a copy with out-of-place ReLUs, hooks keeping the outputs, autograd of (out * W).sum()."""
    import copy

    ref = copy.deepcopy(model)
    for m in ref.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    kept = {}
    for n in layer_names:
        getattr(ref, n).register_forward_hook(lambda m, i, o, n=n: kept.__setitem__(n, o))
    inp = torch.from_numpy(x).requires_grad_(True)
    score = (ref(inp) * torch.from_numpy(weights)).sum()
    grads = torch.autograd.grad(score, [kept[n] for n in layer_names])
    return {n: g.numpy() for n, g in zip(layer_names, grads)}


def test_torch_adapter_supports_gradients():
    assert isinstance(TorchAdapter(Seg()), SupportsGradients)


def test_gradients_match_plain_autograd_and_inplace_relu_is_handled(x):
    model = Seg().eval()
    got = TorchAdapter(model).gradients(x, ["conv1", "conv2"], targets.segmentation(cls=1, region=(1, 1, 5, 6)))
    ref = manual(model, x, ["conv1", "conv2"], got.cotangent)
    for name in ("conv1", "conv2"):
        np.testing.assert_allclose(got.gradients[name], ref[name], atol=1e-6)
    # the activation is the conv's output as produced, before the in-place ReLU after it
    with torch.no_grad():
        conv1 = model.conv1(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got.activations["conv1"], conv1, atol=1e-6)
    assert (got.activations["conv1"] < 0).any()  # an in-place ReLU would have clipped these
    assert got.output_name == "output"
    with torch.no_grad():  # transparency: the model computed exactly what it computes without convscope
        np.testing.assert_array_equal(got.output, model(torch.from_numpy(x)).numpy())
    np.testing.assert_allclose(got.score, (got.cotangent * got.output).reshape(2, -1).sum(1), rtol=1e-5)


def test_model_is_unchanged_requires_grad_grad_modes_and_inplace_flags(x):
    model = Seg()
    model.train()
    model.conv1.weight.requires_grad_(False)
    model.conv2.weight.grad = torch.full_like(model.conv2.weight, 3.0)
    before = model_fingerprint(model)
    inplace = [m.inplace for m in (model.relu1, model.relu2)]
    TorchAdapter(model).gradients(x, ["conv1", "relu2"], targets.segmentation(cls=0), with_input=True)
    assert_same_fingerprint(before, model_fingerprint(model))
    assert model.conv1.weight.grad is None and model.head.weight.grad is None
    assert [m.inplace for m in (model.relu1, model.relu2)] == inplace
    assert model.training


def test_works_under_no_grad_and_inference_mode(x):
    model = Seg().eval()
    adapter = TorchAdapter(model)
    t = targets.segmentation(cls=1)
    plain = adapter.gradients(x, ["conv2"], t).gradients["conv2"]
    with torch.no_grad():
        a = adapter.gradients(x, ["conv2"], t).gradients["conv2"]
    with torch.inference_mode():
        b = adapter.gradients(x, ["conv2"], t).gradients["conv2"]
    np.testing.assert_array_equal(plain, a)
    np.testing.assert_array_equal(plain, b)
    assert np.abs(plain).sum() > 0


@pytest.mark.parametrize("final,op", [("module", "Sigmoid"), ("softmax", "Softmax")])
def test_final_sigmoid_or_softmax_is_skipped(x, final, op):
    logits_model = Seg().eval()
    squashed = Seg(final=final).eval()
    squashed.load_state_dict(logits_model.state_dict())
    t = targets.segmentation(cls=1)
    a = TorchAdapter(logits_model).gradients(x, ["conv2"], t)
    b = TorchAdapter(squashed).gradients(x, ["conv2"], t)
    assert b.output_name == f"output (input of the final {op})"
    np.testing.assert_allclose(a.gradients["conv2"], b.gradients["conv2"], atol=1e-6)
    np.testing.assert_allclose(a.output, b.output, atol=1e-6)
    # opting out differentiates the probabilities instead
    c = TorchAdapter(squashed).gradients(x, ["conv2"], targets.segmentation(cls=1, from_logits=False))
    assert c.output_name == "output" and not np.allclose(c.gradients["conv2"], a.gradients["conv2"])


def test_module_called_twice_is_addressed_per_call(x):
    model = Twice().eval()
    xx = np.repeat(x, 2, axis=1)
    got = TorchAdapter(model).gradients(xx, ["conv"], targets.segmentation(cls=0))
    assert set(got.activations) == {"conv", "conv#1"}
    with torch.no_grad():
        first = model.conv(torch.from_numpy(xx))
        second = model.conv(torch.relu(first))
    np.testing.assert_allclose(got.activations["conv"], first.numpy(), atol=1e-6)
    np.testing.assert_allclose(got.activations["conv#1"], second.numpy(), atol=1e-6)
    only = TorchAdapter(model).gradients(xx, ["conv#1"], targets.segmentation(cls=0))
    assert set(only.activations) == {"conv#1"}
    np.testing.assert_array_equal(only.gradients["conv#1"], got.gradients["conv#1"])
    # d out / d (second call) is the head's weight everywhere
    w = model.head.weight.detach().numpy()[0, :, 0, 0]
    np.testing.assert_allclose(got.gradients["conv#1"], np.broadcast_to(w[None, :, None, None], xx.shape), atol=1e-6)


def test_dict_output_default_is_full_resolution_and_named(x):
    model = DictOut().eval()
    adapter = TorchAdapter(model)
    got = adapter.gradients(x, ["conv"], targets.segmentation(cls=0))
    assert got.output_name == "output['seg']" and got.output.shape == (2, 3, 8, 8)
    aux = adapter.gradients(x, ["conv"], targets.segmentation(cls=0, output="aux"))
    assert aux.output_name == "output['aux']" and aux.output.shape == (2, 3, 4, 4)
    with pytest.raises(ConvscopeError, match="no output 'nope'"):
        adapter.gradients(x, ["conv"], targets.segmentation(cls=0, output="nope"))


def test_unused_layer_gets_zero_gradient(x):
    class Branch(nn.Module):
        def __init__(self):
            super().__init__()
            self.used = nn.Conv2d(1, 2, 3, padding=1)
            self.unused = nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, inp):
            self.unused(inp)
            return self.used(inp)

    got = TorchAdapter(Branch().eval()).gradients(x, ["used", "unused"], targets.segmentation(cls=0))
    assert not np.any(got.gradients["unused"]) and np.any(got.gradients["used"])


def test_user_exception_surfaces_as_itself_and_hooks_are_removed(x):
    model = Raises()
    before = model_fingerprint(model)
    with pytest.raises(Boom, match="user code failed"):
        TorchAdapter(model).gradients(x, ["conv"], targets.segmentation(cls=0))
    assert_same_fingerprint(before, model_fingerprint(model))
    assert not model.conv._forward_hooks


def test_input_gradient_matches_autograd(x):
    model = Seg().eval()
    got = TorchAdapter(model).gradients(x, [], targets.segmentation(cls=1), with_input=True)
    inp = torch.from_numpy(x).requires_grad_(True)
    (g,) = torch.autograd.grad(model(inp)[:, 1].sum(), [inp])
    np.testing.assert_allclose(got.input_gradient, g.numpy(), atol=1e-6)


def test_inplace_add_and_inplace_write_through_a_view_after_the_hooked_layer(x):
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.head = nn.Conv2d(2, 1, 1)

        def forward(self, inp):
            out = self.conv(inp)
            out += inp  # in place on the hooked output
            out[:, :1] *= 3.0  # in place through a view
            return self.head(torch.relu_(out))

    torch.manual_seed(0)
    model = Residual().eval()
    got = TorchAdapter(model).gradients(x, ["conv"], targets.segmentation(cls=0))
    with torch.no_grad():
        conv = model.conv(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got.activations["conv"], conv, atol=1e-6)
    # reference gradient by hand: d head(relu(s * (c + x))) / dc = w_head * s * 1[s (c + x) > 0]
    scale = np.array([3.0, 1.0], dtype=np.float32)[None, :, None, None]
    pre = scale * (conv + x)
    w = model.head.weight.detach().numpy()[0, :, 0, 0][None, :, None, None]
    np.testing.assert_allclose(got.gradients["conv"], w * scale * (pre > 0), atol=1e-6)
    with torch.no_grad():
        np.testing.assert_allclose(got.output, model(torch.from_numpy(x)).numpy(), atol=1e-6)
