"""Capabilities are declared protocols; a missing one gives one message naming what would provide it."""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn as nn

from convscope.adapters import adapter_for
from convscope.adapters.base import (
    ModelAdapter,
    SupportsGradients,
    SupportsGraphCapture,
    capabilities,
    require,
)
from convscope.errors import UnsupportedModelError
from convscope.unet_flow import unet_backend_for
from tests.adapters.onnx.nets import TinyCNN, export_onnx, make


class Bare(ModelAdapter):
    """A minimal adapter: capture and kernels only."""

    framework = "bare"

    @property
    def model(self):
        return None

    def layers(self):
        return []

    def input_spec(self):
        raise NotImplementedError

    def kernel(self, layer):
        raise NotImplementedError

    def capture(self, batch, layers, *, on_activation=None, train_mode=False):
        raise NotImplementedError


def test_torch_adapter_declares_what_it_supports():
    caps = capabilities(adapter_for(nn.Sequential(nn.Conv2d(1, 2, 3))))
    assert caps["capture"] and caps["kernels"] and caps["graph"] and caps["cpu_sharing"] and caps["streaming"]


def test_onnx_has_no_autograd_and_says_what_to_use(tmp_path):
    import convscope

    scope = convscope.load(export_onnx(make(TinyCNN), tmp_path / "m.onnx", (1, 4, 8, 8)))
    caps = capabilities(scope.adapter)
    assert caps["graph"] and not caps["gradients"] and not caps["streaming"]
    assert not isinstance(scope.adapter, SupportsGradients)
    with pytest.raises(UnsupportedModelError, match="ONNX has no autograd: use eigencam or scorecam, or load the torch model"):
        require(scope.adapter, "gradients", what="Grad-CAM")
    assert isinstance(unet_backend_for(scope.adapter), SupportsGraphCapture)


def test_a_bare_adapter_gets_one_line_per_missing_capability():
    bare = Bare()
    assert capabilities(bare) == {
        "capture": True, "kernels": True, "graph": False, "gradients": False, "cpu_sharing": False, "streaming": False,
        "weights_digest": False,
    }
    with pytest.raises(UnsupportedModelError, match="U-Net analysis is not available for bare models"):
        unet_backend_for(bare)
    with pytest.raises(UnsupportedModelError, match="load the model in PyTorch, Keras or as a .pt2 file"):
        require(bare, "gradients")
    assert require(bare, "kernels") is bare


def test_pt2_and_keras_declare_gradients(tmp_path):
    keras = pytest.importorskip("keras")
    import convscope
    from tests.adapters.onnx.nets import export_pt2

    pt2 = convscope.load(export_pt2(make(TinyCNN), tmp_path / "m.pt2", (1, 4, 8, 8)), trust=True).adapter
    assert capabilities(pt2)["gradients"] and capabilities(pt2)["streaming"] and capabilities(pt2)["graph"]
    inputs = keras.Input((8, 8, 1))
    k = adapter_for(keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs)))
    assert capabilities(k)["gradients"] and capabilities(k)["graph"]
    assert np.isfinite(k.gradients(np.ones((1, 1, 8, 8), np.float32), [k.layers()[0].name], __import__(
        "convscope.core.objective", fromlist=["ChannelObjective"]).ChannelObjective()).score).all()


def test_torchscript_opts_out_of_graph_and_gradients_with_a_way_out():
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adapter = adapter_for(torch.jit.script(nn.Sequential(nn.Conv2d(1, 2, 3))))
    caps = capabilities(adapter)
    assert caps["capture"] and caps["kernels"] and not caps["graph"] and not caps["gradients"]
    with pytest.raises(UnsupportedModelError, match=r"not available for TorchScript models: .*\.pt2"):
        require(adapter, "gradients", what="Grad-CAM")
    with pytest.raises(UnsupportedModelError, match="U-Net analysis is not available for TorchScript models"):
        unet_backend_for(adapter)
