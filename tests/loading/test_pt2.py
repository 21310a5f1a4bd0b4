""".pt2 (torch.export) programs: trust gating, original layer names, kernels, one-pass capture, U-Net."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import convscope
from convscope import Scope
from convscope.adapters.torch_adapter import TorchAdapter
from convscope.errors import ConvscopeError, UnsupportedModelError, UntrustedFileError
from tests.adapters.onnx.nets import TinyCNN, TinyUNet, batch, export_pt2, make, torch_outputs


class Twice(nn.Module):
    """One ReLU module called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.act(self.conv(x)) - 0.1)


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    model = make(TinyCNN)
    path = export_pt2(model, tmp_path_factory.mktemp("pt2") / "cnn.pt2", (1, 4, 8, 8))
    return model, convscope.load(path, trust=True)


def test_pt2_without_trust_is_refused_before_torch_export_load(tmp_path, monkeypatch):
    path = export_pt2(make(TinyCNN), tmp_path / "cnn.pt2", (1, 4, 8, 8))

    def forbidden(*_args, **_kwargs):
        raise AssertionError("torch.export.load must not be called without trust")

    monkeypatch.setattr(torch.export, "load", forbidden)
    with pytest.raises(UntrustedFileError, match=r"--trust \(trust=True\)"):
        convscope.load(path)


def test_pt2_layers_are_the_original_module_paths(cnn):
    _, scope = cnn
    layers = {layer.name: layer.kind for layer in scope.layers()}
    assert layers == {"conv1": "conv", "bn": "norm", "relu": "activation", "pool": "pool", "up": "conv_transpose",
                      "act": "activation"}
    assert scope.adapter.framework == "torch.export"


def test_pt2_kernels_equal_the_torch_models(cnn):
    model, scope = cnn
    twin = TorchAdapter(model)
    for name in ("conv1", "up"):
        ours, theirs = scope.kernels(name), twin.kernel(name)
        assert (ours.groups, ours.transposed) == (theirs.groups, theirs.transposed)
        np.testing.assert_array_equal(ours.weights, theirs.weights)
        np.testing.assert_array_equal(ours.bias, theirs.bias)


def test_pt2_capture_equals_torch_activations_with_dynamic_batch(cnn):
    model, scope = cnn
    x = batch((3, 4, 8, 8))
    names = [layer.name for layer in scope.layers()]
    got = scope.adapter.capture(x, names).activations
    want = torch_outputs(model, x, names)
    for name in names:
        np.testing.assert_allclose(got[name], want[name], atol=1e-5, rtol=1e-5)


def test_pt2_repeated_module_calls_are_suffixed(tmp_path):
    model = make(Twice)
    scope = convscope.load(export_pt2(model, tmp_path / "twice.pt2", (1, 1, 6, 6)), trust=True)
    x = batch((2, 1, 6, 6))
    got = scope.adapter.capture(x, ["act"]).activations
    assert list(got) == ["act", "act#1"]
    with torch.no_grad():
        first = model.act(model.conv(torch.from_numpy(x)))
    np.testing.assert_allclose(got["act"], first.numpy(), atol=1e-6)
    np.testing.assert_allclose(got["act#1"], torch.relu(first - 0.1).numpy(), atol=1e-6)


def test_pt2_train_mode_is_refused(cnn):
    _, scope = cnn
    with pytest.raises(UnsupportedModelError, match="fixed at export time"):
        scope.adapter.capture(batch((1, 4, 8, 8)), ["conv1"], train_mode=True)


def test_pt2_input_of_another_size_gives_one_line(cnn):
    _, scope = cnn
    with pytest.raises(ConvscopeError) as info:
        scope.adapter.capture(batch((1, 4, 10, 10)), ["conv1"])
    assert "\n" not in str(info.value) and "--size" in str(info.value)


def test_pt2_input_spec_has_fixed_size_and_dynamic_batch(cnn):
    _, scope = cnn
    spec = scope.adapter.input_spec()
    assert (spec.channels, spec.spatial_dims, spec.spatial_size) == (4, 2, (8, 8))
    assert scope.loaded.input_shape == (1, 4, 8, 8)


def test_pt2_unet_matches_torch_including_gradient_shares(tmp_path):
    model = make(TinyUNet)
    scope = convscope.load(export_pt2(model, tmp_path / "unet.pt2", (1, 1, 16, 16)), trust=True)
    x = batch((16, 16), seed=2)
    ours, theirs = scope.unet(x), Scope(model).unet(x)
    assert [(s.source, s.merge) for s in ours.structure.skips] == [(s.source, s.merge) for s in theirs.structure.skips]
    for mine, ref in zip(ours.metrics, theirs.metrics):
        assert mine.energy_share == pytest.approx(ref.energy_share, abs=1e-5)
        assert mine.gradient_share == pytest.approx(ref.gradient_share, abs=1e-5)
