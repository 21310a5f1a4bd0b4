"""TorchScript archives: detected before unpickling, refused without trust, inspectable with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import convscope
from convscope.adapters.torch_files import is_torchscript_file
from convscope.errors import UnsupportedModelError, UntrustedFileError

from .files import FACTORY, tiny_net

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


def seq() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(4, 2, 3, padding=1, groups=2)).eval()


def save_ts(model: nn.Module, path, how: str):
    x = torch.zeros(1, 3, 8, 8)
    module = torch.jit.script(model) if how == "script" else torch.jit.trace(model, x)
    module.save(str(path))
    return path


@pytest.fixture(params=["script", "trace"])
def ts_file(request, tmp_path):
    return save_ts(seq(), tmp_path / "model.pt", request.param)


def test_torchscript_is_detected_from_the_zip_directory(ts_file):
    assert is_torchscript_file(ts_file)


def test_torchscript_without_trust_is_refused_before_loading(ts_file, monkeypatch):
    def forbidden(*_args, **_kwargs):
        raise AssertionError("nothing may be loaded from an untrusted TorchScript file")

    monkeypatch.setattr(torch.jit, "load", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    with pytest.raises(UntrustedFileError, match=r"TorchScript.*--trust"):
        convscope.load(ts_file)


def test_trusted_torchscript_layers_and_kernels(ts_file):
    scope = convscope.load(ts_file, trust=True)
    kinds = {layer.name: (layer.kind, layer.groups) for layer in scope.layers()}
    assert kinds == {"0": ("conv", 1), "1": ("activation", 1), "2": ("conv", 2)}
    np.testing.assert_array_equal(scope.kernels("2").weights, seq()[2].weight.detach().numpy())


def test_trusted_torchscript_activations_are_copies_before_inplace_relu(ts_file):
    scope = convscope.load(ts_file, trust=True)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    got = scope.adapter.capture(x, ["0", "2"]).activations
    model = seq()
    with torch.no_grad():
        conv = model[0](torch.from_numpy(x))
        out = model(torch.from_numpy(x))
    np.testing.assert_allclose(got["0"], conv.numpy(), atol=1e-6)
    assert (got["0"] < 0).any(), "the in-place ReLU must not reach the stored conv output"
    np.testing.assert_allclose(got["2"], out.numpy(), atol=1e-6)


def test_torchscript_as_weights_needs_trust_and_then_loads(tmp_path):
    path = save_ts(tiny_net(), tmp_path / "weights.pt", "script")
    with pytest.raises(UntrustedFileError):
        convscope.load(FACTORY, weights=path)
    scope = convscope.load(FACTORY, weights=path, trust=True)
    np.testing.assert_array_equal(scope.kernels("conv1").weights, tiny_net().conv1.weight.detach().numpy())


def test_torchscript_unet_view_says_how_to_get_one(ts_file):
    scope = convscope.load(ts_file, trust=True)
    with pytest.raises(UnsupportedModelError, match=r"\.pt2"):
        scope.unet(np.zeros((3, 8, 8), np.float32))
